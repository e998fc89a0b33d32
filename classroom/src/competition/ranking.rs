//! Metrics on scores, probabilities and ranked lists: ROC AUC, log loss
//! and MAP@K.
//!
//! ROC AUC and log loss are scikit-learn 1.9's `roc_auc_score` (binary)
//! and `log_loss` (probabilities clipped to `[eps, 1 - eps]` with
//! `eps = f64::EPSILON`, rows not renormalised). scikit-learn has no MAP@K;
//! ours is the `apk`/`mapk` of Kaggle's ml_metrics, which Kaggle's
//! competitions use, and the fixture script compares against that.

use std::collections::HashSet;

use super::Undefined;
use super::sum::{Sum, mean};

/// The area under the ROC curve of `scores` for the rows where `positive`
/// holds: the probability that a positive row outscores a negative one,
/// ties counting a half (what sklearn's trapezoids give). Undefined when
/// only one class is present.
pub fn roc_auc(positive: &[bool], scores: &[f64]) -> Result<f64, Undefined> {
    if positive.len() != scores.len() {
        return Err(Undefined("the two columns differ in length"));
    }
    let n_pos = positive.iter().filter(|p| **p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return Err(Undefined(
            "only one class is present, so ROC AUC is not defined",
        ));
    }
    // Scores as integers in the same order (and -0.0 as 0.0, which `==`
    // ties), each beside its label: one sort of plain pairs.
    let key = |x: f64| {
        let bits = (x + 0.0).to_bits();
        if bits >> 63 == 1 {
            !bits
        } else {
            bits | 1 << 63
        }
    };
    let mut pairs: Vec<(u64, bool)> = scores
        .iter()
        .zip(positive)
        .map(|(s, p)| (key(*s), *p))
        .collect();
    pairs.sort_unstable_by_key(|p| p.0);
    // Sum of the positives' ranks, each tie group sharing its mean rank.
    let mut rank_sum = 0.0f64;
    let mut start = 0;
    while start < pairs.len() {
        let mut end = start + 1;
        while end < pairs.len() && pairs[end].0 == pairs[start].0 {
            end += 1;
        }
        // Ranks start..end (0-based) → mean 1-based rank (start + end + 1) / 2.
        let mid = (start + end + 1) as f64 / 2.0;
        let positives = pairs[start..end].iter().filter(|p| p.1).count();
        rank_sum += mid * positives as f64;
        start = end;
    }
    let (p, n) = (n_pos as f64, n_neg as f64);
    Ok((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

fn clip(p: f64) -> f64 {
    p.clamp(f64::EPSILON, 1.0 - f64::EPSILON)
}

/// Binary log loss: `probability` is that of the positive class.
pub fn log_loss_binary(positive: &[bool], probability: &[f64]) -> Result<f64, Undefined> {
    if positive.len() != probability.len() {
        return Err(Undefined("the two columns differ in length"));
    }
    mean(
        positive
            .iter()
            .zip(probability)
            .map(|(pos, p)| -(if *pos { clip(*p) } else { clip(1.0 - p) }).ln()),
    )
    .ok_or(Undefined("no rows to score"))
}

/// Multiclass log loss: row `r`'s probabilities are
/// `probabilities[r * classes .. (r + 1) * classes]`, and `truth[r]` is the
/// index of its true class among them.
pub fn log_loss(truth: &[usize], probabilities: &[f64], classes: usize) -> Result<f64, Undefined> {
    if classes < 2 || probabilities.len() != truth.len() * classes {
        return Err(Undefined("the probabilities do not fit the classes"));
    }
    if truth.iter().any(|t| *t >= classes) {
        return Err(Undefined("a true class is not among the classes"));
    }
    mean(
        truth
            .iter()
            .enumerate()
            .map(|(row, t)| -clip(probabilities[row * classes + t]).ln()),
    )
    .ok_or(Undefined("no rows to score"))
}

/// Average precision at `k` of one ranked list against its relevant items
/// (ml_metrics' `apk`: a repeated prediction counts once; an empty
/// relevant list scores 0).
pub fn average_precision_at_k<S: AsRef<str>>(relevant: &[S], predicted: &[S], k: usize) -> f64 {
    if relevant.is_empty() || k == 0 {
        return 0.0;
    }
    // Short lists (the usual case: a few relevant labels, K of 5 or 12) are
    // scanned; long ones hashed.
    const SCAN: usize = 16;
    let relevant_set: Option<HashSet<&str>> =
        (relevant.len() > SCAN).then(|| relevant.iter().map(AsRef::as_ref).collect());
    let is_relevant = |p: &str| match &relevant_set {
        Some(set) => set.contains(p),
        None => relevant.iter().any(|r| r.as_ref() == p),
    };
    let mut seen: HashSet<&str> = HashSet::new();
    let mut hits = 0.0;
    let mut score = Sum::default();
    for (i, p) in predicted.iter().take(k).enumerate() {
        let p = p.as_ref();
        // ml_metrics' `p not in predicted[:i]`: a repeat never counts.
        let repeat = if k > SCAN {
            !seen.insert(p)
        } else {
            predicted[..i].iter().any(|q| q.as_ref() == p)
        };
        if !repeat && is_relevant(p) {
            hits += 1.0;
            score.add(hits / (i as f64 + 1.0));
        }
    }
    score.value() / relevant.len().min(k) as f64
}

/// Mean of [`average_precision_at_k`] over the rows, whose lists are as
/// written (items separated by white space): split row by row into
/// buffers used again for every row.
pub fn map_at_k(relevant: &[String], predicted: &[String], k: usize) -> Result<f64, Undefined> {
    if relevant.len() != predicted.len() {
        return Err(Undefined("the two columns differ in length"));
    }
    let (mut r, mut p): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    mean(relevant.iter().zip(predicted).map(|(rel, pred)| {
        r.clear();
        r.extend(rel.split_whitespace());
        p.clear();
        p.extend(pred.split_whitespace().take(k));
        average_precision_at_k(&r, &p, k)
    }))
    .ok_or(Undefined("no rows to score"))
}
