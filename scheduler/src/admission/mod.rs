//! Admission: who gets which GPU, who waits, who is refused.
//!
//! [`Scheduler`] is a plain state machine with an explicit clock: the
//! gateway holds it behind one mutex (so concurrent starts are decided one
//! at a time and can never overshoot), and `lab simulate` drives the very
//! same code with a virtual clock.
//!
//! A request is checked against the user's caps and budget (a refusal says
//! which limit, the usage and when a budget resets), then joins its group's
//! queue for its GPU model, and [`Scheduler::dispatch`] admits whatever fits:
//! queues are served in dominant-share order (current use plus decayed recent
//! use, divided by the group's weight), requests within a group's guarantee
//! before borrowing ones, and any request that waited longer than the
//! starvation limit before all others. A request that does not fit blocks
//! smaller ones of the same model behind it, so large requests are never
//! starved by a stream of small ones. When a request within its group's
//! guarantee finds no free GPU, GPUs lent to other groups are reclaimed.
//!
//! By job: [`types`] holds what goes in and out (requests, grants, refusals,
//! events), `state` the scheduler's books, `grant` checks a request against
//! the caps and places it on devices, `queue` serves the queues and
//! reclaims borrowed GPUs, `request` is the entry points (request, release,
//! restore, new quotas), and [`report`] the ops view and the invariants.

mod grant;
mod queue;
pub mod report;
mod request;
mod state;
pub mod types;

pub use report::{PoolUsage, QueuedKernel, Snapshot};
pub use state::Scheduler;
pub use types::*;
