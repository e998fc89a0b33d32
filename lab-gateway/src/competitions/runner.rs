//! Code submissions' runs (issue 16): a participant's notebook run offline
//! on the hidden test features, then its `submission.csv` scored.
//!
//! The queue is the `competition_submissions` rows in state `queued`
//! (`store::code_runs`), so it survives a restart. Up to `parallel` run at
//! once; the next comes from the competition with the fewest running, then
//! the oldest, so one competition's last-day flood never stands in front of
//! another's single submission (Codabench #1693). Each run's kernel is
//! admitted in the quota group `competitions` (or `competitions-SLUG`
//! when ops made one), fair against interactive users like every kernel.
//!
//! A run is `coursework::offline`'s: a fresh offline kernel of the run's
//! own user `.compete-ID`, whose scratch holds the participant files and
//! the hidden test features under `competitions/SLUG/` (the same place as
//! in a participant's own folder) and never the solution, which stays in
//! `DATA/competitions` where no kernel's sandbox reaches. The notebook's
//! kernel starts in the notebook's own folder, as it did for its author.
//!
//! How a run ends: scored; the notebook's own failure (timeout, error,
//! out of memory, no `submission.csv`, a refused file), which counts against
//! the caps as on Kaggle; or the platform's failure (no kernel, a missed
//! message, a scoring error), which queues it again, up to [`ATTEMPTS`]
//! times, and then fails it at no cost. Every running row has a deadline:
//! past it the row is taken back whatever became of its run, and only the
//! attempt that holds a row may end it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use classroom::Notebook;
use classroom::competition::code::{Failure, SUBMISSION_FILE, shown_runtime};
use classroom::competition::{self, CodeLimits, Rules};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::Notify;

use super::Competitions;
use crate::coursework::execute::{CellRun, Limits};
use crate::coursework::offline::{self, Offline};
use crate::kernels::KernelManager;
use crate::store::{EntryRow, Role, RunEnd, Store, User};

/// How many times a run is tried when the platform fails it.
pub const ATTEMPTS: i64 = 3;

/// The quota group code submissions' kernels are admitted in.
pub const GROUP: &str = "competitions";

/// Owners of code runs' kernels start with this: no person's name can.
const OWNER_PREFIX: &str = ".compete-";

/// Time a run may take beyond the notebook's own limit: waiting for its
/// kernel (admission, a GPU), starting it, scoring.
const ALLOWANCE: Duration = Duration::from_secs(15 * 60);

/// How often the queue and the deadlines are looked at when nothing wakes
/// the runner.
const POLL: Duration = Duration::from_secs(2);

/// Output a run keeps per cell, to find its error in.
const OUTPUT_BYTES: usize = 64 * 1024;

/// Runs queued code submissions in the background.
pub struct Runner {
    store: Store,
    kernels: Arc<KernelManager>,
    competitions: Arc<Competitions>,
    users_root: PathBuf,
    parallel: usize,
    /// Runs going on now, per competition.
    running: Mutex<HashMap<String, usize>>,
    wake: Notify,
}

/// Why a run gave no end to record: the platform's, tried again.
struct Platform(String);

impl Runner {
    pub fn new(
        store: Store,
        kernels: Arc<KernelManager>,
        competitions: Arc<Competitions>,
        users_root: PathBuf,
        parallel: usize,
    ) -> Arc<Runner> {
        Arc::new(Runner {
            store,
            kernels,
            competitions,
            users_root,
            parallel: parallel.max(1),
            running: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        })
    }

    /// Something was queued: look now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Takes back what a stopped gateway left running, stops the kernels
    /// and removes the scratch folders it had, and runs in the background
    /// from then on.
    pub async fn start(self: &Arc<Self>) {
        for kernel in self.kernels.all() {
            if kernel.owner().starts_with(OWNER_PREFIX) {
                tracing::info!(kernel_id = %kernel.id, "stopping a code run's kernel left from before a restart");
                if let Err(e) = self.kernels.shutdown(&kernel).await {
                    tracing::warn!(kernel_id = %kernel.id, error = %e, "cannot stop an old code run's kernel");
                }
            }
        }
        let root = self.users_root.clone();
        let _ = tokio::task::spawn_blocking(move || remove_scratches(&root)).await;
        match self
            .store
            .reclaim_code_entries(None, ATTEMPTS, &platform_error(ATTEMPTS))
        {
            Ok(ids) if ids.is_empty() => {}
            Ok(ids) => tracing::info!(
                submissions = ids.len(),
                "code submissions interrupted by a restart queued again"
            ),
            Err(e) => tracing::error!(error = %e, "cannot re-queue interrupted code submissions"),
        }
        let me = self.clone();
        tokio::spawn(async move { me.serve().await });
    }

    async fn serve(self: Arc<Self>) {
        loop {
            let now = crate::timefmt::iso(Utc::now());
            match self
                .store
                .reclaim_code_entries(Some(&now), ATTEMPTS, &platform_error(ATTEMPTS))
            {
                Ok(ids) if ids.is_empty() => {}
                Ok(ids) => {
                    tracing::warn!(submissions = ?ids, "code runs past their deadline taken back")
                }
                Err(e) => tracing::error!(error = %e, "cannot check the code runs' deadlines"),
            }
            while self.running_total() < self.parallel {
                let Some(row) = self.next() else { break };
                let me = self.clone();
                tokio::spawn(async move { me.run(row).await });
            }
            let _ = tokio::time::timeout(POLL, self.wake.notified()).await;
        }
    }

    fn running_total(&self) -> usize {
        self.running.lock().values().sum()
    }

    /// Takes the next run: the competition with the fewest running first,
    /// then the oldest submission.
    fn next(&self) -> Option<EntryRow> {
        let queued = match self.store.queued_code_entries() {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the code submissions' queue");
                return None;
            }
        };
        let mut heads: Vec<(usize, i64, String)> = Vec::new();
        {
            let running = self.running.lock();
            let mut seen = std::collections::HashSet::new();
            for (id, slug) in queued {
                if seen.insert(slug.clone()) {
                    heads.push((running.get(&slug).copied().unwrap_or(0), id, slug));
                }
            }
        }
        heads.sort();
        for (_, id, slug) in heads {
            let deadline = self.deadline_for(&slug);
            match self
                .store
                .take_code_entry(id, &crate::timefmt::iso(Utc::now() + deadline))
            {
                Ok(Some(row)) => {
                    *self
                        .running
                        .lock()
                        .entry(row.competition.clone())
                        .or_default() += 1;
                    return Some(row);
                }
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(submission = id, error = %e, "cannot take a code submission");
                    return None;
                }
            }
        }
        None
    }

    /// How long a run of `slug`'s may hold its row.
    fn deadline_for(&self, slug: &str) -> chrono::Duration {
        let limit = self
            .store
            .competition(slug)
            .ok()
            .flatten()
            .and_then(|row| super::rules(&row).ok())
            .and_then(|r| r.code)
            .unwrap_or_default();
        chrono::Duration::from_std(Duration::from_secs(limit.time_limit_s) + ALLOWANCE)
            .unwrap_or(chrono::Duration::MAX)
    }

    async fn run(self: Arc<Self>, row: EntryRow) {
        tracing::info!(competition = %row.competition, submission = row.id, attempt = row.attempts, "code run");
        let (id, attempt) = (row.id, row.attempts);
        let recorded = match self.execute(&row).await {
            Ok(end) => self.store.finish_code_entry(id, attempt, &end),
            Err(Platform(reason)) => {
                tracing::warn!(submission = id, attempt, %reason, "a code run failed on the platform");
                self.store
                    .release_code_entry(id, attempt, ATTEMPTS, &platform_error(ATTEMPTS))
            }
        };
        match recorded {
            Ok(true) => tracing::info!(submission = id, "code run ended"),
            Ok(false) => tracing::warn!(
                submission = id,
                "a code run ended after its row was taken back; its end is dropped"
            ),
            Err(e) => tracing::error!(submission = id, error = %e, "cannot record a code run"),
        }
        if let Some(n) = self.running.lock().get_mut(&row.competition) {
            *n = n.saturating_sub(1);
        }
        self.wake();
    }

    /// One run, within the row's deadline.
    async fn execute(&self, row: &EntryRow) -> Result<RunEnd, Platform> {
        let deadline = row
            .deadline
            .as_deref()
            .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
            .and_then(|d| (d.with_timezone(&Utc) - Utc::now()).to_std().ok())
            .unwrap_or(Duration::ZERO);
        match tokio::time::timeout(deadline, self.execute_within(row)).await {
            Ok(end) => end,
            Err(_) => Err(Platform("the run passed its deadline".into())),
        }
    }

    async fn execute_within(&self, row: &EntryRow) -> Result<RunEnd, Platform> {
        let platform = |what: &str, e: &dyn std::fmt::Display| Platform(format!("{what}: {e}"));
        let comp = self
            .store
            .competition(&row.competition)
            .map_err(|e| platform("reading the competition", &e))?
            .ok_or_else(|| Platform("the competition is gone".into()))?;
        let rules: Rules = serde_json::from_str(&comp.rules)
            .map_err(|e| platform("the competition's rules", &e))?;
        let limits = rules.code.unwrap_or_default();
        let files = &self.competitions.files;
        let bytes = std::fs::read(files.submission(&row.competition, &row.file))
            .map_err(|e| platform("reading the submitted notebook", &e))?;
        let notebook = Notebook::parse(&bytes).map_err(|e| platform("the stored notebook", &e))?;
        let language = notebook
            .language()
            .map_err(|e| platform("the stored notebook", &e))?;
        let cells: Vec<(usize, String)> = notebook
            .cells()
            .iter()
            .enumerate()
            .filter(|(_, c)| c["cell_type"] == "code")
            .map(|(i, c)| (i, c["source"].as_str().unwrap_or("").to_owned()))
            .collect();
        let user = User {
            name: format!("{OWNER_PREFIX}{}", row.id),
            role: Role::Engineer,
            group: Some(self.group_for(&row.competition)),
        };
        let folder = (!row.folder.is_empty()).then(|| PathBuf::from(&row.folder));
        let run = Offline {
            user: &user,
            kernel: language.kernel_name(),
            memory_bytes: limits.memory_mb.saturating_mul(1024 * 1024),
            gpus: (limits.gpus > 0).then_some(limits.gpus),
            folder: folder.clone(),
            limits: Limits {
                cell_timeout: Duration::from_secs(limits.time_limit_s),
                total_timeout: Duration::from_secs(limits.time_limit_s),
                output_bytes: OUTPUT_BYTES,
            },
        };
        let sources = (
            files.data_dir(&row.competition),
            files.hidden_dir(&row.competition),
        );
        let into = Path::new("competitions").join(&row.competition);
        let stage = move |scratch: &Path| stage(&sources.0, &sources.1, &scratch.join(&into));
        let max = rules.max_bytes;
        let written = folder.unwrap_or_default().join(SUBMISSION_FILE);
        let collect = move |scratch: &Path| read_capped(scratch, &written, max);
        let started = tokio::time::Instant::now();
        let (runs, file) =
            offline::run(&self.kernels, &self.users_root, run, &cells, stage, collect)
                .await
                .map_err(Platform)?;
        let took = started.elapsed();
        let runtime_min = i64::try_from(shown_runtime(took)).unwrap_or(i64::MAX);
        let failed = |f: Failure| {
            Ok(RunEnd::Failed {
                error: f.to_json().to_string(),
                runtime_min,
            })
        };
        if let Some(failure) = judge(&runs, &limits, took) {
            return failed(failure);
        }
        let bytes = match file {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return failed(Failure::NoSubmissionFile),
            Err(e) => return Err(platform("reading submission.csv", &e)),
        };
        let competitions = self.competitions.clone();
        let scored =
            tokio::task::spawn_blocking(move || score(&competitions, &comp, &rules, &bytes))
                .await
                .map_err(|e| platform("scoring", &e))??;
        match scored {
            Ok(scores) => Ok(RunEnd::Scored {
                public: scores.public,
                private: scores.private,
                runtime_min,
            }),
            Err(failure) => failed(failure),
        }
    }

    /// `competitions-SLUG` when ops made that group, else `competitions`.
    fn group_for(&self, slug: &str) -> String {
        let own = format!("{GROUP}-{slug}");
        if self.kernels.scheduling().quotas().group(&own).is_some() {
            own
        } else {
            GROUP.to_owned()
        }
    }
}

/// Checks and scores `bytes` against the competition's solution; `Err`
/// is the platform's failure, `Ok(Err)` the file's.
fn score(
    competitions: &Competitions,
    comp: &crate::store::CompetitionRow,
    rules: &Rules,
    bytes: &[u8],
) -> Result<Result<competition::Scores, Failure>, Platform> {
    // The solution read here is the one the submission is recorded under
    // (see `Competitions`).
    let _scoring = competitions.scoring();
    let solution = competitions
        .solution(comp, rules)
        .map_err(|e| Platform(format!("the solution: {e}")))?;
    match competition::submission::read(
        bytes,
        rules.max_bytes,
        &rules.columns,
        &rules.metric,
        &solution,
    ) {
        Err(rejected) => Ok(Err(Failure::Format(rejected))),
        Ok(predictions) => competition::score(&rules.metric, &solution, &predictions)
            .map(Ok)
            .map_err(|e| Platform(format!("scoring: {e}"))),
    }
}

/// The message of a submission the platform failed [`ATTEMPTS`] times.
fn platform_error(attempts: i64) -> String {
    json!({
        "category": "platform",
        "message": format!("the platform could not run this notebook ({attempts} tries); it costs you nothing, and staff can see it"),
    })
    .to_string()
}

/// How the notebook failed, from its cells' runs and the time they took:
/// past the time limit it is a timeout (whatever error the interrupted cell
/// raised); else the first error decides (the gateway's own names for a
/// timeout and a dead kernel, else the notebook's error).
fn judge(runs: &[(usize, CellRun)], limits: &CodeLimits, took: Duration) -> Option<Failure> {
    if took >= Duration::from_secs(limits.time_limit_s) {
        return Some(Failure::Timeout {
            limit_s: limits.time_limit_s,
        });
    }
    let error = runs
        .iter()
        .flat_map(|(_, run)| &run.outputs)
        .find(|o| o["output_type"] == "error")?;
    let ename = error["ename"].as_str().unwrap_or("Error");
    Some(match ename {
        "CellTimeoutError" => Failure::Timeout {
            limit_s: limits.time_limit_s,
        },
        // A dead kernel most often went over its memory; Python says so itself.
        "DeadKernelError" | "MemoryError" => Failure::OutOfMemory {
            memory_mb: limits.memory_mb,
        },
        _ => Failure::Error {
            ename: ename.to_owned(),
            evalue: error["evalue"].as_str().unwrap_or("").to_owned(),
            traceback: error["traceback"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .filter_map(|l| l.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        },
    })
}

/// Copies the participant files, then the hidden ones over them (a hidden
/// `test.csv` replaces the public sample of the same name), into `into`,
/// read-only.
fn stage(public: &Path, hidden: &Path, into: &Path) -> Result<(), String> {
    std::fs::create_dir_all(into).map_err(|e| e.to_string())?;
    for dir in [public, hidden] {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        };
        for entry in entries {
            let entry = entry.map_err(|e| e.to_string())?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.')
                || !entry.file_type().is_ok_and(|t| t.is_file())
            {
                continue;
            }
            let to = into.join(&name);
            let _ = std::fs::remove_file(&to);
            std::fs::copy(entry.path(), &to).map_err(|e| format!("{}: {e}", to.display()))?;
            let mut perms = std::fs::metadata(&to)
                .map_err(|e| e.to_string())?
                .permissions();
            perms.set_readonly(true);
            std::fs::set_permissions(&to, perms).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// The file at `rel` in `scratch` if there is one, up to `max` bytes and
/// one more (so the checks can say it is too large); `None` when there is
/// no regular file there. The run wrote the scratch, so anything in the
/// way may be a symlink to elsewhere: the path must resolve inside it.
fn read_capped(scratch: &Path, rel: &Path, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let path = match scratch.join(rel).canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !path.starts_with(scratch.canonicalize()?) {
        return Ok(None);
    }
    let file = match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => std::fs::File::open(&path)?,
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(max as u64 + 1).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Removes the scratch folders of runs a stopped gateway left.
fn remove_scratches(users_root: &Path) {
    let Ok(entries) = std::fs::read_dir(users_root) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(OWNER_PREFIX)
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
