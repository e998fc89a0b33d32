//! A competition's metric: which one, with which settings, what the
//! solution's target and a submission's prediction columns must hold for
//! it, and which way is better.
//!
//! A metric is configured as a flat [`MetricSpec`] (what a trainer writes)
//! and checked into a [`Metric`], whose variants carry exactly the settings
//! each needs: a binary F1 without a positive label cannot be built.

use serde::{Deserialize, Serialize};

use super::Undefined;
use super::column::{Column, Kind};
use super::labels::{self, Average, Rate};
use super::ranking;
use super::regression;

/// A checked metric; build one from a [`MetricSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "MetricSpec", into = "MetricSpec")]
pub enum Metric {
    Accuracy,
    BalancedAccuracy,
    /// Precision, recall or F1.
    Rates {
        rate: Rate,
        average: Average,
    },
    /// Cohen's kappa with quadratic weights, on integer ratings.
    QuadraticWeightedKappa,
    /// Binary ROC AUC of a score column, for the `positive` label.
    RocAuc {
        positive: String,
    },
    /// Binary log loss: one column, the probability of `positive`.
    LogLossBinary {
        positive: String,
    },
    /// Multiclass log loss: one probability column per class, named by it.
    LogLoss {
        classes: Vec<String>,
    },
    Mae,
    Rmse,
    Rmsle,
    R2,
    /// Mean average precision at `k` of space-separated ranked lists.
    MapAtK {
        k: usize,
    },
}

/// A metric as configured: `name` and the settings it takes.
///
/// | name | settings |
/// | --- | --- |
/// | `accuracy`, `balanced_accuracy` | none |
/// | `f1`, `precision`, `recall` | `average` = `binary` (with `positive`), `macro` or `micro` |
/// | `roc_auc` | `positive` |
/// | `log_loss` | `positive` (binary) or `classes` (multiclass) |
/// | `quadratic_weighted_kappa`, `mae`, `rmse`, `rmsle`, `r2` | none |
/// | `map_at_k` | `k` |
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// Every class of a multiclass log loss, in its columns' order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
}

/// A [`MetricSpec`] that names no metric or misses a setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metric {name:?}: {problem}")]
pub struct MetricSpecError {
    pub name: String,
    pub problem: String,
}

/// The metric names, as configured.
pub const METRIC_NAMES: &[&str] = &[
    "accuracy",
    "balanced_accuracy",
    "f1",
    "precision",
    "recall",
    "roc_auc",
    "log_loss",
    "mae",
    "rmse",
    "rmsle",
    "r2",
    "map_at_k",
    "quadratic_weighted_kappa",
];

impl TryFrom<MetricSpec> for Metric {
    type Error = MetricSpecError;

    fn try_from(spec: MetricSpec) -> Result<Self, Self::Error> {
        let fail = |problem: &str| MetricSpecError {
            name: spec.name.clone(),
            problem: problem.to_string(),
        };
        let unused = |what: &[&str]| -> Result<(), MetricSpecError> {
            let given = [
                ("average", spec.average.is_some()),
                ("positive", spec.positive.is_some()),
                ("k", spec.k.is_some()),
                ("classes", spec.classes.is_some()),
            ];
            match given
                .iter()
                .find(|(name, set)| *set && !what.contains(name))
            {
                Some((name, _)) => Err(fail(&format!("takes no `{name}`"))),
                None => Ok(()),
            }
        };
        let positive = || {
            spec.positive
                .clone()
                .filter(|p| !p.is_empty())
                .ok_or_else(|| fail("needs `positive`, the positive class's label"))
        };
        if let Some(classes) = &spec.classes {
            let distinct: std::collections::BTreeSet<&String> = classes.iter().collect();
            if classes.len() < 2
                || distinct.len() != classes.len()
                || classes.iter().any(String::is_empty)
            {
                return Err(fail(
                    "`classes` must list at least two distinct, non-empty labels",
                ));
            }
        }
        let metric = match spec.name.as_str() {
            "accuracy" | "balanced_accuracy" => {
                unused(&[])?;
                if spec.name == "accuracy" {
                    Metric::Accuracy
                } else {
                    Metric::BalancedAccuracy
                }
            }
            "f1" | "precision" | "recall" => {
                unused(&["average", "positive"])?;
                let rate = match spec.name.as_str() {
                    "f1" => Rate::F1,
                    "precision" => Rate::Precision,
                    _ => Rate::Recall,
                };
                let average = match spec.average.as_deref() {
                    Some("binary") => Average::Binary {
                        positive: positive()?,
                    },
                    Some("macro") if spec.positive.is_none() => Average::Macro,
                    Some("micro") if spec.positive.is_none() => Average::Micro,
                    Some("macro" | "micro") => {
                        return Err(fail("takes `positive` only with average = binary"));
                    }
                    _ => return Err(fail("needs `average`: binary, macro or micro")),
                };
                Metric::Rates { rate, average }
            }
            "roc_auc" => {
                unused(&["positive"])?;
                Metric::RocAuc {
                    positive: positive()?,
                }
            }
            "log_loss" => {
                unused(&["positive", "classes"])?;
                match (&spec.positive, &spec.classes) {
                    (Some(_), None) => Metric::LogLossBinary {
                        positive: positive()?,
                    },
                    (None, Some(classes)) => Metric::LogLoss {
                        classes: classes.clone(),
                    },
                    _ => {
                        return Err(fail(
                            "needs either `positive` (binary) or `classes` (multiclass)",
                        ));
                    }
                }
            }
            "mae" | "rmse" | "rmsle" | "r2" | "quadratic_weighted_kappa" => {
                unused(&[])?;
                match spec.name.as_str() {
                    "mae" => Metric::Mae,
                    "rmse" => Metric::Rmse,
                    "rmsle" => Metric::Rmsle,
                    "r2" => Metric::R2,
                    _ => Metric::QuadraticWeightedKappa,
                }
            }
            "map_at_k" => {
                unused(&["k"])?;
                match spec.k {
                    Some(k @ 1..=1000) => Metric::MapAtK { k },
                    _ => return Err(fail("needs `k` between 1 and 1000")),
                }
            }
            _ => {
                return Err(fail(&format!(
                    "unknown metric; one of {}",
                    METRIC_NAMES.join(", ")
                )));
            }
        };
        Ok(metric)
    }
}

impl From<Metric> for MetricSpec {
    fn from(metric: Metric) -> Self {
        let named = |name: &str| MetricSpec {
            name: name.to_string(),
            ..MetricSpec::default()
        };
        match metric {
            Metric::Accuracy => named("accuracy"),
            Metric::BalancedAccuracy => named("balanced_accuracy"),
            Metric::Rates { rate, average } => {
                let name = match rate {
                    Rate::F1 => "f1",
                    Rate::Precision => "precision",
                    Rate::Recall => "recall",
                };
                let (average, positive) = match average {
                    Average::Binary { positive } => ("binary", Some(positive)),
                    Average::Macro => ("macro", None),
                    Average::Micro => ("micro", None),
                };
                MetricSpec {
                    average: Some(average.to_string()),
                    positive,
                    ..named(name)
                }
            }
            Metric::QuadraticWeightedKappa => named("quadratic_weighted_kappa"),
            Metric::RocAuc { positive } => MetricSpec {
                positive: Some(positive),
                ..named("roc_auc")
            },
            Metric::LogLossBinary { positive } => MetricSpec {
                positive: Some(positive),
                ..named("log_loss")
            },
            Metric::LogLoss { classes } => MetricSpec {
                classes: Some(classes),
                ..named("log_loss")
            },
            Metric::Mae => named("mae"),
            Metric::Rmse => named("rmse"),
            Metric::Rmsle => named("rmsle"),
            Metric::R2 => named("r2"),
            Metric::MapAtK { k } => MetricSpec {
                k: Some(k),
                ..named("map_at_k")
            },
        }
    }
}

impl Metric {
    /// Whether a larger score ranks higher.
    pub fn higher_is_better(&self) -> bool {
        !matches!(
            self,
            Metric::LogLossBinary { .. }
                | Metric::LogLoss { .. }
                | Metric::Mae
                | Metric::Rmse
                | Metric::Rmsle
        )
    }

    /// What the solution's target column holds.
    pub fn target_kind(&self) -> Kind {
        match self {
            Metric::QuadraticWeightedKappa => Kind::Integer,
            Metric::Mae | Metric::Rmse | Metric::R2 => Kind::Real,
            Metric::Rmsle => Kind::AboveMinusOne,
            Metric::MapAtK { .. } => Kind::List,
            _ => Kind::Label,
        }
    }

    /// A submission's prediction columns, besides the id: their names and
    /// kinds. One column named like the target, except for a multiclass
    /// log loss, which has one per class.
    pub fn prediction_columns(&self, target: &str) -> Vec<(String, Kind)> {
        match self {
            Metric::LogLoss { classes } => classes
                .iter()
                .map(|c| (c.clone(), Kind::Probability))
                .collect(),
            Metric::RocAuc { .. } => vec![(target.to_string(), Kind::Real)],
            Metric::LogLossBinary { .. } => vec![(target.to_string(), Kind::Probability)],
            // Items past K never count, so they are not kept.
            Metric::MapAtK { k } => vec![(target.to_string(), Kind::Ranked(*k))],
            _ => vec![(target.to_string(), self.target_kind())],
        }
    }

    /// The labels a predicted label must be one of, when the metric names
    /// them (otherwise the solution's labels are).
    pub fn declared_classes(&self) -> Option<&[String]> {
        match self {
            Metric::LogLoss { classes } => Some(classes),
            _ => None,
        }
    }

    /// The metric of `predictions` (in [`Metric::prediction_columns`]'
    /// order) against `target`, row for row.
    pub fn score(&self, target: &Column, predictions: &[Column]) -> Result<f64, Undefined> {
        let mismatch = Undefined("the columns do not fit the metric");
        match (self, target, predictions) {
            (Metric::Accuracy, Column::Labels(t), [Column::Labels(p)]) => labels::accuracy(t, p),
            (Metric::BalancedAccuracy, Column::Labels(t), [Column::Labels(p)]) => {
                labels::balanced_accuracy(t, p)
            }
            (Metric::Rates { rate, average }, Column::Labels(t), [Column::Labels(p)]) => {
                labels::prf(t, p, *rate, average)
            }
            (Metric::QuadraticWeightedKappa, Column::Integers(t), [Column::Integers(p)]) => {
                labels::quadratic_weighted_kappa(t, p)
            }
            (Metric::RocAuc { positive }, Column::Labels(t), [Column::Reals(p)]) => {
                ranking::roc_auc(&is(t, positive), p)
            }
            (Metric::LogLossBinary { positive }, Column::Labels(t), [Column::Reals(p)]) => {
                ranking::log_loss_binary(&is(t, positive), p)
            }
            (Metric::LogLoss { classes }, Column::Labels(t), columns) => {
                let truth: Option<Vec<usize>> = t
                    .iter()
                    .map(|l| classes.iter().position(|c| c == l))
                    .collect();
                let truth = truth.ok_or(Undefined("a true label is not among the classes"))?;
                let mut flat = Vec::with_capacity(t.len() * columns.len());
                for row in 0..t.len() {
                    for column in columns {
                        match column {
                            Column::Reals(p) if p.len() == t.len() => flat.push(p[row]),
                            _ => return Err(mismatch),
                        }
                    }
                }
                ranking::log_loss(&truth, &flat, columns.len())
            }
            (Metric::Mae, Column::Reals(t), [Column::Reals(p)]) => regression::mae(t, p),
            (Metric::Rmse, Column::Reals(t), [Column::Reals(p)]) => regression::rmse(t, p),
            (Metric::Rmsle, Column::Reals(t), [Column::Reals(p)]) => regression::rmsle(t, p),
            (Metric::R2, Column::Reals(t), [Column::Reals(p)]) => regression::r2(t, p),
            (Metric::MapAtK { k }, Column::Lists(t), [Column::Lists(p)]) => {
                ranking::map_at_k(t, p, *k)
            }
            _ => Err(mismatch),
        }
    }
}

fn is(labels: &[String], positive: &str) -> Vec<bool> {
    labels.iter().map(|l| l == positive).collect()
}
