//! The HTTP routes: every route with its handler, registered through
//! `utoipa_axum::routes!` so that each is described in the OpenAPI document
//! by its handler's `#[utoipa::path]` (see [`crate::openapi`]); the body
//! limits; and the few routes that are not the API (a trailing-slash alias,
//! the fallback).

use std::sync::Arc;

use axum::Router;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::assignments::{data, engineer, staff as trainer};
use crate::competitions::{intake, participant, rescore, staff, teams};
use crate::{AppState, admin, api, courses, error, openapi, sso, tokens, ui};

/// The HTTP routes, without a listener (tests call it directly too).
pub fn app(state: AppState) -> Router {
    let body_limit = state.caps.request_body;
    // Notebooks and uploads may be large (`limits.request_body`); every
    // other route keeps axum's 2 MB, so an anonymous request (a login) can
    // never make the gateway hold more.
    let large =
        move |(schemas, paths, r): UtoipaMethodRouter<AppState>| -> UtoipaMethodRouter<AppState> {
            let r = r
                .layer(axum::extract::DefaultBodyLimit::max(body_limit))
                .layer(axum::middleware::from_fn(
                    move |req: axum::extract::Request, next: axum::middleware::Next| {
                        refuse_declared_oversize(req, next, body_limit)
                    },
                ));
            (schemas, paths, r)
        };
    let (router, api) = OpenApiRouter::<AppState>::new()
        // The app, signing in.
        .routes(routes!(ui::index))
        .routes(routes!(ui::asset))
        .routes(routes!(ui::whoami, ui::login))
        .routes(routes!(ui::logout))
        .routes(routes!(sso::list))
        .routes(routes!(sso::start))
        .routes(routes!(sso::callback))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::revoke))
        // Kernel Gateway's API.
        .routes(routes!(api::api_root))
        .routes(routes!(api::status))
        .routes(routes!(api::me))
        .routes(routes!(api::kernelspecs))
        .routes(routes!(api::kernelspec))
        .routes(routes!(api::kernelspec_resource))
        .routes(routes!(api::list_kernels, api::start_kernel))
        .routes(routes!(api::get_kernel, api::delete_kernel))
        .routes(routes!(api::interrupt_kernel))
        .routes(routes!(api::restart_kernel))
        .routes(routes!(api::channels))
        .routes(routes!(api::list_sessions, api::create_session))
        .routes(routes!(
            api::get_session,
            api::patch_session,
            api::delete_session
        ))
        .routes(large(routes!(
            api::contents_root_get,
            api::contents_root_post
        )))
        .routes(large(routes!(
            api::contents_get,
            api::contents_put,
            api::contents_post,
            api::contents_patch,
            api::contents_delete
        )))
        // Courses and assignments.
        .routes(routes!(courses::list))
        .routes(routes!(courses::publish, courses::unpublish))
        .routes(routes!(courses::copy))
        .routes(routes!(courses::set_owner))
        .routes(routes!(courses::add_trainer, courses::remove_trainer))
        .routes(routes!(engineer::list_all))
        .routes(routes!(engineer::list))
        .routes(large(routes!(
            engineer::get,
            trainer::import,
            trainer::change
        )))
        .routes(routes!(data::list))
        .routes(large(routes!(data::download, data::put, data::remove)))
        .routes(routes!(engineer::fetch))
        .routes(large(routes!(engineer::submissions, engineer::submit)))
        .routes(large(routes!(engineer::validate)))
        .routes(routes!(trainer::regrade))
        .routes(routes!(trainer::gradebook))
        .routes(routes!(trainer::source_notebook))
        .routes(routes!(trainer::extension))
        .routes(routes!(engineer::submission))
        .routes(routes!(engineer::submitted_notebook))
        .routes(routes!(trainer::manual_grade))
        // Competitions.
        .routes(routes!(participant::list, staff::create))
        .routes(routes!(participant::get, staff::change))
        .routes(large(routes!(staff::put_solution)))
        .routes(routes!(staff::publish))
        .routes(routes!(staff::reveal))
        .routes(routes!(participant::join))
        .routes(large(routes!(
            participant::download,
            staff::put_data,
            staff::remove_data
        )))
        .routes(large(routes!(participant::entries, intake::submit)))
        .routes(routes!(participant::cancel))
        .routes(routes!(participant::select))
        .routes(routes!(participant::leaderboard))
        .routes(routes!(rescore::rescore))
        .routes(routes!(teams::get, teams::rename))
        .routes(routes!(teams::invite))
        .routes(routes!(teams::drop))
        .routes(routes!(teams::accept))
        .routes(routes!(teams::leave))
        // Ops.
        .routes(routes!(admin::cluster))
        .routes(routes!(admin::queue))
        .routes(routes!(admin::usage))
        .routes(routes!(admin::get_quotas, admin::put_quotas))
        .routes(routes!(admin::list_groups))
        .routes(routes!(
            admin::get_group,
            admin::put_group,
            admin::delete_group
        ))
        .routes(routes!(admin::list_users, admin::enrol))
        .routes(routes!(admin::patch_user))
        .routes(routes!(tokens::of_user))
        .routes(routes!(tokens::end_sessions))
        // The service.
        .routes(routes!(api::metrics))
        .routes(routes!(api::healthz))
        .routes(routes!(api::readyz))
        .routes(routes!(openapi::swagger_json))
        .routes(routes!(openapi::swagger_yaml))
        .split_for_parts();
    let document = Arc::new(openapi::Document::new(&openapi::finish(api)));
    router
        // Jupyter Server answers `/api/` as `/api`.
        .route("/api/", axum::routing::get(api::api_root))
        .fallback(api::not_found)
        .layer(axum::Extension(document))
        .layer(axum::middleware::map_response(json_errors))
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

/// Every error is JSON with a reason: axum's own refusals (a path segment
/// that is not a number, a query it cannot parse, a body over the limit)
/// come as plain text, and are rewritten here with their message.
async fn json_errors(r: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    let plain = r
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !(r.status().is_client_error() || r.status().is_server_error()) || !plain {
        return r;
    }
    let (mut parts, body) = r.into_parts();
    let status = parts.status;
    let mut json = if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        error::ApiError::TooLarge(
            "the request body is over this route's limit (the contents API's is limits.request_body; others take 2 MB)".into(),
        )
        .into_response()
    } else {
        let text = axum::body::to_bytes(body, 64 * 1024)
            .await
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
            .unwrap_or_default();
        let reason = status.canonical_reason().unwrap_or("Error");
        let message = if text.is_empty() {
            reason.to_owned()
        } else {
            text
        };
        (
            status,
            axum::Json(serde_json::json!({"reason": reason, "message": message})),
        )
            .into_response()
    };
    // The other headers stay (a 405's `Allow`, among them).
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    for (name, value) in &parts.headers {
        json.headers_mut().append(name.clone(), value.clone());
    }
    json
}
