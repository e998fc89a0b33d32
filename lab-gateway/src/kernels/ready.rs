//! A started kernel becoming ready: it listens (where its backend can
//! tell: an academy kernel says so on its launch channel), the gateway
//! watches it from then on, and it answers a `kernel_info_request` with our
//! iopub subscription live. Cold launches, restarts and the warm pool's
//! handovers all end here.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use jupyter_protocol::KernelInfoRequest;
use launch::Launched;
use launch::launcher::Listening;

use super::error::StartError;
use super::kernel::{Endpoint, Kernel};
use super::supervisor::{LaunchRequest, READY_TIMEOUT, Supervisor, endpoint};
use crate::kernel_client;
use crate::wire::Channel;

impl Supervisor {
    /// A launched (or handed-over) kernel, once it answers: watched, not
    /// yet recorded or listed. A kernel that does not answer is killed.
    pub(super) async fn become_ready(
        &self,
        r: &LaunchRequest<'_>,
        spec: String,
        launched: &Launched,
        started: std::time::Instant,
    ) -> Result<Arc<Kernel>, StartError> {
        let kernel = Kernel::new(
            r.id,
            r.user.to_owned(),
            spec.clone(),
            Utc::now(),
            self.interrupt_by_message(&spec),
            endpoint(launched, 0),
            "starting",
            self.message_limits,
            r.restrictions.clone(),
        );
        kernel.set_folder(r.workdir.clone());
        if !self.watch_when_ready(&kernel).await {
            let alive = self.launcher.is_alive(&launched.locator).await;
            let log = self.launcher.log_tail(r.id, 2000).await;
            self.kill(&kernel).await;
            self.metrics
                .launch_failed(if alive { "not_ready" } else { "exited" }, "");
            return Err(if alive {
                StartError::NotReady {
                    spec,
                    seconds: READY_TIMEOUT.as_secs(),
                    log,
                }
            } else {
                StartError::Exited { spec, log }
            });
        }
        self.metrics
            .launch_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::info!(kernel_id = %r.id, spec = %spec, user = %r.user, ms = started.elapsed().as_millis() as u64, "kernel ready");
        Ok(kernel)
    }

    /// Waits until a launched kernel listens (where its backend can tell),
    /// watches it from then on, and waits until it answers.
    pub(super) async fn watch_when_ready(&self, kernel: &Arc<Kernel>) -> bool {
        match tokio::time::timeout(READY_TIMEOUT, self.launcher.listening(kernel.id)).await {
            Ok(Listening::Yes) => {
                // It listens and its engine is built: one nudge through
                // our live subscription is the whole check.
                self.attach(kernel);
                let live = wait_iopub(kernel, &kernel.current_endpoint()).await;
                if live && kernel.execution_state() == "starting" {
                    kernel.set_state("idle");
                }
                return live;
            }
            Ok(Listening::Unknown) => {}
            Ok(Listening::Failed(reason)) => {
                tracing::warn!(kernel_id = %kernel.id, %reason, "a kernel did not start");
                return false;
            }
            Err(_) => return false,
        }
        self.attach(kernel);
        self.wait_ready(kernel).await
    }

    /// Waits until the kernel answers a kernel_info_request and our iopub
    /// subscription is live.
    async fn wait_ready(&self, kernel: &Kernel) -> bool {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            let endpoint = kernel.current_endpoint();
            if !self.launcher.is_alive(&endpoint.locator).await {
                return false;
            }
            if kernel_client::request(
                &endpoint.connection,
                Channel::Shell,
                KernelInfoRequest {},
                Duration::from_millis(500),
            )
            .await
            .is_some()
            {
                if kernel.execution_state() == "starting" {
                    kernel.set_state("idle");
                }
                return wait_iopub(kernel, &endpoint).await;
            }
            // Not listening yet: a refused connect returns at once, and a tight
            // retry loop would take the CPU the starting kernel needs.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

/// Waits until our iopub subscription is live: a kernel drops what it
/// publishes before a subscriber has joined, so we nudge it with
/// kernel_info requests until their status messages reach us, as
/// jupyter_client does.
async fn wait_iopub(kernel: &Kernel, endpoint: &Endpoint) -> bool {
    let mut rx = kernel.subscribe();
    for attempt in 0..50u32 {
        // The reply does not matter; the status message that follows it does.
        let _reply = kernel_client::request(
            &endpoint.connection,
            Channel::Shell,
            KernelInfoRequest {},
            Duration::from_millis(500),
        )
        .await;
        // The status of a nudge that got through follows its reply within
        // milliseconds; one that was lost is retried soon, so a start does not
        // wait out a long timeout for a subscription that joined meanwhile.
        let wait = Duration::from_millis((10u64 << attempt.min(5)).min(200));
        if tokio::time::timeout(wait, rx.rx.recv()).await.is_ok() {
            return true;
        }
    }
    false
}
