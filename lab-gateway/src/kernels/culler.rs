//! Idle culling: which kernels to warn, and which to stop.
//!
//! [`judge`] is the whole policy, a pure function of a kernel's activity on
//! the runtime's clock (`tokio::time`), so tests run it with paused time.
//! The manager calls it for every kernel once a second and carries out the
//! verdicts: a warning to the clients first, the stop `warning` later, and
//! any activity in between calls the stop off.

use tokio::time::Instant;

use super::kernel::ActivityView;

pub use crate::config::CullPolicy;

/// Why a kernel is to be culled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Idle,
    MaxRuntime,
}

/// What to do with one kernel now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// It was warned, and has been active since: the stop is off.
    CallOff,
    Warn(Why),
    Stop,
}

/// The verdict on one kernel at `now`.
pub fn judge(policy: &CullPolicy, a: &ActivityView, now: Instant) -> Verdict {
    let timeout = if a.has_gpus {
        policy.idle_gpu
    } else {
        policy.idle_cpu
    };
    let idle = a.state == "idle"
        && (policy.connected || a.connections == 0)
        && timeout.is_some_and(|t| a.idle_for >= t);
    let too_old = policy.max_runtime.is_some_and(|m| a.age >= m) && a.state != "dead";
    if !(idle || too_old) {
        return if a.warned.is_some() {
            Verdict::CallOff
        } else {
            Verdict::Keep
        };
    }
    match a.warned {
        None if too_old => Verdict::Warn(Why::MaxRuntime),
        None => Verdict::Warn(Why::Idle),
        Some(at) if now.duration_since(at) >= policy.warning => Verdict::Stop,
        Some(_) => Verdict::Keep,
    }
}

/// What the clients of a kernel about to be culled are told.
pub fn warning_text(policy: &CullPolicy, why: Why, has_gpus: bool) -> String {
    let why = match why {
        Why::MaxRuntime => "it reached the maximum runtime",
        Why::Idle => "it has been idle",
    };
    format!(
        "Academy Lab: this kernel will be shut down in {} s because {why}{}. Save your work.",
        policy.warning.as_secs(),
        if has_gpus { ", to free its GPU" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn idle_for(idle_for: Duration) -> ActivityView {
        ActivityView {
            state: "idle".into(),
            idle_for,
            age: idle_for,
            connections: 1,
            has_gpus: false,
            warned: None,
        }
    }

    fn policy() -> CullPolicy {
        CullPolicy {
            idle_gpu: Some(10 * MIN),
            idle_cpu: Some(30 * MIN),
            max_runtime: Some(600 * MIN),
            warning: MIN,
            connected: true,
        }
    }

    #[test]
    fn an_idle_kernel_is_warned_then_stopped_a_warning_later() {
        let now = Instant::now();
        let p = policy();
        assert_eq!(judge(&p, &idle_for(29 * MIN), now), Verdict::Keep);
        let mut a = idle_for(30 * MIN);
        assert_eq!(judge(&p, &a, now), Verdict::Warn(Why::Idle));
        a.warned = Some(now);
        assert_eq!(judge(&p, &a, now + MIN / 2), Verdict::Keep);
        assert_eq!(judge(&p, &a, now + MIN), Verdict::Stop);
    }

    #[test]
    fn activity_after_the_warning_calls_the_stop_off() {
        let now = Instant::now();
        let mut a = idle_for(Duration::ZERO);
        a.warned = Some(now);
        assert_eq!(judge(&policy(), &a, now + MIN), Verdict::CallOff);
        a.state = "busy".into();
        a.idle_for = 40 * MIN;
        assert_eq!(judge(&policy(), &a, now + MIN), Verdict::CallOff);
    }

    #[test]
    fn gpu_kernels_have_their_own_shorter_timeout() {
        let mut a = idle_for(10 * MIN);
        assert_eq!(judge(&policy(), &a, Instant::now()), Verdict::Keep);
        a.has_gpus = true;
        assert_eq!(
            judge(&policy(), &a, Instant::now()),
            Verdict::Warn(Why::Idle)
        );
    }

    #[test]
    fn the_maximum_runtime_ends_even_a_busy_kernel_and_activity_does_not_save_it() {
        let now = Instant::now();
        let mut a = idle_for(Duration::ZERO);
        a.state = "busy".into();
        a.age = 600 * MIN;
        assert_eq!(judge(&policy(), &a, now), Verdict::Warn(Why::MaxRuntime));
        a.warned = Some(now);
        assert_eq!(judge(&policy(), &a, now + MIN), Verdict::Stop);
    }

    #[test]
    fn connected_kernels_can_be_spared() {
        let p = CullPolicy {
            connected: false,
            ..policy()
        };
        let mut a = idle_for(31 * MIN);
        assert_eq!(judge(&p, &a, Instant::now()), Verdict::Keep);
        a.connections = 0;
        assert_eq!(judge(&p, &a, Instant::now()), Verdict::Warn(Why::Idle));
        assert!(warning_text(&p, Why::Idle, true).contains("to free its GPU"));
    }
}
