//! `/api/contents`: the caller's files and checkpoints, beneath their own
//! folder only.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;

use super::parse_body;

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

/// A file, notebook or directory of the caller's, or a file's checkpoints.
#[utoipa::path(get, path = "/api/contents/{*path}", tag = "jupyter",
    params(("path" = String, Path, description = "A path beneath the caller's folder; `…/checkpoints[/ID]` for a file's checkpoints"),
        ("content" = Option<String>, Query, description = "`0` for the model without its content"),
        ("format" = Option<String>, Query, description = "`text` or `base64` for a file"),
        ("type" = Option<String>, Query, description = "`file`, `notebook` or `directory`: 400 if it is not")),
    responses((status = 200, description = "The model (or the list of checkpoints)", body = crate::openapi::models::ContentsOrCheckpoints)))]
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

/// Saves a file, notebook or directory.
#[utoipa::path(put, path = "/api/contents/{*path}", tag = "jupyter", params(("path" = String, Path, description = "A path beneath the caller's folder; `…/checkpoints[/ID]` for a file's checkpoints")),
    request_body(content = Object, description = "A contents model: `type`, `format`, `content`"),
    responses(
        (status = 200, description = "Saved over", body = crate::openapi::models::Contents),
        (status = 201, description = "Created", body = crate::openapi::models::Contents)))]
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

/// Creates an untitled file, notebook or directory inside a directory; or a checkpoint, or restores one.
#[utoipa::path(post, path = "/api/contents/{*path}", tag = "jupyter", params(("path" = String, Path, description = "A path beneath the caller's folder; `…/checkpoints[/ID]` for a file's checkpoints")),
    request_body(content = Object, description = "`{\"type\", \"ext\"}` or `{\"copy_from\"}`; none for a checkpoint"),
    responses(
        (status = 201, description = "Created (or the new checkpoint)", body = crate::openapi::models::ContentsOrCheckpoint),
        (status = 204, description = "The checkpoint was restored")))]
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

/// Renames or moves a file or directory.
#[utoipa::path(patch, path = "/api/contents/{*path}", tag = "jupyter", params(("path" = String, Path, description = "A path beneath the caller's folder; `…/checkpoints[/ID]` for a file's checkpoints")),
    request_body(content = Object, description = "`{\"path\": the new path}`"),
    responses((status = 200, description = "The model at its new path", body = crate::openapi::models::Contents)))]
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

/// Deletes a file or directory, or a checkpoint.
#[utoipa::path(delete, path = "/api/contents/{*path}", tag = "jupyter", params(("path" = String, Path, description = "A path beneath the caller's folder; `…/checkpoints[/ID]` for a file's checkpoints")),
    responses((status = 204, description = "Deleted")))]
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

/// The caller's own folder.
#[utoipa::path(get, path = "/api/contents", tag = "jupyter",
    params(
        ("content" = Option<String>, Query, description = "`0` for the model without its entries"),
        ("type" = Option<String>, Query, description = "`directory`")),
    responses((status = 200, description = "The folder's model", body = crate::openapi::models::Contents)))]
pub async fn contents_root_get(
    s: State<AppState>,
    user: AuthUser,
    q: axum::extract::Query<ContentsQuery>,
) -> Result<Json<Value>, ApiError> {
    contents_get(s, user, None, q).await
}

/// Creates an untitled file, notebook or directory in the caller's folder.
#[utoipa::path(post, path = "/api/contents", tag = "jupyter",
    request_body(content = Object, description = "`{\"type\", \"ext\"}` or `{\"copy_from\"}`"),
    responses((status = 201, description = "Created", body = crate::openapi::models::Contents)))]
pub async fn contents_root_post(
    s: State<AppState>,
    user: AuthUser,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    contents_post(s, user, None, body).await
}
