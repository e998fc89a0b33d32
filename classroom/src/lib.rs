//! The teaching domain: assignments in nbgrader's format, what engineers
//! get, what the grader runs, and how a run becomes points and feedback.
//!
//! Nothing here does HTTP, storage or kernels: the gateway stores, routes
//! and executes; this crate decides. Every function is pure and total: a
//! notebook from the network is parsed into a [`Notebook`] or refused with a
//! [`FormatError`], and nothing after that panics on what it contains.
//!
//! The pipeline, one module per step, in nbgrader 0.9's order:
//!
//! 1. [`source`]: the trainer's notebook, validated like nbgrader's
//!    `CheckCellMetadata` and its marker rules ([`markers`], [`metadata`]);
//!    [`Source::release`] is `nbgrader generate_assignment`.
//! 2. [`rebuild`]: the notebook the grader runs, built from the source with
//!    only the engineer's answer cells taken from the submission (nbgrader's
//!    `ClearOutput`, `DeduplicateIds`, `OverwriteKernelspec`,
//!    `OverwriteCells` and `CheckCellMetadata`, without their holes).
//!    In Rust notebooks the source's code cells call `assert!` and the
//!    other checking macros by path ([`qualify`]), so no answer's
//!    `macro_rules!` can replace them.
//! 3. The gateway executes it (nbgrader's `Execute`: 30 s a cell, interrupt
//!    on timeout, continue after errors) and trims outputs with [`limit`].
//! 4. [`mod@score`]: nbgrader's `determine_grade` per graded cell.
//! 5. [`policy`]: dates, extensions and late penalties (nbgrader's
//!    `AssignLatePenalties` and its plugins), and when hidden results show.
//! 6. [`mod@feedback`]: what the engineer sees, never hidden tests or solutions.
//!
//! Beside the notebook, an assignment's [`data`] files: released ones go to
//! engineers and every run, hidden ones only to gradings.
//!
//! nbgrader behaviour was read from jupyter/nbgrader at 207a8e54 (after
//! v0.9.5; the grading code is unchanged from v0.9.5 there). Each module's
//! docs state the rules it copies and where it deliberately does not.

pub mod checksum;
pub mod competition;
pub mod data;
pub mod error;
pub mod feedback;
pub mod limit;
pub mod markers;
pub mod metadata;
pub mod notebook;
pub mod policy;
pub mod qualify;
pub mod rebuild;
pub mod score;
pub mod source;

mod nbjson;

#[cfg(test)]
mod fixtures;

pub use data::{DataLimitError, DataPath, DataPathError, Run, Visibility};
pub use error::{FormatError, PolicyError};
pub use feedback::{CellStatus, Feedback, FeedbackCell, feedback};
pub use limit::{limit_outputs, timeout_error};
pub use notebook::{Language, Notebook, TEXT_STUB};
pub use policy::{
    Counts, Dates, HiddenResults, LatePenalty, PenaltyUnit, Policy, Window, hidden_visible,
    may_submit, window, within_caps,
};
pub use rebuild::Rebuilt;
pub use score::{CellScore, score, total};
pub use source::{GradedCell, GradedKind, Source};
