//! Metrics on predicted labels: accuracy, balanced accuracy, precision,
//! recall, F1 and quadratic weighted kappa, each as scikit-learn 1.9
//! computes it with its default arguments (`zero_division="warn"`, which
//! scores 0; `replace_undefined_by=nan`, which is [`Undefined`] here).
//!
//! Which labels count is sklearn's `unique_labels(y_true, y_pred)`: every
//! label present in either, in sorted order, so a class no row of the split
//! holds does not enter a macro average.

use std::collections::{BTreeMap, BTreeSet};

use super::Undefined;
use super::sum::Sum;

/// How precision, recall and F1 combine the classes (sklearn's `average`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Average {
    /// Only the positive class counts (`average="binary", pos_label=...`).
    Binary { positive: String },
    /// The unweighted mean over the classes present.
    Macro,
    /// True and false positives summed over the classes present.
    Micro,
}

/// Which of the three rates of [`prf`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    Precision,
    Recall,
    F1,
}

fn same_length<T, U>(y_true: &[T], y_pred: &[U]) -> Result<(), Undefined> {
    if y_true.len() != y_pred.len() {
        return Err(Undefined("the two columns differ in length"));
    }
    if y_true.is_empty() {
        return Err(Undefined("no rows to score"));
    }
    Ok(())
}

/// The fraction of rows whose label is right.
pub fn accuracy<S: AsRef<str>>(y_true: &[S], y_pred: &[S]) -> Result<f64, Undefined> {
    same_length(y_true, y_pred)?;
    let right = y_true
        .iter()
        .zip(y_pred)
        .filter(|(t, p)| t.as_ref() == p.as_ref())
        .count();
    Ok(right as f64 / y_true.len() as f64)
}

/// The mean of each true class's recall; classes only predicted are left
/// out, as sklearn drops their undefined recall.
pub fn balanced_accuracy<S: AsRef<str>>(y_true: &[S], y_pred: &[S]) -> Result<f64, Undefined> {
    same_length(y_true, y_pred)?;
    let mut per_class: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (t, p) in y_true.iter().zip(y_pred) {
        let entry = per_class.entry(t.as_ref()).or_default();
        entry.1 += 1;
        if t.as_ref() == p.as_ref() {
            entry.0 += 1;
        }
    }
    let mut sum = Sum::default();
    for (right, all) in per_class.values() {
        sum.add(*right as f64 / *all as f64);
    }
    Ok(sum.value() / per_class.len() as f64)
}

#[derive(Default, Clone, Copy)]
struct Counts {
    tp: u64,
    fp: u64,
    fn_: u64,
}

impl Counts {
    fn rate(self, rate: Rate) -> f64 {
        let (num, den) = match rate {
            Rate::Precision => (self.tp, self.tp + self.fp),
            Rate::Recall => (self.tp, self.tp + self.fn_),
            Rate::F1 => (2 * self.tp, 2 * self.tp + self.fp + self.fn_),
        };
        if den == 0 {
            0.0
        } else {
            num as f64 / den as f64
        }
    }
}

fn counts<'a, S: AsRef<str>>(y_true: &'a [S], y_pred: &'a [S]) -> BTreeMap<&'a str, Counts> {
    let mut by_label: BTreeMap<&str, Counts> = BTreeMap::new();
    for (t, p) in y_true.iter().zip(y_pred) {
        let (t, p) = (t.as_ref(), p.as_ref());
        if t == p {
            by_label.entry(t).or_default().tp += 1;
        } else {
            by_label.entry(p).or_default().fp += 1;
            by_label.entry(t).or_default().fn_ += 1;
        }
    }
    by_label
}

/// Precision, recall or F1 under `average`.
///
/// Binary, like sklearn, is undefined when more than two labels are present,
/// or when two are and neither is the positive one.
pub fn prf<S: AsRef<str>>(
    y_true: &[S],
    y_pred: &[S],
    rate: Rate,
    average: &Average,
) -> Result<f64, Undefined> {
    same_length(y_true, y_pred)?;
    let by_label = counts(y_true, y_pred);
    match average {
        Average::Binary { positive } => {
            if by_label.len() > 2 {
                return Err(Undefined(
                    "more than two labels are present, and the average is binary",
                ));
            }
            match by_label.get(positive.as_str()) {
                Some(counts) => Ok(counts.rate(rate)),
                None if by_label.len() < 2 => Ok(0.0),
                None => Err(Undefined("the positive label is not present")),
            }
        }
        Average::Macro => {
            let mut sum = Sum::default();
            for counts in by_label.values() {
                sum.add(counts.rate(rate));
            }
            Ok(sum.value() / by_label.len() as f64)
        }
        Average::Micro => {
            let total = by_label.values().fold(Counts::default(), |a, c| Counts {
                tp: a.tp + c.tp,
                fp: a.fp + c.fp,
                fn_: a.fn_ + c.fn_,
            });
            Ok(total.rate(rate))
        }
    }
}

/// Cohen's kappa with quadratic weights over the sorted labels present
/// (sklearn's `cohen_kappa_score(weights="quadratic")`): weights are the
/// squared distance between the labels' positions, not their values, so a
/// rating nobody gave or got does not widen the scale.
///
/// sklearn builds the confusion matrix; with `w(i, j) = (i - j)²` both of its
/// sums have closed forms, so this takes O(n log n) time and O(labels)
/// memory whatever the participant's ratings (a matrix of 100,000 distinct
/// ratings would be 80 GB). Observed: `Σ (pos(t) - pos(p))²` over the rows.
/// Expected: `Σ_ij (i - j)² c_i r_j / N = C2 + R2 - 2 C1 R1 / N`, with
/// `c`, `r` the predicted and true counts per position and `C1`, `C2`,
/// `R1`, `R2` their first and second moments.
pub fn quadratic_weighted_kappa(y_true: &[i64], y_pred: &[i64]) -> Result<f64, Undefined> {
    same_length(y_true, y_pred)?;
    let labels: BTreeSet<i64> = y_true.iter().chain(y_pred).copied().collect();
    let position: BTreeMap<i64, f64> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (*l, i as f64))
        .collect();
    let (mut observed, mut r1, mut r2, mut c1, mut c2) = (
        Sum::default(),
        Sum::default(),
        Sum::default(),
        Sum::default(),
        Sum::default(),
    );
    for (t, p) in y_true.iter().zip(y_pred) {
        let (i, j) = (position[t], position[p]);
        observed.add((i - j) * (i - j));
        r1.add(i);
        r2.add(i * i);
        c1.add(j);
        c2.add(j * j);
    }
    let n = y_true.len() as f64;
    let expected = c2.value() + r2.value() - 2.0 * c1.value() * r1.value() / n;
    if expected.abs() < 1e-12 * n.max(1.0) {
        return Err(Undefined("only one label is present"));
    }
    Ok(1.0 - observed.value() / expected)
}
