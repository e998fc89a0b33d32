//! `lab competition`: what staff do with a competition from a terminal.
//! Today `score`: a submission scored against a solution offline, exactly
//! as the gateway scores it (the same checks, the same metric code), so a
//! trainer can try a baseline and a solution before a competition opens.

use std::path::PathBuf;

use anyhow::Context as _;
use classroom::competition::{self, Columns, Metric, MetricSpec, Solution};

/// The largest file `score` reads, as the gateway's default.
const MAX_BYTES: usize = 512 << 20;

#[derive(clap::Subcommand)]
pub enum CompetitionCommand {
    /// Score SUBMISSION against SOLUTION; prints {"public": .., "private": ..}.
    Score(ScoreArgs),
}

#[derive(clap::Args)]
pub struct ScoreArgs {
    /// The solution CSV: id, target and Usage (Public, Private or Ignored).
    solution: PathBuf,
    /// The submission CSV: id and the prediction column(s).
    submission: PathBuf,
    /// The metric: accuracy, balanced_accuracy, f1, precision, recall,
    /// roc_auc, log_loss, mae, rmse, rmsle, r2, map_at_k,
    /// quadratic_weighted_kappa.
    #[arg(long)]
    metric: String,
    /// f1, precision, recall: binary, macro or micro.
    #[arg(long)]
    average: Option<String>,
    /// The positive class (binary metrics).
    #[arg(long)]
    positive: Option<String>,
    /// map_at_k's K.
    #[arg(long)]
    k: Option<usize>,
    /// A multiclass log loss's classes, comma-separated, in column order.
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<String>>,
    /// The id column.
    #[arg(long, default_value = "id")]
    id: String,
    /// The target column (and prediction column).
    #[arg(long, default_value = "target")]
    target: String,
}

pub(super) fn run(command: CompetitionCommand) -> anyhow::Result<()> {
    match command {
        CompetitionCommand::Score(args) => score(args),
    }
}

fn score(args: ScoreArgs) -> anyhow::Result<()> {
    let metric = Metric::try_from(MetricSpec {
        name: args.metric,
        average: args.average,
        positive: args.positive,
        k: args.k,
        classes: args.classes,
    })?;
    let columns = Columns {
        id: args.id,
        target: args.target,
    };
    let read = |path: &PathBuf| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let solution = Solution::parse(&read(&args.solution)?, MAX_BYTES, &columns, &metric)
        .with_context(|| format!("the solution {} is refused", args.solution.display()))?;
    let predictions = competition::submission::read(
        &read(&args.submission)?,
        MAX_BYTES,
        &columns,
        &metric,
        &solution,
    )
    .with_context(|| format!("the submission {} is refused", args.submission.display()))?;
    let scores = competition::score(&metric, &solution, &predictions)?;
    println!("{}", serde_json::to_string(&scores)?);
    Ok(())
}
