//! Who may have which GPU: the academy's GPU policy.
//!
//! [`admission`] decides (GPU inventory from [`inventory`], quotas from
//! [`quota`]); [`simulate`] replays a term through the same decisions. No
//! kernel is started here: the `launch` crate executes what was admitted,
//! and depends on this crate, never the other way (no Kubernetes, Landlock
//! or process handling in the policy).

pub mod admission;
pub mod inventory;
pub mod quota;
pub mod simulate;

pub use admission::{Decision, Event, Grant, Millis, Refusal, Request, Scheduler, Ticket, Tuning};
pub use inventory::Cluster;
pub use quota::{Amount, GroupQuota, QuotaConfig, UserLimits};
