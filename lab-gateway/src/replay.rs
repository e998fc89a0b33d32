//! What channel sessions may hold in memory for clients that are away.
//!
//! Each websocket session keeps a replay buffer, so a client that reconnects
//! misses nothing (see `ws`). Bounded per session only, one user opening a
//! thousand sessions and flooding them would hold a thousand buffers. The
//! [`Budget`] bounds them together: per user (sessions and buffered bytes)
//! and for the whole gateway. When a push takes a user over their share, that
//! user's largest buffer loses its oldest messages; when the gateway is over
//! its total, the user holding the most loses theirs. Either way the cell is
//! told on stderr (the buffer counts what it dropped), and light users are
//! never the ones evicted for a heavy one.
//!
//! The budget knows buffers only through [`Evict`], so it depends on nothing
//! in `ws`.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

/// A buffer the budget can shrink.
pub trait Evict: Send + Sync {
    /// Bytes held now.
    fn held(&self) -> usize;
    /// Drops the oldest message; returns the bytes freed (0 when empty).
    fn evict_oldest(&self) -> usize;
}

pub use crate::config::BudgetLimits;

#[derive(Default)]
struct UserUse {
    /// Signed: a buffer's growth and an eviction of it may be counted in
    /// either order, and must cancel out, never saturate.
    bytes: i64,
    sessions: Vec<Weak<dyn Evict>>,
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("you have {open} channel sessions open, the limit is {limit}: close some notebooks first")]
pub struct TooManySessions {
    pub open: usize,
    pub limit: usize,
}

#[derive(Default)]
pub struct Budget {
    limits: BudgetLimits,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    total: i64,
    users: HashMap<String, UserUse>,
}

impl Budget {
    pub fn new(limits: BudgetLimits) -> Self {
        Budget {
            limits,
            inner: Mutex::default(),
        }
    }

    /// Bytes held by every buffer together.
    pub fn total(&self) -> usize {
        let total = self.inner.lock().total;
        usize::try_from(total).unwrap_or(0)
    }

    /// Counts a new session of `user`, if they are within their sessions
    /// (checked and counted under one lock, so concurrent opens cannot pass
    /// the limit together).
    pub fn register(&self, user: &str, session: Weak<dyn Evict>) -> Result<(), TooManySessions> {
        let mut inner = self.inner.lock();
        let u = inner.users.entry(user.to_owned()).or_default();
        u.sessions.retain(|s| s.strong_count() > 0);
        let limit = self.limits.sessions_per_user;
        if u.sessions.len() >= limit {
            return Err(TooManySessions {
                open: u.sessions.len(),
                limit,
            });
        }
        u.sessions.push(session);
        Ok(())
    }

    /// Records that one of `user`'s buffers grew (or shrank, negative) by
    /// `delta` bytes, then evicts until every limit holds again. Call it
    /// without holding any buffer's lock.
    pub fn charge(&self, user: &str, delta: isize) {
        // Buffers upgraded while evicting are dropped only after the lock is
        // released: the last reference to a session may be one of them, and
        // its `Drop` charges the budget again.
        let mut upgraded: Vec<Arc<dyn Evict>> = Vec::new();
        let mut inner = self.inner.lock();
        inner.apply(user, delta);
        let limits = self.limits;
        // Evict in one go down to 90%, so a flood does not scan on every message.
        let cap = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let low = |n: usize| cap(n / 10 * 9);
        if inner
            .users
            .get(user)
            .is_some_and(|u| u.bytes > cap(limits.bytes_per_user))
        {
            inner.shrink(user, low(limits.bytes_per_user), &mut upgraded);
        }
        if inner.total > cap(limits.bytes_total) {
            // The heaviest users first; one that has nothing left to give
            // passes the turn to the next.
            let mut by_weight: Vec<(i64, String)> = inner
                .users
                .iter()
                .map(|(n, u)| (u.bytes, n.clone()))
                .collect();
            by_weight.sort_unstable_by_key(|(bytes, _)| std::cmp::Reverse(*bytes));
            for (bytes, name) in by_weight {
                let excess = inner.total - low(limits.bytes_total);
                if excess <= 0 {
                    break;
                }
                inner.shrink(&name, bytes - excess, &mut upgraded);
            }
        }
        drop(inner);
        drop(upgraded);
    }
}

impl Inner {
    fn apply(&mut self, user: &str, delta: isize) {
        let u = self.users.entry(user.to_owned()).or_default();
        u.bytes += delta as i64;
        self.total += delta as i64;
    }

    /// Evicts the oldest messages of `user`'s largest buffer, again and again,
    /// until the user holds at most `target` bytes. False if nothing could go.
    /// The user's buffers are upgraded once, into `upgraded`, which the
    /// caller drops after releasing the budget's lock.
    fn shrink(&mut self, user: &str, target: i64, upgraded: &mut Vec<Arc<dyn Evict>>) -> bool {
        let Some(u) = self.users.get_mut(user) else {
            return false;
        };
        u.sessions.retain(|s| s.strong_count() > 0);
        let from = upgraded.len();
        upgraded.extend(u.sessions.iter().filter_map(|s| s.upgrade()));
        let buffers = &upgraded[from..];
        let mut freed_any = false;
        while self.users.get(user).is_some_and(|u| u.bytes > target) {
            let freed = buffers
                .iter()
                .max_by_key(|s| s.held())
                .map_or(0, |s| s.evict_oldest());
            if freed == 0 {
                break;
            }
            freed_any = true;
            self.apply(user, -(freed as isize));
        }
        freed_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer of message sizes, oldest first.
    #[derive(Default)]
    struct Fake(Mutex<std::collections::VecDeque<usize>>);

    impl Evict for Fake {
        fn held(&self) -> usize {
            self.0.lock().iter().sum()
        }
        fn evict_oldest(&self) -> usize {
            self.0.lock().pop_front().unwrap_or(0)
        }
    }

    impl Fake {
        fn push(&self, budget: &Budget, user: &str, n: usize) {
            self.0.lock().push_back(n);
            budget.charge(user, n as isize);
        }
    }

    #[test]
    fn a_heavy_user_loses_their_oldest_messages_and_a_light_one_keeps_theirs() {
        let budget = Budget::new(BudgetLimits {
            sessions_per_user: 3,
            bytes_per_user: 1000,
            bytes_total: 1500,
        });
        let light = Arc::new(Fake::default());
        budget
            .register("light", Arc::downgrade(&light) as Weak<dyn Evict>)
            .unwrap();
        light.push(&budget, "light", 600);
        let heavy: Vec<Arc<Fake>> = (0..3).map(|_| Arc::new(Fake::default())).collect();
        for h in &heavy {
            budget
                .register("heavy", Arc::downgrade(h) as Weak<dyn Evict>)
                .unwrap();
        }
        for i in 0..300 {
            heavy[i % 3].push(&budget, "heavy", 10);
        }
        // Heavy is held to its share and the total to the budget; light is untouched.
        let heavy_held: usize = heavy.iter().map(|h| h.held()).sum();
        assert!(heavy_held <= 1000, "{heavy_held}");
        assert!(budget.total() <= 1500, "{}", budget.total());
        assert_eq!(light.held(), 600);
        assert_eq!(budget.total(), heavy_held + 600);
        // A fourth session is refused; one that is gone frees its place.
        let fourth = Arc::new(Fake::default());
        let weak = || Arc::downgrade(&fourth) as Weak<dyn Evict>;
        assert_eq!(
            budget.register("heavy", weak()),
            Err(TooManySessions { open: 3, limit: 3 })
        );
        drop(heavy);
        assert_eq!(budget.register("heavy", weak()), Ok(()));
    }
}
