//! The REST routes, shaped as Jupyter Server and Kernel Gateway answer them.

use axum::Json;
use axum::extract::{Path, State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::kernels::KernelError;
use crate::kernels::StartRequest;

pub async fn api_root() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION")}))
}

pub async fn status(State(s): State<AppState>, AuthUser(_): AuthUser) -> Json<Value> {
    let kernels = s.kernels.all();
    let last = kernels
        .iter()
        .map(|k| {
            k.model()["last_activity"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .max()
        .unwrap_or_else(|| s.started.clone());
    Json(json!({
        "started": s.started,
        "last_activity": last,
        "kernels": kernels.len(),
        "warm_pool": s.kernels.pool_counts(),
        "connections": kernels.iter().map(|k| k.model()["connections"].as_u64().unwrap_or(0)).sum::<u64>(),
    }))
}

pub async fn me(AuthUser(user): AuthUser) -> Json<Value> {
    Json(json!({
        "identity": {"username": user.name, "name": user.name, "display_name": user.name,
                     "role": user.role, "group": user.group},
        "permissions": {}
    }))
}

pub async fn kernelspecs(State(s): State<AppState>, AuthUser(_): AuthUser) -> Json<Value> {
    Json(s.kernels.specs().model())
}

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

pub async fn get_kernel(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(s.kernels.model_for(&user, &id)?))
}

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

/// Liveness: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers and the backend can start kernels (for
/// Kubernetes, its pod watch has listed the pods); 503 with the reason if not.
pub async fn readyz(State(s): State<AppState>) -> Result<&'static str, ApiError> {
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || store.ping())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Unavailable(format!("the database does not answer: {e}")))?;
    s.kernels
        .launcher_ready()
        .await
        .map_err(ApiError::Unavailable)?;
    Ok("ready")
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

fn parse_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))
}

pub async fn list_sessions(State(s): State<AppState>, AuthUser(user): AuthUser) -> Json<Value> {
    Json(Value::Array(s.sessions.list(&user, &s.kernels)))
}

pub async fn create_session(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let model = s
        .sessions
        .create(&user, &s.kernels, parse_body(&body)?)
        .await?;
    let location = format!("/api/sessions/{}", model["id"].as_str().unwrap_or_default());
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(model),
    )
        .into_response())
}

pub async fn get_session(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(s.sessions.get(&user, &id)?))
}

pub async fn patch_session(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        s.sessions
            .update(&user, &s.kernels, &id, parse_body(&body)?)
            .await?,
    ))
}

pub async fn delete_session(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.sessions.delete(&user, &s.kernels, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn metrics(State(s): State<AppState>) -> Response {
    let now = s.kernels.snapshot();
    let replay_bytes = s.channels.replay().total();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.kernels.metrics().render(&now, replay_bytes),
    )
        .into_response()
}

/// Query of `GET /api/contents/...`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ContentsQuery {
    pub content: Option<String>,
    pub format: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// Runs `work` on the user's contents root, off the async runtime (see
/// [`crate::blocking`]): a file operation may block, and must not block others.
async fn with_root<T: Send + 'static>(
    s: &AppState,
    user: &crate::store::User,
    work: impl FnOnce(crate::contents::Root) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let dir = s.users_root.join(&user.name);
    let max_file = s.caps.contents_file;
    s.blocking
        .run(&user.name, move || {
            work(crate::contents::Root::new(dir)?.with_max_file(max_file))
        })
        .await?
}

/// Splits `a/b.ipynb/checkpoints[/id]` into the file and the checkpoint part.
fn checkpoint_route(path: &str) -> Option<(&str, Option<&str>)> {
    if let Some(file) = path.strip_suffix("/checkpoints") {
        return Some((file, None));
    }
    let (file, id) = path.rsplit_once("/checkpoints/")?;
    (!id.contains('/')).then_some((file, Some(id)))
}

pub async fn contents_get(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    path: Option<Path<String>>,
    axum::extract::Query(q): axum::extract::Query<ContentsQuery>,
) -> Result<Json<Value>, ApiError> {
    let path = path.map(|Path(p)| p).unwrap_or_default();
    with_root(&s, &user, move |root| {
        if let Some((file, None)) = checkpoint_route(&path) {
            return Ok(root.list_checkpoints(file)?);
        }
        let inside = root.resolve(&path)?;
        let content = q.content.as_deref() != Some("0");
        let model = root.model(&inside, content, q.format.as_deref())?;
        if let Some(kind) = q.kind.as_deref()
            && model["type"] != kind
        {
            return Err(ApiError::BadRequest(format!(
                "{path:?} is a {}, not a {kind}",
                model["type"]
            )));
        }
        Ok(model)
    })
    .await
    .map(Json)
}

pub async fn contents_put(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(path): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // Parsed in the user's blocking slot too: a large body is work.
    let (created, model) = with_root(&s, &user, move |root| {
        Ok(root.save(&path, parse_body(&body)?)?)
    })
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(model)).into_response())
}

pub async fn contents_post(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    path: Option<Path<String>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let path = path.map(|Path(p)| p).unwrap_or_default();
    with_root(&s, &user, move |root| match checkpoint_route(&path) {
        Some((file, None)) => {
            Ok((StatusCode::CREATED, Json(root.create_checkpoint(file)?)).into_response())
        }
        Some((file, Some(id))) => {
            root.restore_checkpoint(file, id)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        None => Ok((
            StatusCode::CREATED,
            Json(root.create(&path, parse_body(&body)?)?),
        )
            .into_response()),
    })
    .await
}

pub async fn contents_patch(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(path): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: crate::contents::ContentsRequest = parse_body(&body)?;
    let to = req
        .path
        .ok_or_else(|| ApiError::BadRequest("PATCH needs the new path".into()))?;
    with_root(&s, &user, move |root| Ok(root.rename(&path, &to)?))
        .await
        .map(Json)
}

pub async fn contents_delete(
    State(s): State<AppState>,
    AuthUser(user): AuthUser,
    Path(path): Path<String>,
) -> Result<StatusCode, ApiError> {
    with_root(&s, &user, move |root| match checkpoint_route(&path) {
        Some((file, Some(id))) => Ok(root.delete_checkpoint(file, id)?),
        _ => Ok(root.delete(&path)?),
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
