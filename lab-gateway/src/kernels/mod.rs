//! The gateway's kernel layer: starts, running kernels, the warm pool,
//! culling, and the supervision of kernel processes.
//!
//! One job per module, dependencies pointing one way (down this list):
//!
//! | module | job |
//! | --- | --- |
//! | `manager`, `start_flow` | decide: admit, queue, launch, reclaim, cull, stop |
//! | `starts` | the one map of waiting starts and running kernels |
//! | `pool` | the warm pool of ready, unowned kernels |
//! | `culler` | the idle-culling policy, a pure function |
//! | `supervisor` | carry out: launch, wait ready, watch, interrupt, restart, stop |
//! | `resources` | what a start asks for, resolved (pure) |
//! | `kernel` | a running kernel's model and its iopub fan-out |
//! | `notice` | the gateway's notices, and the filter against forged ones |
//! | `error` | why a start or an action failed, as types |
//!
//! Websockets are not here: `crate::ws` attaches to a [`Kernel`]'s iopub
//! fan-out and its endpoint, and owns its sessions.

mod culler;
mod error;
mod kernel;
mod manager;
mod notice;
mod pool;
mod ready;
mod resources;
mod start_flow;
mod starts;
mod supervisor;

#[cfg(test)]
mod tests;

pub use culler::CullPolicy;
pub use error::{KernelError, StartError};
pub use kernel::{Endpoint, Kernel, Subscription};
pub use manager::{KernelManager, Started};
pub use notice::NOTICE_MIMETYPE;
pub use resources::{ResourceRequest, Restrictions, StartRequest};
pub use starts::{Start, StartState};
pub use supervisor::{DEFAULT_ORPHAN_TIMEOUT, Shares};
