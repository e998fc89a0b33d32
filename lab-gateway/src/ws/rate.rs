//! iopub output limits per websocket session, as jupyter_server has them.

use super::size_of;
use crate::wire::RawMessage;

pub use crate::config::RateLimits;

/// Counts output messages in a sliding window and refuses those over the rates.
/// Status messages and replies always pass: only output is ever dropped.
pub(super) struct RateLimiter {
    limits: RateLimits,
    window_start: tokio::time::Instant,
    messages: f64,
    bytes: f64,
}

impl RateLimiter {
    pub(super) fn new(limits: RateLimits) -> Self {
        RateLimiter {
            limits,
            window_start: tokio::time::Instant::now(),
            messages: 0.0,
            bytes: 0.0,
        }
    }

    pub(super) fn admit(&mut self, m: &RawMessage) -> bool {
        let (_, msg_type) = m.ids();
        if !matches!(
            msg_type,
            "stream" | "display_data" | "update_display_data" | "execute_result" | "error"
        ) {
            return true;
        }
        let now = tokio::time::Instant::now();
        if now.duration_since(self.window_start) > self.limits.window {
            self.window_start = now;
            self.messages = 0.0;
            self.bytes = 0.0;
        }
        let secs = self.limits.window.as_secs_f64();
        let size = size_of(m) as f64;
        if self.messages + 1.0 > self.limits.messages_per_second * secs
            || self.bytes + size > self.limits.bytes_per_second * secs
        {
            return false;
        }
        self.messages += 1.0;
        self.bytes += size;
        true
    }
}
