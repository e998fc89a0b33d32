//! The lab gateway: Academy Lab's front door.
//!
//! It authenticates users, serves the Jupyter Kernel Gateway REST API, and
//! bridges websockets to kernels over ZeroMQ. Kernels are started through a
//! [`launch::Launcher`]; the gateway never spawns a process itself.
//!
//! Layers: [`api`] (HTTP handlers) → [`ws`] (websockets) → [`kernels`]
//! (starts and running kernels) → [`kernel_client`] and [`wire`] (ZeroMQ and
//! the message framing); [`store`] holds users, tokens and kernels in
//! SQLite; [`auth`] finds the caller; [`config`] is plain data the others read.

pub mod admin;
pub mod api;
pub mod assignments;
pub mod auth;
pub mod blocking;
pub mod cli;
pub mod client;
pub mod competitions;
pub mod config;
pub mod contents;
pub mod courses;
pub mod coursework;
pub mod error;
#[cfg(test)]
pub mod fixtures;
pub mod kernel_client;
pub mod kernels;
pub mod kernelspecs;
pub mod ledger;
pub mod memory;
pub mod metrics;
pub mod openapi;
pub mod quota_cli;
pub mod replay;
pub mod roster;
mod routes;
pub mod scheduling;
pub mod seed;
pub mod sessions;
pub mod sso;
pub mod store;
pub mod timefmt;
pub mod tokens;
pub mod ui;
pub mod wire;
pub mod ws;

use std::sync::Arc;

use crate::kernels::KernelManager;
use crate::store::Store;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub kernels: Arc<KernelManager>,
    pub sessions: Arc<sessions::Sessions>,
    /// Each user's notebook root is `users_root/<name>`.
    pub users_root: std::path::PathBuf,
    pub no_auth: bool,
    pub started: String,
    /// Size limits: request bodies, files read through the contents API.
    pub caps: config::Limits,
    /// File work off the async runtime, a few calls at a time per user.
    pub blocking: Arc<blocking::Blocking>,
    /// Websocket channel sessions, and what they may buffer for clients
    /// that are away.
    pub channels: Arc<ws::Channels>,
    /// Where assignments, submissions and graded notebooks are kept.
    pub classroom: coursework::Files,
    /// The grading queue (started by `lab serve`, or a test, with
    /// `Grader::start`).
    pub grader: Arc<coursework::Grader>,
    /// Where competitions are kept, and their parsed solutions.
    pub competitions: Arc<competitions::Competitions>,
    /// Code submissions' runs (started by `lab serve`, or a test, with
    /// `Runner::start`).
    pub code_runs: Arc<competitions::Runner>,
    /// Browser sessions' lifetime and idle timeout; personal tokens' longest.
    pub login: config::LoginPolicy,
    /// OpenID Connect providers, and the sign-ins under way.
    pub sso: Arc<sso::Sso>,
}

impl AppState {
    /// The state of a gateway over `store` and `kernels`, with every limit at
    /// its default (`lab serve` then sets what its config says).
    pub fn new(store: Store, kernels: Arc<KernelManager>, users_root: std::path::PathBuf) -> Self {
        let classroom = coursework::Files::beside(&users_root);
        let grader = Self::grader(&store, &kernels, &users_root, None, None);
        let competitions = Arc::new(competitions::Competitions::beside(&users_root));
        kernels.share_read_only(Arc::new(competitions::ParticipantFiles {
            store: store.clone(),
            files: competitions.files.clone(),
        }));
        let code_runs = competitions::Runner::new(
            store.clone(),
            kernels.clone(),
            competitions.clone(),
            users_root.clone(),
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        );
        AppState {
            competitions,
            code_runs,
            classroom,
            grader,
            store,
            kernels,
            sessions: Default::default(),
            users_root,
            no_auth: false,
            started: timefmt::iso(chrono::Utc::now()),
            caps: Default::default(),
            login: Default::default(),
            sso: Default::default(),
            blocking: Default::default(),
            channels: Default::default(),
        }
    }

    /// Runs `parallel` code submissions at once (default: the CPUs).
    pub fn with_code_runs(mut self, parallel: Option<usize>) -> Self {
        if let Some(parallel) = parallel {
            self.code_runs = competitions::Runner::new(
                self.store.clone(),
                self.kernels.clone(),
                self.competitions.clone(),
                self.users_root.clone(),
                parallel,
            );
        }
        self
    }

    /// Grades `parallel` submissions at once (default: the CPUs), in quota
    /// group `group` (default [`coursework::GRADING_GROUP`]).
    pub fn with_grading(mut self, parallel: Option<usize>, group: Option<String>) -> Self {
        self.grader = Self::grader(
            &self.store,
            &self.kernels,
            &self.users_root,
            parallel,
            group,
        );
        self
    }

    fn grader(
        store: &Store,
        kernels: &Arc<KernelManager>,
        users_root: &std::path::Path,
        parallel: Option<usize>,
        group: Option<String>,
    ) -> Arc<coursework::Grader> {
        coursework::Grader::new(
            coursework::Context {
                store: store.clone(),
                kernels: kernels.clone(),
                files: coursework::Files::beside(users_root),
                users_root: users_root.to_owned(),
                group: Some(group.unwrap_or_else(|| coursework::GRADING_GROUP.to_owned())),
            },
            parallel.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        )
    }
}

pub use routes::app;

/// Serves on an already-bound listener until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // No Nagle: a cell's small frames (status, result, reply) must not wait
    // for the client's delayed ACK, which costs 40 ms per round trip.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
