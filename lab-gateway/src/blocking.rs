//! Blocking work off the async runtime, bounded per user.
//!
//! A file operation takes as long as the file system likes: a read of a FIFO
//! that nobody writes never ends, a network file system can stall. Run on the
//! async workers, a few such calls stop every websocket of every user. So
//! each runs on tokio's blocking pool, and one user has at most `per_user` of
//! them in flight: the rest wait (asynchronously) for one to finish, so one
//! user's stuck calls never take threads from anyone else.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use tokio::sync::Semaphore;

/// Why blocking work did not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum BlockingError {
    #[error("the gateway is stopping")]
    Stopping,
    /// The work panicked (a bug; logged at the edge).
    #[error("a blocking task failed: {0}")]
    Failed(#[source] tokio::task::JoinError),
}

pub struct Blocking {
    per_user: usize,
    users: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Default for Blocking {
    fn default() -> Self {
        Blocking::new(4)
    }
}

impl Blocking {
    pub fn new(per_user: usize) -> Self {
        Blocking {
            per_user: per_user.max(1),
            users: Mutex::new(HashMap::new()),
        }
    }

    fn semaphore(&self, user: &str) -> Arc<Semaphore> {
        let mut users = self.users.lock();
        users
            .entry(user.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_user)))
            .clone()
    }

    /// Runs `work` for `user` on the blocking pool. The user's slot is held
    /// until `work` returns, even if the request that asked has gone.
    pub async fn run<T: Send + 'static>(
        &self,
        user: &str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, BlockingError> {
        let permit = self
            .semaphore(user)
            .acquire_owned()
            .await
            .map_err(|_| BlockingError::Stopping)?;
        tokio::task::spawn_blocking(move || {
            let result = work();
            drop(permit);
            result
        })
        .await
        .map_err(BlockingError::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn one_users_stuck_calls_leave_others_and_the_runtime_free() {
        let b = Arc::new(Blocking::new(2));
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        let stuck = Arc::new(Mutex::new(stuck));
        for _ in 0..2 {
            let (b, stuck) = (b.clone(), stuck.clone());
            tokio::spawn(async move {
                b.run("mallory", move || {
                    // Held until the test lets go (the sender drops).
                    let _released = stuck.lock().recv();
                })
                .await
            });
        }
        // Mallory's third call waits for a slot; Bob's runs at once.
        let third = {
            let b = b.clone();
            tokio::spawn(async move { b.run("mallory", || 3).await })
        };
        let bob = tokio::time::timeout(Duration::from_secs(5), b.run("bob", || 7))
            .await
            .expect("bob is not held up by mallory");
        assert_eq!(bob.unwrap(), 7);
        assert!(!third.is_finished());
        drop(release);
        let third = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .unwrap();
        assert_eq!(third.unwrap().unwrap(), 3);
    }
}
