//! The settings the runtime modules read: plain data with their defaults.
//!
//! Each type is the configuration of one runtime module (named on it); the
//! module reads it and re-exports it, and this module depends on none of
//! them, so configuration never reaches into the running gateway.

use std::time::Duration;

use scheduler::Amount;

use crate::store::Role;

const MIB: usize = 1024 * 1024;

/// The most bytes one inbound message may hold (all its frames), per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLimits {
    /// Output: results, displays (plots, images), streams.
    pub iopub: usize,
    /// Replies to execute, complete, inspect, history, comm messages.
    pub shell: usize,
    pub control: usize,
    /// `input_request`s.
    pub stdin: usize,
}

impl Default for MessageLimits {
    fn default() -> Self {
        MessageLimits {
            iopub: 64 * MIB,
            shell: 16 * MIB,
            control: MIB,
            stdin: MIB,
        }
    }
}

/// What channel sessions may buffer (`replay`), from `[limits]` in lab.toml.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetLimits {
    /// Channel sessions one user may hold at once (over all their kernels).
    pub sessions_per_user: usize,
    /// Bytes one user's replay buffers may hold together.
    pub bytes_per_user: usize,
    /// Bytes all replay buffers may hold together.
    pub bytes_total: usize,
}

impl Default for BudgetLimits {
    fn default() -> Self {
        BudgetLimits {
            sessions_per_user: 64,
            bytes_per_user: 256 << 20,
            bytes_total: 2 << 30,
        }
    }
}

/// iopub output limits per websocket session, like jupyter_server's
/// `iopub_msg_rate_limit` and `iopub_data_rate_limit`.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    pub messages_per_second: f64,
    pub bytes_per_second: f64,
    /// The window the rates are averaged over.
    pub window: Duration,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            messages_per_second: 10_000.0,
            bytes_per_second: 50e6,
            window: Duration::from_secs(3),
        }
    }
}

/// Idle culling settings; `None` turns a timeout off.
#[derive(Debug, Clone, Copy)]
pub struct CullPolicy {
    pub idle_gpu: Option<Duration>,
    pub idle_cpu: Option<Duration>,
    /// Ends even a busy kernel after this long.
    pub max_runtime: Option<Duration>,
    /// How long clients are warned before the kernel is stopped.
    pub warning: Duration,
    /// Whether kernels with a connected client are culled too.
    pub connected: bool,
}

impl Default for CullPolicy {
    fn default() -> Self {
        CullPolicy {
            idle_gpu: Some(Duration::from_secs(30 * 60)),
            idle_cpu: Some(Duration::from_secs(2 * 3600)),
            max_runtime: None,
            warning: Duration::from_secs(60),
            connected: true,
        }
    }
}

/// The most GPUs one kernel may ask for, per role.
#[derive(Debug, Clone, Copy)]
pub struct RoleLimits {
    pub engineer: Amount,
    pub trainer: Amount,
    pub ops: Amount,
    pub admin: Amount,
}

impl Default for RoleLimits {
    fn default() -> Self {
        RoleLimits {
            engineer: Amount::Finite(2),
            trainer: Amount::Finite(8),
            ops: Amount::Finite(8),
            admin: Amount::Unlimited,
        }
    }
}

impl RoleLimits {
    pub fn for_role(&self, role: Role) -> Amount {
        match role {
            Role::Engineer => self.engineer,
            Role::Trainer => self.trainer,
            Role::Ops => self.ops,
            Role::Admin => self.admin,
        }
    }
}

/// How long an academy kernel lives on without hearing from its gateway.
pub const DEFAULT_ORPHAN_TIMEOUT: Duration = Duration::from_secs(10 * 60);
