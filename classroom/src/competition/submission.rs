//! A participant's CSV checked against the competition before it is
//! scored: the header, every id, every value. A rejection names line and
//! column for each problem, and tells nothing about the solution beyond
//! which ids exist (the test features list them) and, for a binary metric,
//! its two labels.

use std::collections::HashMap;

use super::column::{Column, Kind, Value, quoted};
use super::metric::Metric;
use super::problems::{Problems, Rejection};
use super::solution::{Columns, Solution};
use super::table::{Part, Table};

/// Ids a rejection lists when some are missing; the rest are counted.
const MISSING_SHOWN: usize = 5;

/// A file of at least this many bytes is read in parts, up to
/// [`MAX_PARTS`] (one a core), when it can be split (see `Table::parts`).
const PART_BYTES: usize = 256 * 1024;
const MAX_PARTS: usize = 4;

/// What one part of a file said, before the merge.
#[derive(Default)]
struct Read {
    /// Each data row's line and what its id is.
    rows: Vec<(u64, Found)>,
    /// The values of the rows whose id was found, a row's after another's,
    /// each parsed or what is wrong with it.
    values: Vec<Result<Value, String>>,
    /// Lines that are not rows (a wrong number of fields, bad UTF-8).
    problems: Problems,
    count: u64,
}

/// A row's id in the solution.
enum Found {
    Row(usize),
    Empty,
    Unknown(String),
}

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
    let ids = solution.ids();
    // Each part of the file parsed on a core of its own (ids found, values
    // parsed); then one merge in file order (repeats, unknown ids, slots).
    let parse = |part: Part<'_>, share: usize| -> Read {
        let mut read = Read {
            rows: Vec::with_capacity(share),
            values: Vec::with_capacity(share * wanted.len()),
            ..Read::default()
        };
        // Most files keep the sample submission's order, which is the
        // solution's: the row after the last one found is tried first, a
        // sequential read instead of a hash lookup in cold memory.
        let mut next = 0;
        read.count = part.rows(&mut read.problems, |row, _| {
            let id = row.field(id_at);
            let found = match ids.get(next) {
                Some(expected) if expected == id => Found::Row(next),
                _ => match solution.row_of(id) {
                    Some(slot) => Found::Row(slot),
                    None if id.is_empty() => Found::Empty,
                    None => Found::Unknown(id.to_string()),
                },
            };
            if let Found::Row(slot) = found {
                next = slot + 1;
                for ((_, kind), field) in wanted.iter().zip(&at) {
                    let raw = row.field(*field);
                    let value = match (kind, &allowed) {
                        (Kind::Label, Some(allowed))
                            if !raw.is_empty() && !allowed.contains(raw) =>
                        {
                            Err(format!(
                                "{} is not a label of this competition",
                                quoted(raw)
                            ))
                        }
                        _ => Value::parse(*kind, raw),
                    };
                    read.values.push(value);
                }
            }
            read.rows.push((row.line, found));
        });
        read
    };
    let parts = table.parts(
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_PARTS),
        PART_BYTES,
    );
    // Rows a part likely holds, a little over its share.
    let share = n / parts.len() + n / 16 + 16;
    let reads: Vec<Read> = if parts.len() == 1 {
        parts.into_iter().map(|part| parse(part, share)).collect()
    } else {
        let parse = &parse;
        std::thread::scope(|s| {
            let handles: Vec<_> = parts
                .into_iter()
                .map(|part| s.spawn(move || parse(part, share)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        })
    };
    // Values land in solution order: each row's slot is its id's row.
    let mut slots: Vec<Option<u64>> = vec![None; n];
    let mut parsed: Vec<Column> = wanted
        .iter()
        .map(|(_, kind)| Column::filled(*kind, n))
        .collect();
    let mut unknown_at: HashMap<String, u64, foldhash::fast::RandomState> = HashMap::default();
    let mut rows = 0;
    let mut found_problems = Problems::default();
    let mut read_problems = Vec::with_capacity(reads.len());
    for read in reads {
        rows += read.count;
        read_problems.push(read.problems);
        let mut values_of = read.values.into_iter();
        for (line, found) in read.rows {
            let slot = match found {
                Found::Empty => {
                    found_problems.add(Some(line), Some(&columns.id), "is empty");
                    continue;
                }
                Found::Unknown(id) => {
                    let message = match unknown_at.get(&id) {
                        Some(first) => format!("id {} is also on line {first}", quoted(&id)),
                        None => format!("id {} is not in the test set", quoted(&id)),
                    };
                    unknown_at.entry(id).or_insert(line);
                    found_problems.add(Some(line), Some(&columns.id), message);
                    continue;
                }
                Found::Row(slot) => slot,
            };
            if let Some(first) = slots[slot] {
                found_problems.add(
                    Some(line),
                    Some(&columns.id),
                    format!("id {} is also on line {first}", quoted(&ids[slot])),
                );
                values_of.by_ref().take(wanted.len()).for_each(drop);
                continue;
            }
            slots[slot] = Some(line);
            for (c, value) in values_of.by_ref().take(wanted.len()).enumerate() {
                let name = &wanted[c].0;
                if let Err(e) = value.and_then(|v| parsed[c].set(slot, v)) {
                    found_problems.add(Some(line), Some(name), e);
                }
            }
        }
    }
    read_problems.push(found_problems);
    let mut problems = Problems::merged(read_problems);
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
    // Every slot was set exactly once: the columns are in solution order.
    let columns = parsed;
    Ok(Predictions { columns })
}
