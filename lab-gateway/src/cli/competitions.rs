//! `lab competition score`: a submission scored against a solution
//! offline, exactly as the gateway scores it (the same checks, the same
//! metric code), so a trainer can try a baseline and a solution before a
//! competition opens. `lab submit`: a participant's CSV sent to a gateway,
//! one shell line from a notebook.

use std::path::PathBuf;

use anyhow::Context as _;
use classroom::competition::{self, Columns, Metric, MetricSpec, Solution};

/// The largest file `score` reads (a solution or submission of some
/// millions of rows; the gateway's own limit is the competition's `max_bytes`).
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
    /// Score the submission this many times against the solution read once
    /// (as the gateway does, which keeps each solution parsed), and add
    /// `per_submission_s`, the fastest run's seconds (reading, checking and
    /// scoring the submission's bytes, already in memory).
    #[arg(long, default_value_t = 0)]
    repeat: u32,
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
    let bytes = read(&args.submission)?;
    let once = || -> anyhow::Result<competition::Scores> {
        let predictions =
            competition::submission::read(&bytes, MAX_BYTES, &columns, &metric, &solution)
                .with_context(|| {
                    format!("the submission {} is refused", args.submission.display())
                })?;
        Ok(competition::score(&metric, &solution, predictions)?)
    };
    let scores = once()?;
    let mut out = serde_json::to_value(scores)?;
    if args.repeat > 0 {
        let mut fastest = f64::INFINITY;
        for _ in 0..args.repeat {
            let started = std::time::Instant::now();
            once()?;
            fastest = fastest.min(started.elapsed().as_secs_f64());
        }
        out["per_submission_s"] = fastest.into();
    }
    println!("{out}");
    Ok(())
}

#[derive(clap::Args)]
pub struct SubmitArgs {
    /// The competition's name (its slug).
    competition: String,
    /// The CSV to submit.
    file: PathBuf,
    /// A note kept with the submission.
    #[arg(long, short)]
    message: Option<String>,
    /// The gateway, e.g. http://127.0.0.1:8888.
    #[arg(long, env = "LAB_URL", default_value = "http://127.0.0.1:8888")]
    url: String,
    #[arg(long, env = "LAB_TOKEN")]
    token: String,
}

/// `lab submit`: prints the public score, or each problem and fails.
pub(super) fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let url = format!(
        "{}/api/competitions/{}/submissions",
        args.url.trim_end_matches('/'),
        args.competition
    );
    let (status, body): (reqwest::StatusCode, serde_json::Value) = runtime.block_on(async {
        let mut request = reqwest::Client::new()
            .post(&url)
            .header("Authorization", format!("token {}", args.token))
            .header("Content-Type", "text/csv")
            .body(bytes);
        if let Some(message) = &args.message {
            request = request.query(&[("description", message)]);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .context("the gateway's answer was cut")?;
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        anyhow::Ok((status, body))
    })?;
    let message = |b: &serde_json::Value| {
        b["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| b.to_string())
    };
    match status.as_u16() {
        201 => {
            println!(
                "submission {}: public score {}",
                body["id"],
                body["public_shown"].as_str().unwrap_or("(none)")
            );
            Ok(())
        }
        422 => {
            eprintln!("the submission is refused:");
            for p in body["problems"].as_array().into_iter().flatten() {
                let at = match (p["line"].as_u64(), p["column"].as_str()) {
                    (Some(l), Some(c)) => format!("line {l}, column {c:?}: "),
                    (Some(l), None) => format!("line {l}: "),
                    (None, Some(c)) => format!("column {c:?}: "),
                    (None, None) => String::new(),
                };
                eprintln!("  {at}{}", p["message"].as_str().unwrap_or_default());
            }
            if let Some(more) = body["more"].as_u64().filter(|m| *m > 0) {
                eprintln!("  and {more} more");
            }
            anyhow::bail!("nothing was counted against your caps")
        }
        _ => anyhow::bail!("{status}: {}", message(&body)),
    }
}
