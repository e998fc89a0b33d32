//! A channel session's numbered buffer: what a client is sent, and what a
//! client that is away (or resuming) will be sent.
//!
//! Bounded by message count and bytes; what is dropped for room is counted,
//! so the client is told with the next message it gets.

use std::collections::VecDeque;
use std::sync::Arc;

use super::size_of;
use crate::wire::{Channel, RawMessage};

/// Messages kept per session for a client that is away, or behind: a cell
/// that prints 100,000 lines sends 100,000 messages, faster than a browser
/// takes them. Bytes bound the payloads; this bounds what they do not
/// count (about 200 bytes a message, 20 MiB at most).
const BUFFER_MESSAGES: usize = 100_000;
/// Bytes kept per session for a client that is away.
const BUFFER_BYTES: usize = 64 << 20;
/// Already-sent messages kept so `resume_after` can look back.
const RESUME_WINDOW: usize = 2_000;

#[derive(Default)]
pub(super) struct Buffer {
    pub(super) items: VecDeque<(u64, Channel, Arc<RawMessage>)>,
    pub(super) bytes: usize,
    next_seq: u64,
    /// Everything below this was sent to some websocket.
    pub(super) delivered: u64,
    /// Messages dropped because the buffer was full, not yet reported.
    pub(super) dropped: u64,
    /// The parent header of the last dropped message, so the notice lands in that cell.
    pub(super) dropped_parent: Option<bytes::Bytes>,
}

impl Buffer {
    pub(super) fn push(&mut self, channel: Channel, msg: Arc<RawMessage>) {
        self.bytes += size_of(&msg);
        self.items.push_back((self.next_seq, channel, msg));
        self.next_seq += 1;
        // Forget what was sent long ago, then, if still too big, drop the oldest unsent.
        while self.items.len() > RESUME_WINDOW
            && self
                .items
                .front()
                .is_some_and(|(s, _, _)| *s + (RESUME_WINDOW as u64) < self.delivered)
        {
            self.pop_front();
        }
        while self.items.len() > BUFFER_MESSAGES || self.bytes > BUFFER_BYTES {
            if let Some((seq, _, _)) = self.pop_front()
                && seq >= self.delivered
            {
                self.dropped += 1;
                self.delivered = seq + 1;
            }
        }
    }

    pub(super) fn pop_front(&mut self) -> Option<(u64, Channel, Arc<RawMessage>)> {
        let item = self.items.pop_front()?;
        self.bytes -= size_of(&item.2);
        Some(item)
    }

    pub(super) fn seq_after(&self, msg_id: &str) -> Option<u64> {
        self.items
            .iter()
            .find(|(_, _, m)| m.ids().0 == msg_id)
            .map(|(s, _, _)| s + 1)
    }
}
