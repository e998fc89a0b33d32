//! A participant's CSV checked against the competition before it is
//! scored: the header, every id, every value. A rejection names line and
//! column for each problem, and tells nothing about the solution beyond
//! which ids exist (the test features list them) and, for a binary metric,
//! its two labels.

use std::collections::HashMap;

use super::column::{Column, Kind, quoted};
use super::metric::Metric;
use super::problems::{Problems, Rejection};
use super::solution::{Columns, Solution};
use super::table::Table;

/// Ids a rejection lists when some are missing; the rest are counted.
const MISSING_SHOWN: usize = 5;

/// A checked submission: its prediction columns, in
/// [`Metric::prediction_columns`]' order and in the solution's row order.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub(super) columns: Vec<Column>,
}

/// Reads `bytes` as a submission for `solution`: exactly the id column and
/// the metric's prediction columns, in any order; one row per solution id,
/// each once; every value of its column's kind and finite; for a binary
/// average, every label one of the two.
pub fn read(
    bytes: &[u8],
    max_bytes: usize,
    columns: &Columns,
    metric: &Metric,
    solution: &Solution,
) -> Result<Predictions, Rejection> {
    let table = Table::open(bytes, max_bytes)?;
    let wanted = metric.prediction_columns(&columns.target);
    let mut problems = Problems::default();
    let id_at = table.position(&columns.id);
    if id_at.is_none() {
        problems.add(
            Some(1),
            Some(&columns.id),
            "is missing from the header (the id column)",
        );
    }
    let mut at = Vec::with_capacity(wanted.len());
    for (name, _) in &wanted {
        match table.position(name) {
            Some(i) => at.push(i),
            None => problems.add(Some(1), Some(name), "is missing from the header"),
        }
    }
    for name in &table.header {
        if *name != columns.id && !wanted.iter().any(|(w, _)| w == name) {
            problems.add(Some(1), Some(name), "is not a column of this competition");
        }
    }
    let Some(id_at) = id_at.filter(|_| problems.is_empty()) else {
        let expected: Vec<&str> = std::iter::once(columns.id.as_str())
            .chain(wanted.iter().map(|(w, _)| w.as_str()))
            .collect();
        problems.add(
            Some(1),
            None,
            format!("expected the columns {}", expected.join(", ")),
        );
        return Err(problems.rejection());
    };
    let allowed = solution.allowed_labels(metric);
    let n = solution.len();
    // Values land in solution order: each row's slot is its id's row.
    let mut slots: Vec<Option<u64>> = vec![None; n];
    let mut values: Vec<Vec<Option<usize>>> = vec![vec![None; n]; wanted.len()];
    let mut parsed: Vec<Column> = wanted
        .iter()
        .map(|(_, kind)| Column::new(*kind, n))
        .collect();
    let mut unknown_at: HashMap<String, u64, foldhash::fast::RandomState> = HashMap::default();
    // Most files keep the sample submission's order, which is the
    // solution's: the row after the last one found is tried first, a
    // sequential read instead of a hash lookup in cold memory.
    let ids = solution.ids();
    let mut next = 0;
    let rows = table.rows(&mut problems, |row, problems| {
        let id = row.field(id_at);
        let found = match ids.get(next) {
            Some(expected) if expected == id => Some(next),
            _ => solution.row_of(id),
        };
        let Some(slot) = found else {
            if id.is_empty() {
                problems.add(Some(row.line), Some(&columns.id), "is empty");
            } else if let Some(first) = unknown_at.get(id) {
                problems.add(
                    Some(row.line),
                    Some(&columns.id),
                    format!("id {} is also on line {first}", quoted(id)),
                );
            } else {
                unknown_at.insert(id.to_string(), row.line);
                problems.add(
                    Some(row.line),
                    Some(&columns.id),
                    format!("id {} is not in the test set", quoted(id)),
                );
            }
            return;
        };
        if let Some(first) = slots[slot] {
            problems.add(
                Some(row.line),
                Some(&columns.id),
                format!("id {} is also on line {first}", quoted(id)),
            );
            return;
        }
        slots[slot] = Some(row.line);
        next = slot + 1;
        for (c, ((name, kind), field)) in wanted.iter().zip(&at).enumerate() {
            let raw = row.field(*field);
            if let (Kind::Label, Some(allowed)) = (kind, &allowed)
                && !raw.is_empty()
                && !allowed.contains(raw)
            {
                problems.add(
                    Some(row.line),
                    Some(name),
                    format!("{} is not a label of this competition", quoted(raw)),
                );
                continue;
            }
            match parsed[c].push(*kind, raw) {
                Ok(()) => values[c][slot] = Some(parsed[c].len() - 1),
                Err(e) => problems.add(Some(row.line), Some(name), e),
            }
        }
    });
    // Sorted by id, never in the solution's order: that order may follow
    // the boards or the targets.
    let mut missing: Vec<&str> = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_none())
        .map(|(row, _)| solution.ids()[row].as_str())
        .collect();
    missing.sort_unstable();
    if !missing.is_empty() {
        let shown: Vec<String> = missing
            .iter()
            .take(MISSING_SHOWN)
            .map(|id| quoted(id))
            .collect();
        let rest = missing.len().saturating_sub(MISSING_SHOWN);
        problems.add(
            None,
            Some(&columns.id),
            format!(
                "{} id{} of the test set {} missing: {}{}",
                missing.len(),
                if missing.len() == 1 { "" } else { "s" },
                if missing.len() == 1 { "is" } else { "are" },
                shown.join(", "),
                if rest > 0 {
                    format!(" and {rest} more")
                } else {
                    String::new()
                },
            ),
        );
    }
    if rows as usize != n && problems.count() > 0 {
        problems.add(
            None,
            None,
            format!("the file has {rows} rows; the test set has {n}"),
        );
    }
    if !problems.is_empty() {
        return Err(problems.rejection());
    }
    // Every slot is filled exactly once, so reorder into solution order.
    let columns = parsed
        .into_iter()
        .zip(&values)
        .map(|(mut column, order)| {
            let order: Vec<usize> = order.iter().map(|v| v.unwrap_or(0)).collect();
            column.take_rows(&order)
        })
        .collect();
    Ok(Predictions { columns })
}
