//! Where kernels run, and who may have which GPU.
//!
//! Two halves that never mix: deciding and executing. [`admission`] decides
//! (GPU inventory from [`inventory`], quotas from [`quota`]); launchers
//! ([`launcher::Launcher`], with [`local::LocalLauncher`]) only execute what
//! was admitted.

pub mod admission;
pub mod inventory;
pub mod kube;
pub mod launcher;
pub mod local;
pub mod quota;
pub mod sandbox;
pub mod simulate;

pub use admission::{Decision, Event, Grant, Millis, Refusal, Request, Scheduler, Ticket, Tuning};
pub use inventory::Cluster;
pub use launcher::{KernelLocator, KernelSignal, LaunchError, LaunchSpec, Launched, Launcher};
pub use quota::{Amount, GroupQuota, QuotaConfig, UserLimits};
