//! Kernel specs and kernels: `/api/kernelspecs`, `/api/kernels` and the
//! kernel's websocket, as Kernel Gateway answers them.

use axum::Json;
use axum::extract::{Path, State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::kernels::KernelError;
use crate::kernels::StartRequest;

/// Every kernel spec, and the default one.
#[utoipa::path(get, path = "/api/kernelspecs", tag = "jupyter",
    responses((status = 200, description = "The kernel specs by name", body = inline(crate::openapi::models::KernelSpecs))))]
pub async fn kernelspecs(State(s): State<AppState>, AuthUser(_): AuthUser) -> Json<Value> {
    Json(s.kernels.specs().model())
}

/// One kernel spec.
#[utoipa::path(get, path = "/api/kernelspecs/{name}", tag = "jupyter",
    params(("name" = String, Path, description = "The kernel spec's name")),
    responses((status = 200, description = "The kernel spec", body = inline(crate::openapi::models::KernelSpec))))]
pub async fn kernelspec(
    State(s): State<AppState>,
    AuthUser(_): AuthUser,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    s.kernels
        .specs()
        .get(&name)
        .map(|spec| Json(spec.model()))
        .ok_or_else(|| ApiError::NotFound(format!("Kernel spec {name} not found")))
}

/// A kernel spec's file: its logos.
#[utoipa::path(get, path = "/kernelspecs/{name}/{resource}", tag = "jupyter",
    params(("name" = String, Path, description = "The kernel spec's name"),
           ("resource" = String, Path, description = "A file of the spec, e.g. `logo-64x64.png`")),
    responses((status = 200, description = "The file", content(
        ("image/png"), ("image/svg+xml"), ("text/javascript"), ("application/octet-stream")))))]
pub async fn kernelspec_resource(
    State(s): State<AppState>,
    AuthUser(_): AuthUser,
    Path((name, resource)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound(format!("No resource {resource} in kernel spec {name}"));
    let spec = s.kernels.specs().get(&name).ok_or_else(not_found)?;
    let path = spec.resource_path(&resource).ok_or_else(not_found)?;
    let bytes = tokio::fs::read(&path).await.map_err(|_| not_found())?;
    let mime = if resource.ends_with(".svg") {
        "image/svg+xml"
    } else if resource.ends_with(".png") {
        "image/png"
    } else if resource.ends_with(".js") {
        "text/javascript"
    } else {
        "application/octet-stream"
    };
    Ok(([(header::CONTENT_TYPE, mime)], bytes).into_response())
}

/// The caller's kernels, running or waiting for admission.
#[utoipa::path(get, path = "/api/kernels", tag = "jupyter",
    responses((status = 200, description = "The caller's kernels", body = [crate::openapi::models::Kernel])))]
pub async fn list_kernels(State(s): State<AppState>, AuthUser(user): AuthUser) -> Json<Value> {
    let mut all: Vec<Value> = s
        .kernels
        .list_for(&user)
        .iter()
        .map(|k| k.model())
        .collect();
    all.extend(s.kernels.waiting_models_for(&user));
    Json(Value::Array(all))
}

/// Starts a kernel, or queues its start until GPUs are free.
///
/// 201 when it runs; 202 when it waits (its model's `launch.progress` says where it stands, and `GET` on it follows). Refused with 403 or 429 and the limit when the caller's quota would be exceeded.
#[utoipa::path(post, path = "/api/kernels", tag = "jupyter",
    request_body(content = Object, description = "`{\"name\": spec, \"env\": {KERNEL_…: …}, \"resources\": {\"gpus\", \"cpus\", \"memory\"}}`, all optional"),
    responses(
        (status = 201, description = "Started", body = crate::openapi::models::Kernel),
        (status = 202, description = "Waiting for admission", body = crate::openapi::models::Kernel)))]
pub async fn start_kernel(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // Parsed by hand: clients differ on Content-Type, and a bad body must get
    // a JSON reason, not axum's plain-text rejection.
    let req: StartRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StartRequest::default()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Null) => StartRequest::default(),
            Ok(v) => serde_json::from_value(v)
                .map_err(|e| ApiError::BadRequest(format!("invalid kernel request: {e}")))?,
            Err(e) => return Err(ApiError::BadRequest(format!("the body is not JSON: {e}"))),
        }
    };
    // A kernel that must wait for a GPU is answered 202 with its queue position.
    let (status, id, model) = match s.kernels.start(&user, req).await? {
        crate::kernels::Started::Running(k) => (StatusCode::CREATED, k.id, k.model()),
        crate::kernels::Started::Queued(q) => (
            StatusCode::ACCEPTED,
            q.id,
            s.kernels.model_for(&user, &q.id.to_string())?,
        ),
    };
    let location = format!("/api/kernels/{id}");
    Ok((status, [(header::LOCATION, location)], Json(model)).into_response())
}

/// One of the caller's kernels.
#[utoipa::path(get, path = "/api/kernels/{id}", tag = "jupyter", params(("id" = String, Path, description = "The kernel's id (a UUID)")),
    responses((status = 200, description = "The kernel", body = crate::openapi::models::Kernel)))]
pub async fn get_kernel(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(s.kernels.model_for(&user, &id)?))
}

/// Shuts a kernel down, or cancels its start if it waits.
#[utoipa::path(delete, path = "/api/kernels/{id}", tag = "jupyter", params(("id" = String, Path, description = "The kernel's id (a UUID)")),
    responses((status = 204, description = "Shut down or cancelled")))]
pub async fn delete_kernel(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // A start that waits is cancelled; one that has just begun to run is
    // shut down like any running kernel.
    if let Some(q) = s.kernels.queued_for(&user, &id)
        && s.kernels.cancel(&q)
    {
        return Ok(StatusCode::NO_CONTENT);
    }
    let k = s.kernels.get_for(&user, &id)?;
    let kernels = s.kernels.clone();
    // Run to the end even if the client hangs up: a stop cut short would
    // leave a killed kernel registered, or its GPUs held.
    to_completion(async move { Ok(kernels.shutdown(&k).await?) }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Runs `work` in its own task, so that a client hanging up (which drops
/// the handler's future) cannot stop it half way.
async fn to_completion<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(work)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// Interrupts the kernel's running cell.
#[utoipa::path(post, path = "/api/kernels/{id}/interrupt", tag = "jupyter", params(("id" = String, Path, description = "The kernel's id (a UUID)")),
    responses((status = 204, description = "Interrupted")))]
pub async fn interrupt_kernel(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if s.kernels.queued_for(&user, &id).is_some() {
        return Err(KernelError::NotRunning(id).into());
    }
    let k = s.kernels.get_for(&user, &id)?;
    s.kernels.interrupt(&k).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Restarts the kernel: a new process, the same id and grant.
#[utoipa::path(post, path = "/api/kernels/{id}/restart", tag = "jupyter", params(("id" = String, Path, description = "The kernel's id (a UUID)")),
    responses((status = 200, description = "The restarted kernel", body = crate::openapi::models::Kernel)))]
pub async fn restart_kernel(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if s.kernels.queued_for(&user, &id).is_some() {
        return Err(KernelError::NotRunning(id).into());
    }
    let k = s.kernels.get_for(&user, &id)?;
    let kernels = s.kernels.clone();
    let kernel = k.clone();
    to_completion(async move { Ok(kernels.restart(&kernel).await?) }).await?;
    Ok(Json(k.model()))
}

/// Query of the channels websocket.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ChannelsQuery {
    pub session_id: Option<String>,
    pub resume_after: Option<String>,
}

/// The kernel's websocket: Jupyter messages on every channel.
///
/// Both the legacy JSON protocol and `v1.kernel.websocket.jupyter.org` (chosen by subprotocol). A browser passes its token as `?token=` here only.
#[utoipa::path(get, path = "/api/kernels/{id}/channels", tag = "jupyter",
    params(("id" = String, Path, description = "The kernel's id (a UUID)"),
        ("session_id" = Option<String>, Query, description = "The client's session; a reconnect with the same one gets what it missed"),
        ("resume_after" = Option<String>, Query, description = "The id of the last message the client has; a reconnect resumes after it"),
        ("token" = Option<String>, Query, description = "The token, for clients that cannot set headers")),
    responses((status = 101, description = "Switching to the websocket protocol")))]
pub async fn channels(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<ChannelsQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // Without a session_id each websocket is its own session.
    let session_id = q
        .session_id
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // On a queued kernel, the websocket connects once the kernel runs.
    let kernel = s.kernels.get_or_wait_for(&user, &id).await?;
    // A frame a little over our limit is read and answered with close code
    // 1009 and a reason; a larger one is refused from its header (1009 if
    // the connection still takes it), so no client makes the gateway hold
    // much more than MAX_FRAME.
    let ws = ws
        .protocols([crate::ws::V1])
        .max_message_size(crate::ws::MAX_FRAME + crate::ws::FRAME_SLACK)
        .max_frame_size(crate::ws::MAX_FRAME + crate::ws::FRAME_SLACK)
        // tungstenite zero-fills its whole read buffer (128 KiB by default) per
        // connection; clients send small requests, and larger frames still grow it.
        .read_buffer_size(crate::ws::READ_BUFFER);
    let v1 = ws.selected_protocol().is_some();
    let metrics = s.kernels.metrics().clone();
    let session = s
        .channels
        .session_for(&kernel, &session_id)
        .map_err(|e| ApiError::TooMany(e.to_string()))?;
    let channels = s.channels.clone();
    Ok(ws.on_upgrade(move |socket| {
        crate::ws::serve(
            socket,
            channels,
            kernel,
            (session_id, session),
            q.resume_after,
            v1,
            metrics,
        )
    }))
}
