//! The capacity simulator: replays an academy term through the very
//! [`Scheduler`](crate::Scheduler) the gateway uses, with a virtual clock, so ops can size
//! quotas and the cluster before the term starts.
//!
//! A [`Workload`] describes cohorts (size, class hours, self-study,
//! competition weeks, quotas); [`generate`] turns it into kernel sessions
//! with a seeded random generator; [`run`] feeds them to admission as
//! arrivals, ends, and impatient users cancelling a queued start, and
//! measures waits, refusals and GPU utilisation.
//!
//! By job: [`workload`] is the term's description (TOML), [`term`] turns it
//! into sessions, `replay` runs them through the [`crate::Scheduler`], and
//! [`report`] says what happened (text, SVG, weekly chart).

mod replay;
pub mod report;
pub mod term;
#[cfg(test)]
mod tests;
pub mod workload;

use crate::admission::{Millis, Tuning};
use crate::inventory::Cluster;

pub use replay::run;
pub use report::Report;
use term::MINUTE;
pub use term::{Session, Term, generate};
pub use workload::{CohortSpec, Workload, WorkloadError};

/// Generates and runs a workload.
pub fn simulate(cluster: Cluster, workload: &Workload) -> Report {
    let term = generate(workload);
    let patience = (workload.patience_minutes * MINUTE as f64) as Millis;
    run(
        cluster,
        workload.quotas(),
        &term,
        patience,
        Tuning::default(),
    )
}
