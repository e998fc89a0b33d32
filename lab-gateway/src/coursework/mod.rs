//! Graded exercises on the gateway's side: where their files live, the
//! grading queue, and running a submission in a grading kernel.
//!
//! What is graded and how many points it earns is decided by the
//! `classroom` crate; this module stores, schedules and executes. The HTTP
//! routes are in `assignments`.

pub mod data;
pub mod execute;
pub mod files;
pub mod grader;
pub mod offline;
pub mod run;

pub use files::Files;
pub use grader::{Grader, Position, ValidateError};
pub use run::Context;

/// The quota group grading kernels are admitted in (give it a guarantee
/// in the quotas to reserve capacity for grading).
pub const GRADING_GROUP: &str = "grading";
