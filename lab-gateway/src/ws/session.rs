//! A channel session: one `session_id` on one kernel, which outlives its
//! websockets. It buffers the replies routed to it and the kernel's iopub
//! output (within the rate limits and the replay budget) whether or not a
//! websocket is attached.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

use super::buffer::Buffer;
use super::rate::{RateLimiter, RateLimits};
use super::size_of;
use crate::kernels::Kernel;
use crate::replay::{Budget, Evict};
use crate::wire::{Channel, RawMessage};

/// The buffer of one session_id on one kernel.
pub struct ChannelSession {
    pub(super) buffer: parking_lot::Mutex<Buffer>,
    pub(super) notify: Notify,
    /// Incremented by each websocket that attaches; the others see they were replaced.
    pub(super) attachments: AtomicU64,
    pub(super) attached: AtomicU64,
    pump: parking_lot::Mutex<Option<tokio::task::AbortHandle>>,
    /// The kernel's owner, whose share of the replay budget this buffer uses.
    user: String,
    budget: Arc<Budget>,
}

impl Drop for ChannelSession {
    fn drop(&mut self) {
        if let Some(p) = self.pump.lock().take() {
            p.abort();
        }
        let held = self.buffer.lock().bytes;
        self.budget.charge(&self.user, -(held as isize));
    }
}

impl Evict for ChannelSession {
    fn held(&self) -> usize {
        self.buffer.lock().bytes
    }

    /// The oldest message goes; if no client had it yet, the cell is told
    /// (with the next message a client gets) that output was dropped.
    fn evict_oldest(&self) -> usize {
        let mut b = self.buffer.lock();
        let Some((seq, _, msg)) = b.pop_front() else {
            return 0;
        };
        if seq >= b.delivered {
            b.dropped += 1;
            b.delivered = seq + 1;
            b.dropped_parent = Some(msg.parent_header.clone());
        }
        size_of(&msg)
    }
}

impl ChannelSession {
    pub(super) fn new(user: String, budget: Arc<Budget>) -> Self {
        ChannelSession {
            buffer: Default::default(),
            notify: Notify::new(),
            attachments: AtomicU64::new(0),
            attached: AtomicU64::new(0),
            pump: Default::default(),
            user,
            budget,
        }
    }
}

impl ChannelSession {
    pub(super) fn push(&self, channel: Channel, msg: Arc<RawMessage>) {
        let delta = {
            let mut b = self.buffer.lock();
            let before = b.bytes as isize;
            b.push(channel, msg);
            b.bytes as isize - before
        };
        self.budget.charge(&self.user, delta);
        self.notify.notify_waiters();
    }

    /// Pumps the kernel's iopub fan-out into the buffer, within the rate limits.
    pub(super) fn start(self: &Arc<Self>, kernel: Arc<Kernel>, limits: RateLimits) {
        let session = Arc::downgrade(self);
        let mut limiter = RateLimiter::new(limits);
        let mut iopub = kernel.subscribe();
        drop(kernel);
        let task = tokio::spawn(async move {
            while let Some(m) = iopub.rx.recv().await {
                let Some(s) = session.upgrade() else { return };
                let lost = iopub.dropped.swap(0, Ordering::Relaxed);
                let admitted = limiter.admit(&m);
                if lost > 0 || !admitted {
                    let mut b = s.buffer.lock();
                    b.dropped += lost + u64::from(!admitted);
                    b.dropped_parent = Some(m.parent_header.clone());
                }
                if admitted {
                    s.push(Channel::Iopub, m);
                } else {
                    s.notify.notify_waiters();
                }
            }
        });
        *self.pump.lock() = Some(task.abort_handle());
    }
}
