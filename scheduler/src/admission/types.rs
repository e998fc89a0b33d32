//! What goes in and out of admission: requests, grants, tickets, refusals
//! with the limit that refused, the decisions and events the gateway acts
//! on, the tuning knobs, and time as milliseconds. No decision is made here.

use serde::Serialize;

use crate::quota::{Amount, Period};

/// Milliseconds since the Unix epoch (or since a simulation's start).
pub type Millis = u64;
pub type KernelId = uuid::Uuid;

/// Tunables of the queue.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// A request waiting this long goes before every fairer one.
    pub starvation_ms: Millis,
    /// Warning time a kernel on a reclaimed GPU gets before it is stopped.
    pub reclaim_grace_ms: Millis,
    /// Half-life of the recent usage that counts in fair share.
    pub usage_half_life_ms: Millis,
    /// Assumed GPU holding time before any kernel ended, for ETAs.
    pub default_hold_ms: Millis,
    /// The cap on a user's kernels where no quota sets `max_kernels` (the
    /// gateway sets one, so no user runs kernels without bound by default).
    pub default_max_kernels: Option<u32>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            starvation_ms: 2 * 3600 * 1000,
            reclaim_grace_ms: 120 * 1000,
            usage_half_life_ms: 24 * 3600 * 1000,
            default_hold_ms: 1800 * 1000,
            default_max_kernels: None,
        }
    }
}

/// One kernel's request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub kernel: KernelId,
    pub user: String,
    /// The user's group; `None` means the default group.
    pub group: Option<String>,
    pub gpus: u32,
    /// A GPU model or MIG profile; `None` picks one.
    pub model: Option<String>,
    /// The most GPUs the user's role may ask for in one kernel.
    pub role_max_gpus: Amount,
}

/// Where an admitted kernel runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Grant {
    /// The model of the devices, `None` for a CPU kernel.
    pub model: Option<String>,
    pub node: Option<String>,
    /// `CUDA_VISIBLE_DEVICES` tokens.
    pub devices: Vec<String>,
    /// Whether the devices exist (else they are modelled, and the kernel runs on CPU).
    pub real: bool,
    /// How many of the devices are borrowed beyond the group's guarantee.
    pub borrowed: u32,
    /// CPU and memory as Kubernetes spells them (`2`, `8Gi`), for backends
    /// that enforce them (a pod's requests and limits). Admission leaves
    /// them unset; the gateway fills them in from the start request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// Where a queued request stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ticket {
    /// 1 is next.
    pub position: usize,
    /// A rough estimate, from how long kernels of this model have held GPUs.
    pub eta_seconds: u64,
    pub model: String,
    /// What it waits for, in words.
    pub waiting_for: String,
}

/// A limit a refused request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// More GPUs in one kernel than the user's role allows.
    RoleGpus,
    /// The user's concurrent kernels.
    UserKernels,
    /// The user's concurrent GPUs.
    UserGpus,
    /// The user's GPU-hours this period.
    GpuBudget,
    /// More than the group may ever hold of the model.
    GroupCeiling,
    /// No such GPU model here, or more GPUs than one node holds.
    Capacity,
}

/// Why a request was refused, in terms the user can act on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    pub limit: Limit,
    pub message: String,
    /// Current usage of the limited quantity, and its maximum.
    pub current: f64,
    pub maximum: f64,
    /// When a budget resets (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Admitted(Grant),
    Queued(Ticket),
    Refused(Refusal),
}

/// What the gateway must act on after a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A queued kernel got its GPUs: launch it.
    Admitted { kernel: KernelId, grant: Grant },
    /// A kernel holds borrowed GPUs its owner group needs: warn it, save its
    /// notebook, and stop it at `deadline` (then `release` it).
    Reclaim {
        kernel: KernelId,
        for_group: String,
        deadline: Millis,
    },
    /// A queued kernel can no longer be admitted (the quotas changed).
    Refused { kernel: KernelId, refusal: Refusal },
}

/// The start of the budget period holding `now`, and of the next one (ms).
pub fn period_bounds(period: Period, now: Millis) -> (Millis, Millis) {
    let t = chrono::DateTime::from_timestamp_millis(now as i64).unwrap_or_default();
    let (s, e) = period.bounds(t);
    (
        s.timestamp_millis() as Millis,
        e.timestamp_millis() as Millis,
    )
}

/// `%Y-%m-%dT%H:%M:%SZ` for messages.
pub fn fmt_ms(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
