//! Metrics on real-valued predictions: MAE, RMSE, RMSLE and R², as
//! scikit-learn 1.9 computes them (`mean_absolute_error`,
//! `root_mean_squared_error`, `root_mean_squared_log_error`, `r2_score`
//! with `force_finite=True`).

use super::Undefined;
use super::sum::{Sum, mean};

fn paired<'a>(
    y_true: &'a [f64],
    y_pred: &'a [f64],
) -> Result<impl Iterator<Item = (f64, f64)> + 'a, Undefined> {
    if y_true.len() != y_pred.len() {
        return Err(Undefined("the two columns differ in length"));
    }
    if y_true.is_empty() {
        return Err(Undefined("no rows to score"));
    }
    Ok(y_true.iter().copied().zip(y_pred.iter().copied()))
}

/// Mean absolute error.
pub fn mae(y_true: &[f64], y_pred: &[f64]) -> Result<f64, Undefined> {
    Ok(mean(paired(y_true, y_pred)?.map(|(t, p)| (t - p).abs())).unwrap_or(0.0))
}

/// Root of the mean squared error.
pub fn rmse(y_true: &[f64], y_pred: &[f64]) -> Result<f64, Undefined> {
    Ok(
        mean(paired(y_true, y_pred)?.map(|(t, p)| (t - p) * (t - p)))
            .unwrap_or(0.0)
            .sqrt(),
    )
}

/// RMSE of `ln(1 + y)`; every value must be above -1 (sklearn refuses
/// -1 and below; the submission check refuses them before this runs).
pub fn rmsle(y_true: &[f64], y_pred: &[f64]) -> Result<f64, Undefined> {
    if y_true.iter().chain(y_pred).any(|v| *v <= -1.0) {
        return Err(Undefined("RMSLE needs every value above -1"));
    }
    let t: Vec<f64> = y_true.iter().map(|v| v.ln_1p()).collect();
    let p: Vec<f64> = y_pred.iter().map(|v| v.ln_1p()).collect();
    rmse(&t, &p)
}

/// The coefficient of determination. A constant target scores 1 when
/// predicted exactly and 0 otherwise (sklearn's `force_finite`); fewer than
/// two rows is undefined, as in sklearn.
pub fn r2(y_true: &[f64], y_pred: &[f64]) -> Result<f64, Undefined> {
    let pairs = paired(y_true, y_pred)?;
    if y_true.len() < 2 {
        return Err(Undefined("R² needs at least two rows"));
    }
    let residual: Sum = pairs.map(|(t, p)| (t - p) * (t - p)).collect();
    let avg = mean(y_true.iter().copied()).unwrap_or(0.0);
    let total: Sum = y_true.iter().map(|t| (t - avg) * (t - avg)).collect();
    let (residual, total) = (residual.value(), total.value());
    Ok(if total == 0.0 {
        if residual == 0.0 { 1.0 } else { 0.0 }
    } else {
        1.0 - residual / total
    })
}
