//! The REST API described as OpenAPI 3.1, for scripts and other tools.
//!
//! The description is generated from the handlers: each carries a
//! `#[utoipa::path]` attribute (method, path, parameters, bodies, success
//! answers; its doc comment gives the summary), and `lib.rs` registers every
//! route through `utoipa_axum::routes!`, which takes the route's path from
//! that attribute. So a route cannot be served without being described, and
//! its description cannot name another path. [`finish`] adds what is the same
//! for every operation (the ways to sign in, the error answer) and serves it
//! at `/api/swagger.json` and `/api/swagger.yaml`, where Kernel Gateway serves
//! its own.

pub mod models;

use std::sync::Arc;

use axum::Extension;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder, SecurityRequirement, Tag,
};

/// The finished document, serialised once.
pub struct Document {
    json: String,
    yaml: String,
}

impl Document {
    pub fn new(api: &OpenApi) -> Self {
        let value = serde_json::to_value(api).unwrap_or_default();
        Document {
            json: serde_json::to_string_pretty(&value).unwrap_or_default(),
            yaml: serde_yaml_ng::to_string(&value).unwrap_or_default(),
        }
    }
}

/// The tags, in the order a reader meets them.
const TAGS: &[(&str, &str)] = &[
    (
        "jupyter",
        "Kernel Gateway's and Jupyter Server's API: kernel specs, kernels, sessions, contents",
    ),
    (
        "login",
        "Signing in and out: tokens, browser sessions, OpenID Connect",
    ),
    (
        "tokens",
        "Personal API tokens for scripts and `--gateway-url`",
    ),
    (
        "courses",
        "Courses and the notebooks trainers publish in them",
    ),
    (
        "assignments",
        "Graded exercises: release, fetch, submit, grade",
    ),
    (
        "competitions",
        "Competitions with hidden test sets, teams and boards",
    ),
    (
        "admin",
        "For ops: GPUs, quotas, the queue, usage and people",
    ),
    ("service", "The web UI, health and metrics"),
];

/// Adds what every operation shares to the document the routes made.
pub fn finish(mut api: OpenApi) -> OpenApi {
    api.info.title = "Academy Lab".into();
    api.info.version = env!("CARGO_PKG_VERSION").into();
    api.info.description = Some(
        "The gateway's REST API. Kernel Gateway's routes answer as Kernel Gateway 3 does, so \
         Jupyter clients work unchanged; the rest is the academy's. Send a token as \
         `Authorization: token TOKEN` (or `Bearer`); a browser's session cookie works too. \
         Every error is JSON with a `reason` and a `message`."
            .into(),
    );
    api.info.license = None;
    api.info.contact = None;
    api.tags = Some(
        TAGS.iter()
            .map(|(name, about)| {
                let mut tag = Tag::new(*name);
                tag.description = Some((*about).into());
                tag
            })
            .collect(),
    );

    // axum's catch-all `{*path}` is OpenAPI's `{path}`, which says it may
    // hold `/` (sent as is, or as `%2F`).
    let paths = std::mem::take(&mut api.paths.paths);
    api.paths.paths = paths
        .into_iter()
        .map(|(path, mut item)| {
            if let Some((_, rest)) = path.split_once("{*") {
                let name = rest.trim_end_matches('}');
                for (_, op) in operations(&mut item) {
                    for p in op.parameters.iter_mut().flatten() {
                        if p.name == name {
                            let about = p.description.get_or_insert_default();
                            about.push_str(" It may hold `/`, sent as is or as `%2F`.");
                        }
                    }
                }
            }
            (path.replace("{*", "{"), item)
        })
        .collect();

    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "token",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "Authorization",
            "`token TOKEN`, as Jupyter clients send it",
        ))),
    );
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    components.add_security_scheme(
        "cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            crate::auth::COOKIE,
            "A browser session from `/api/login` or a provider's sign-in; a request \
             other than GET or HEAD must come from this server's own origin",
        ))),
    );
    components.responses.insert(
        "Error".into(),
        RefOr::T(
            ResponseBuilder::new()
                .description("An error, with its reason")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Error")))
                        .build(),
                )
                .build(),
        ),
    );
    use utoipa::PartialSchema;
    for (name, schema) in [
        ("Error", models::ErrorBody::schema()),
        ("Kernel", models::Kernel::schema()),
        ("KernelSpec", models::KernelSpec::schema()),
        ("KernelSpecs", models::KernelSpecs::schema()),
        ("Session", models::Session::schema()),
        ("Contents", models::Contents::schema()),
        ("Checkpoint", models::Checkpoint::schema()),
    ] {
        components.schemas.insert(name.into(), schema);
    }
    api.security = Some(
        ["token", "bearer", "cookie"]
            .into_iter()
            .map(|scheme| SecurityRequirement::new(scheme, Vec::<String>::new()))
            .collect(),
    );

    // Operation ids come from the method and path
    // (`get_competitions_slug_team`): no two operations share them, and a
    // handler's name, or another's, never changes a client's method names.
    for (path, item) in api.paths.paths.iter_mut() {
        for (method, op) in operations(item) {
            op.operation_id = Some(id_from(method, path));
            op.responses
                .responses
                .entry("default".into())
                .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Error")));
        }
    }
    api
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_mut().map(|op| (method, op)))
}

/// `get` and `/api/competitions/{slug}/team` → `get_competitions_slug_team`;
/// `/api` itself → `get_api`, `/` → `get_root`.
fn id_from(method: &str, path: &str) -> String {
    let rest = path.strip_prefix("/api/").unwrap_or(path);
    let mut words: Vec<&str> = rest
        .split('/')
        .map(|w| w.trim_matches(|c| c == '{' || c == '}'))
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        words.push("root");
    }
    std::iter::once(method)
        .chain(words)
        .collect::<Vec<_>>()
        .join("_")
        .replace(['.', '-'], "_")
}

/// This document, as JSON.
#[utoipa::path(
    get,
    path = "/api/swagger.json",
    tag = "service",
    security(()),
    responses((status = 200, description = "This document", body = Object))
)]
pub async fn swagger_json(Extension(doc): Extension<Arc<Document>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.json.clone(),
    )
        .into_response()
}

/// This document, as YAML.
#[utoipa::path(
    get,
    path = "/api/swagger.yaml",
    tag = "service",
    security(()),
    responses((status = 200, description = "This document", content_type = "application/yaml", body = String))
)]
pub async fn swagger_yaml(Extension(doc): Extension<Arc<Document>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/yaml")],
        doc.yaml.clone(),
    )
        .into_response()
}
