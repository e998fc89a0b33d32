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
//! A run is `coursework::offline`'s: a fresh offline kernel of the
//! attempt's own user `.compete-ID-ATTEMPT`, which reads the participant files and
//! the hidden test features at `competitions/SLUG/` (the same place as in a
//! participant's own folder), read-only (`staging`), and never the
//! solution, which stays in `DATA/competitions` where no kernel reaches. The notebook's
//! kernel starts in the notebook's own folder, as it did for its author.
//!
//! How a run ends: scored; the notebook's own failure (timeout, error,
//! out of memory, no `submission.csv`, a refused file), which counts against
//! the caps as on Kaggle; or the platform's failure (no kernel, a lost
//! kernel, a scoring error), which queues it again, up to [`ATTEMPTS`]
//! times, and then fails it at no cost. Every running row has a deadline:
//! past it a row no run of this process holds is taken back (a restart
//! takes back all), and only the attempt that holds a row may end it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use classroom::Notebook;
use classroom::competition::code::{Failure, SUBMISSION_FILE, shown_runtime};
use classroom::competition::{self, CodeLimits, Rules, hidden};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::Notify;

use super::files::Files;
use super::{Competitions, staging};
use crate::coursework::execute::{CellRun, Limits};
use crate::coursework::offline::{self, Offline};
use crate::kernels::KernelManager;
use crate::store::{EntryRow, Role, RunEnd, Store, User};
use launch::ReadOnlyMount;

/// How many times a run is tried when the platform fails it.
pub const ATTEMPTS: i64 = 3;

/// The quota group code submissions' kernels are admitted in.
pub const GROUP: &str = "competitions";

/// Owners of code runs' kernels start with this: no person's name can.
pub(super) const OWNER_PREFIX: &str = ".compete-";

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
    /// Runs going on now, per competition, and their submissions: the
    /// deadline check never takes back a row this process still runs.
    running: Mutex<Running>,
    wake: Notify,
}

#[derive(Default)]
struct Running {
    per_competition: HashMap<String, usize>,
    ids: std::collections::HashSet<i64>,
}

/// Gives a run's place back however the run ends (a panic included).
struct Slot {
    runner: Arc<Runner>,
    competition: String,
    id: i64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.runner.running.lock();
        if let Some(n) = running.per_competition.get_mut(&self.competition) {
            *n = n.saturating_sub(1);
        }
        running.ids.remove(&self.id);
        drop(running);
        self.runner.wake();
    }
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
            running: Mutex::new(Running::default()),
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
        let staged = self.competitions.files.root().to_owned();
        let _ = tokio::task::spawn_blocking(move || {
            staging::remove_scratches(&root);
            staging::remove_staged(&staged);
        })
        .await;
        match self
            .store
            .reclaim_code_entries(None, &[], ATTEMPTS, &platform_error(ATTEMPTS))
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
            let mine: Vec<i64> = self.running.lock().ids.iter().copied().collect();
            match self.store.reclaim_code_entries(
                Some(&now),
                &mine,
                ATTEMPTS,
                &platform_error(ATTEMPTS),
            ) {
                Ok(ids) if ids.is_empty() => {}
                Ok(ids) => {
                    tracing::warn!(submissions = ?ids, "code runs past their deadline taken back")
                }
                Err(e) => tracing::error!(error = %e, "cannot check the code runs' deadlines"),
            }
            while self.running_total() < self.parallel {
                let Some(row) = self.next() else { break };
                let slot = Slot {
                    runner: self.clone(),
                    competition: row.competition.clone(),
                    id: row.id,
                };
                tokio::spawn(async move { slot.runner.clone().run(row, slot).await });
            }
            let _ = tokio::time::timeout(POLL, self.wake.notified()).await;
        }
    }

    fn running_total(&self) -> usize {
        self.running.lock().per_competition.values().sum()
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
                    let n = running.per_competition.get(&slug).copied().unwrap_or(0);
                    heads.push((n, id, slug));
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
                    let mut running = self.running.lock();
                    *running
                        .per_competition
                        .entry(row.competition.clone())
                        .or_default() += 1;
                    running.ids.insert(row.id);
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
            .unwrap_or(chrono::Duration::days(365))
    }

    async fn run(self: Arc<Self>, row: EntryRow, _slot: Slot) {
        tracing::info!(competition = %row.competition, submission = row.id, attempt = row.attempts, "code run");
        let (id, attempt) = (row.id, row.attempts);
        let mut solution = None;
        let recorded = match self.execute(&row, &mut solution).await {
            Ok(end) => {
                let recorded = self.store.finish_code_entry(id, attempt, &end);
                if matches!(recorded, Ok(true)) && matches!(end, RunEnd::Scored { .. }) {
                    self.rescore_if_changed(&row.competition, solution).await;
                }
                recorded
            }
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
    }

    /// Staff replaced the solution between this run's scoring and its
    /// record (the rescore then skipped the row, still running): the
    /// competition is rescored now, against the solution it has.
    async fn rescore_if_changed(&self, slug: &str, used: Option<String>) {
        let (store, competitions, name) = (
            self.store.clone(),
            self.competitions.clone(),
            slug.to_owned(),
        );
        let done = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let _changing = competitions.changing();
            let Some(comp) = store.competition(&name).map_err(|e| e.to_string())? else {
                return Ok(());
            };
            if comp.solution == used {
                return Ok(());
            }
            let rules: Rules = serde_json::from_str(&comp.rules).map_err(|e| e.to_string())?;
            super::rescore::rescore_all(&store, &competitions, &comp, &rules)
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await;
        if let Err(e) = done.map_err(|e| e.to_string()).and_then(|r| r) {
            tracing::error!(competition = %slug, error = %e, "cannot rescore after a solution changed during a run");
        }
    }

    /// One run. Bounded without a timer around it (which would drop a
    /// kernel mid-run): admission waits at most until the row's deadline
    /// less the time limit (then the start is cancelled), the cells stop at
    /// the time limit, and staging and scoring are bounded by file sizes.
    async fn execute(
        &self,
        row: &EntryRow,
        solution: &mut Option<String>,
    ) -> Result<RunEnd, Platform> {
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
        let cells = notebook.code_cells();
        // An attempt's own owner and scratch: an attempt still running
        // somewhere never shares them with the next.
        let user = User {
            name: format!("{OWNER_PREFIX}{}-{}", row.id, row.attempts),
            role: Role::Engineer,
            group: Some(self.group_for(&row.competition)),
        };
        let folder = (!row.folder.is_empty()).then(|| PathBuf::from(&row.folder));
        // The competition's files and the hidden ones, read-only, outside
        // the scratch; gone when this run is (`Staged`).
        let staged = staging::Staged(files.run_dir(&row.competition, row.id, row.attempts));
        let sources = (
            files.data_dir(&row.competition),
            files.hidden_dir(&row.competition),
            staged.0.clone(),
        );
        tokio::task::spawn_blocking(move || staging::stage(&sources.0, &sources.1, &sources.2))
            .await
            .map_err(|e| platform("staging the competition's files", &e))?
            .map_err(|e| platform("staging the competition's files", &e))?;
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
                stop_on_error: true,
            },
            admission_wait: admission_wait(row, &limits),
            read_only: vec![ReadOnlyMount {
                source: staged.0.clone(),
                at: super::shares::place(&row.competition),
            }],
        };
        let max = rules.max_bytes;
        let written = folder.unwrap_or_default().join(SUBMISSION_FILE);
        let collect = move |scratch: &Path| staging::read_capped(scratch, &written, max);
        let nothing = |_: &Path| Ok(());
        let ran = offline::run(
            &self.kernels,
            &self.users_root,
            run,
            &cells,
            nothing,
            collect,
        )
        .await
        .map_err(Platform)?;
        if ran.lost > 0 {
            // What decides is the file; an error is also in the cell's reply.
            tracing::debug!(
                submission = row.id,
                lost = ran.lost,
                "a code run's output was cut"
            );
        }
        let (runs, file, took) = (ran.runs, ran.collected, ran.took);
        let runtime_min = i64::try_from(shown_runtime(took)).unwrap_or(i64::MAX);
        // Shown as its team may see it: nothing computed on the hidden data.
        let columns = [rules.columns.id.clone(), rules.columns.target.clone()];
        let failing = runs
            .iter()
            .find(|(_, run)| run.outputs.iter().any(|o| o["output_type"] == "error"))
            .and_then(|(index, _)| cells.iter().position(|(i, _)| i == index));
        let failed = |f: Failure| {
            let columns = [columns[0].as_str(), columns[1].as_str()];
            let ran = hidden::Ran {
                cells: &cells,
                failing,
            };
            Ok(RunEnd::Failed {
                error: hidden::withhold(f, ran, &columns).to_json().to_string(),
                runtime_min,
            })
        };
        match judge(&runs, &limits, took) {
            Judged::Clean => {}
            Judged::Failed(failure) => return failed(failure),
            Judged::Platform(why) => return Err(Platform(why)),
        }
        let Some(bytes) = file else {
            return failed(Failure::NoSubmissionFile);
        };
        // Kept for rescoring (a new solution scores what the run wrote).
        let output = files.submission(&row.competition, &Files::output_of(&row.file, row.attempts));
        files
            .write(&output, &bytes)
            .map_err(|e| platform("storing the run's submission.csv", &e))?;
        let competitions = self.competitions.clone();
        let store = self.store.clone();
        let slug = row.competition.clone();
        let (scored, used) = tokio::task::spawn_blocking(move || {
            score(&store, &competitions, &slug, &rules, &bytes)
        })
        .await
        .map_err(|e| platform("scoring", &e))??;
        *solution = used;
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
    store: &Store,
    competitions: &Competitions,
    slug: &str,
    rules: &Rules,
    bytes: &[u8],
) -> Result<(Result<competition::Scores, Failure>, Option<String>), Platform> {
    // The rules and the solution are used under one lock, so a solution
    // replaced meanwhile is never half used (see `Competitions`); the row is
    // recorded after it is released, so the solution's SHA-256 goes with
    // the scores (`Runner::run` rescores if it changed in between).
    let _scoring = competitions.scoring();
    let comp = store
        .competition(slug)
        .map_err(|e| Platform(format!("reading the competition: {e}")))?
        .ok_or_else(|| Platform("the competition is gone".into()))?;
    let used = comp.solution.clone();
    let solution = competitions
        .solution(&comp, rules)
        .map_err(|e| Platform(format!("the solution: {e}")))?;
    let scored = match competition::submission::read(
        bytes,
        rules.max_bytes,
        &rules.columns,
        &rules.metric,
        &solution,
    ) {
        Err(rejected) => Err(Failure::Format(rejected)),
        Ok(predictions) => Ok(competition::score(&rules.metric, &solution, predictions)
            .map_err(|e| Platform(format!("scoring: {e}")))?),
    };
    Ok((scored, used))
}

/// The message of a submission the platform failed [`ATTEMPTS`] times.
fn platform_error(attempts: i64) -> String {
    json!({
        "category": "platform",
        "message": format!("the platform could not run this notebook ({attempts} tries); it costs you nothing (the reason is in the gateway's log)"),
    })
    .to_string()
}

/// What a run's cells say.
enum Judged {
    Clean,
    Failed(Failure),
    /// The gateway lost the kernel (it could not reach it, or it stopped
    /// answering): not the notebook's doing.
    Platform(String),
}

/// How the notebook did, from its cells' runs and their own time: past
/// the time limit it is a timeout (whatever error the interrupted cell
/// raised); else the first error decides (the gateway's own names for a
/// timeout, a dead kernel and a lost one, else the notebook's error).
fn judge(runs: &[(usize, CellRun)], limits: &CodeLimits, took: Duration) -> Judged {
    if took >= Duration::from_secs(limits.time_limit_s) {
        return Judged::Failed(Failure::Timeout {
            limit_s: limits.time_limit_s,
        });
    }
    let Some((run, error)) = runs.iter().find_map(|(_, run)| {
        run.outputs
            .iter()
            .find(|o| o["output_type"] == "error")
            .map(|e| (run, e))
    }) else {
        return Judged::Clean;
    };
    let ename = error["ename"].as_str().unwrap_or("Error");
    // The gateway's own word, not an error's name, which a notebook can raise.
    if run.lost {
        return Judged::Platform(error["evalue"].as_str().unwrap_or(ename).to_owned());
    }
    Judged::Failed(match ename {
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

/// How long a run's kernel may wait for admission: until the row's
/// deadline less the time limit, and at least a minute.
fn admission_wait(row: &EntryRow, limits: &CodeLimits) -> Duration {
    let left = row
        .deadline
        .as_deref()
        .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
        .and_then(|d| (d.with_timezone(&Utc) - Utc::now()).to_std().ok())
        .unwrap_or_default();
    left.saturating_sub(Duration::from_secs(limits.time_limit_s))
        .max(Duration::from_secs(60))
}
