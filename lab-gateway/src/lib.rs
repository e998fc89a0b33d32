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
pub mod metrics;
pub mod quota_cli;
pub mod replay;
pub mod roster;
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

use axum::Router;
use axum::routing::{get, patch, post};

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

/// The HTTP routes, without a listener (tests call it directly too).
pub fn app(state: AppState) -> Router {
    let body_limit = state.caps.request_body;
    // Notebooks and uploads may be large (`limits.request_body`); every
    // other route keeps axum's 2 MB, so an anonymous request (a login) can
    // never make the gateway hold more.
    let large_bodies = move |r: axum::routing::MethodRouter<AppState>| {
        r.layer(axum::extract::DefaultBodyLimit::max(body_limit))
            .layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    refuse_declared_oversize(req, next, body_limit)
                },
            ))
    };
    Router::new()
        .route("/", get(ui::index))
        .route("/ui/{file}", get(ui::asset))
        .route("/api/login", get(ui::whoami).post(ui::login))
        .route("/api/logout", axum::routing::post(ui::logout))
        .route("/api", get(api::api_root))
        .route("/api/", get(api::api_root))
        .route("/api/status", get(api::status))
        .route("/api/me", get(api::me))
        .route("/api/kernelspecs", get(api::kernelspecs))
        .route("/api/kernelspecs/{name}", get(api::kernelspec))
        .route(
            "/kernelspecs/{name}/{resource}",
            get(api::kernelspec_resource),
        )
        .route(
            "/api/kernels",
            get(api::list_kernels).post(api::start_kernel),
        )
        .route(
            "/api/kernels/{id}",
            get(api::get_kernel).delete(api::delete_kernel),
        )
        .route("/api/kernels/{id}/interrupt", post(api::interrupt_kernel))
        .route("/api/kernels/{id}/restart", post(api::restart_kernel))
        .route("/api/kernels/{id}/channels", get(api::channels))
        .route(
            "/api/sessions",
            get(api::list_sessions).post(api::create_session),
        )
        .route(
            "/api/sessions/{id}",
            get(api::get_session)
                .patch(api::patch_session)
                .delete(api::delete_session),
        )
        .route(
            "/api/contents",
            large_bodies(get(api::contents_get).post(api::contents_post)),
        )
        .route(
            "/api/contents/{*path}",
            large_bodies(
                get(api::contents_get)
                    .put(api::contents_put)
                    .post(api::contents_post)
                    .patch(api::contents_patch)
                    .delete(api::contents_delete),
            ),
        )
        .route("/api/courses", get(courses::list))
        .route(
            "/api/courses/{course}/{notebook}",
            axum::routing::put(courses::publish).delete(courses::unpublish),
        )
        .route(
            "/api/courses/{course}/{notebook}/copy",
            axum::routing::post(courses::copy),
        )
        .route(
            "/api/courses/{course}/owner",
            axum::routing::put(courses::set_owner),
        )
        .route(
            "/api/courses/{course}/trainers/{user}",
            axum::routing::put(courses::add_trainer).delete(courses::remove_trainer),
        )
        .route(
            "/api/competitions",
            get(competitions::participant::list).post(competitions::staff::create),
        )
        .route(
            "/api/competitions/{slug}",
            get(competitions::participant::get).patch(competitions::staff::change),
        )
        .route(
            "/api/competitions/{slug}/solution",
            large_bodies(axum::routing::put(competitions::staff::put_solution)),
        )
        .route(
            "/api/competitions/{slug}/publish",
            post(competitions::staff::publish),
        )
        .route(
            "/api/competitions/{slug}/reveal",
            post(competitions::staff::reveal),
        )
        .route(
            "/api/competitions/{slug}/join",
            post(competitions::participant::join),
        )
        .route(
            "/api/competitions/{slug}/data/{name}",
            large_bodies(
                get(competitions::participant::download)
                    .put(competitions::staff::put_data)
                    .delete(competitions::staff::remove_data),
            ),
        )
        .route(
            "/api/competitions/{slug}/submissions",
            large_bodies(
                get(competitions::participant::entries).post(competitions::intake::submit),
            ),
        )
        .route(
            "/api/competitions/{slug}/submissions/{id}",
            axum::routing::delete(competitions::participant::cancel),
        )
        .route(
            "/api/competitions/{slug}/rescore",
            post(competitions::rescore::rescore),
        )
        .route(
            "/api/competitions/{slug}/team/leave",
            post(competitions::teams::leave),
        )
        .route(
            "/api/competitions/{slug}/submissions/{id}/selected",
            axum::routing::put(competitions::participant::select),
        )
        .route(
            "/api/competitions/{slug}/team",
            get(competitions::teams::get).patch(competitions::teams::rename),
        )
        .route(
            "/api/competitions/{slug}/team/invitations",
            post(competitions::teams::invite),
        )
        .route(
            "/api/competitions/{slug}/team/invitations/{id}",
            axum::routing::delete(competitions::teams::drop),
        )
        .route(
            "/api/competitions/{slug}/team/invitations/{id}/accept",
            post(competitions::teams::accept),
        )
        .route(
            "/api/competitions/{slug}/leaderboard",
            get(competitions::participant::leaderboard),
        )
        .route("/api/assignments", get(assignments::engineer::list_all))
        .route(
            "/api/courses/{course}/assignments",
            get(assignments::engineer::list),
        )
        .route(
            "/api/courses/{course}/assignments/{name}",
            large_bodies(
                get(assignments::engineer::get)
                    .put(assignments::staff::import)
                    .patch(assignments::staff::change),
            ),
        )
        .route(
            "/api/courses/{course}/assignments/{name}/files",
            get(assignments::data::list),
        )
        .route(
            "/api/courses/{course}/assignments/{name}/files/{*path}",
            large_bodies(
                get(assignments::data::download)
                    .put(assignments::data::put)
                    .delete(assignments::data::remove),
            ),
        )
        .route(
            "/api/courses/{course}/assignments/{name}/fetch",
            post(assignments::engineer::fetch),
        )
        .route(
            "/api/courses/{course}/assignments/{name}/submissions",
            large_bodies(
                get(assignments::engineer::submissions).post(assignments::engineer::submit),
            ),
        )
        .route(
            "/api/courses/{course}/assignments/{name}/validate",
            large_bodies(post(assignments::engineer::validate)),
        )
        .route(
            "/api/courses/{course}/assignments/{name}/grade",
            post(assignments::staff::regrade),
        )
        .route(
            "/api/courses/{course}/assignments/{name}/gradebook",
            get(assignments::staff::gradebook),
        )
        .route(
            "/api/courses/{course}/assignments/{name}/source",
            get(assignments::staff::source_notebook),
        )
        .route(
            "/api/courses/{course}/assignments/{name}/extensions/{user}",
            axum::routing::put(assignments::staff::extension),
        )
        .route(
            "/api/submissions/{id}",
            get(assignments::engineer::submission),
        )
        .route(
            "/api/submissions/{id}/notebook",
            get(assignments::engineer::submitted_notebook),
        )
        .route(
            "/api/submissions/{id}/grades/{grade_id}",
            axum::routing::put(assignments::staff::manual_grade),
        )
        .route("/api/admin/cluster", get(admin::cluster))
        .route("/api/admin/queue", get(admin::queue))
        .route(
            "/api/admin/quotas",
            get(admin::get_quotas).put(admin::put_quotas),
        )
        .route("/api/admin/groups", get(admin::list_groups))
        .route(
            "/api/admin/groups/{name}",
            get(admin::get_group)
                .put(admin::put_group)
                .delete(admin::delete_group),
        )
        .route(
            "/api/admin/users",
            get(admin::list_users).post(admin::enrol),
        )
        .route("/api/admin/users/{name}", patch(admin::patch_user))
        .route("/api/admin/users/{name}/tokens", get(tokens::of_user))
        .route(
            "/api/admin/users/{name}/sessions",
            axum::routing::delete(tokens::end_sessions),
        )
        .route("/api/login/providers", get(sso::list))
        .route("/login/oidc/{name}", get(sso::start))
        .route("/login/oidc/{name}/callback", get(sso::callback))
        .route("/api/tokens", get(tokens::list).post(tokens::create))
        .route("/api/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/api/admin/usage", get(admin::usage))
        .route("/metrics", get(api::metrics))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .fallback(api::not_found)
        .layer(axum::middleware::map_response(json_413))
        .with_state(state)
}

/// A body whose `Content-Length` is over the limit is refused before any
/// handler runs. What the client is still sending is read and dropped first
/// (up to the limit again, within a minute), so that it finishes its upload
/// and reads the JSON 413 instead of seeing the connection reset under it.
async fn refuse_declared_oversize(
    req: axum::extract::Request,
    next: axum::middleware::Next,
    limit: usize,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use futures_util::StreamExt;
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let Some(declared) = declared.filter(|&n| n > limit as u64) else {
        return next.run(req).await;
    };
    let drain = declared.min((limit as u64).saturating_mul(2));
    let mut body = req.into_body().into_data_stream();
    let mut read = 0u64;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while read < drain {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => read += chunk.len() as u64,
            _ => break,
        }
    }
    error::ApiError::TooLarge(format!(
        "the request body is {declared} bytes, over the limit of {limit} bytes (limits.request_body)"
    ))
    .into_response()
}

/// axum answers a body over the limit with a plain-text 413 from inside the
/// extractor; clients (the notebook's autosave among them) get the JSON
/// error every other failure has, with the limit.
async fn json_413(r: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    let is_json = r
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if r.status() != axum::http::StatusCode::PAYLOAD_TOO_LARGE || is_json {
        return r;
    }
    error::ApiError::TooLarge(
        "the request body is over this route's limit (the contents API's is limits.request_body; others take 2 MB)".into(),
    )
    .into_response()
}

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
