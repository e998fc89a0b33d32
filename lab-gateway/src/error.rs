//! HTTP errors as Jupyter Server answers them: a status and `{"reason", "message"}`.
//!
//! Client errors carry their reason. Internal errors are logged here and
//! answered with a generic 500, so no internal detail leaks to a client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    /// A per-user limit that a retry later may pass (429).
    #[error("{0}")]
    TooMany(String),
    /// A body or a file over a configured size limit.
    #[error("{0}")]
    TooLarge(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// Admission refused a start; the body says which limit and the usage.
    #[error("{}", .0.message)]
    Refused(scheduler::Refusal),
}

impl ApiError {
    pub fn kernel_not_found(id: &str) -> Self {
        ApiError::NotFound(format!("Kernel does not exist: {id}"))
    }
}

impl From<crate::kernels::StartError> for ApiError {
    fn from(e: crate::kernels::StartError) -> Self {
        use crate::kernels::StartError as E;
        match e {
            E::NoSpecs | E::NoSuchSpec(_) => ApiError::NotFound(e.to_string()),
            E::BadRequest(_) => ApiError::BadRequest(e.to_string()),
            E::Refused(refusal) => ApiError::Refused(refusal),
            // An operator's mistake: logged, not shown.
            E::BadSpec { .. } => ApiError::Internal(e.to_string()),
            E::Cancelled | E::IdTaken(_) => ApiError::Conflict(e.to_string()),
            E::Launch { .. }
            | E::NotReady { .. }
            | E::Exited { .. }
            | E::NotRecorded(_)
            | E::StillQueued { .. } => ApiError::Unavailable(e.to_string()),
        }
    }
}

impl From<crate::kernels::KernelError> for ApiError {
    fn from(e: crate::kernels::KernelError) -> Self {
        use crate::kernels::KernelError as E;
        match e {
            E::NotFound(_) => ApiError::NotFound(e.to_string()),
            E::NotRunning(_) | E::Failed(_) => ApiError::Conflict(e.to_string()),
            E::InterruptUnanswered | E::Restart(_) => ApiError::Unavailable(e.to_string()),
            E::Signal(_) => ApiError::Internal(e.to_string()),
            E::Store(store) => store.into(),
        }
    }
}

impl From<crate::scheduling::QuotaError> for ApiError {
    fn from(e: crate::scheduling::QuotaError) -> Self {
        use crate::scheduling::QuotaError as E;
        match e {
            E::Invalid(_) => ApiError::BadRequest(e.to_string()),
            E::Store(store) => store.into(),
            E::Unreadable(_) | E::Encode(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<crate::contents::ContentsError> for ApiError {
    fn from(e: crate::contents::ContentsError) -> Self {
        use crate::contents::ContentsError as E;
        match e {
            E::NotFound(_) => ApiError::NotFound(e.to_string()),
            E::Exists(_) => ApiError::Conflict(e.to_string()),
            E::Outside(_) => ApiError::Forbidden(e.to_string()),
            E::Invalid(_) => ApiError::BadRequest(e.to_string()),
            E::TooLarge(_) => ApiError::TooLarge(e.to_string()),
            E::Io(_) | E::Encode(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<crate::blocking::BlockingError> for ApiError {
    fn from(e: crate::blocking::BlockingError) -> Self {
        match e {
            crate::blocking::BlockingError::Stopping => ApiError::Unavailable(e.to_string()),
            crate::blocking::BlockingError::Failed(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<crate::sessions::SessionError> for ApiError {
    fn from(e: crate::sessions::SessionError) -> Self {
        use crate::sessions::SessionError as E;
        match e {
            E::NotFound(_) => ApiError::NotFound(e.to_string()),
            E::NoPath => ApiError::BadRequest(e.to_string()),
            E::Start(start) => start.into(),
            E::Kernel(kernel) => kernel.into(),
        }
    }
}

impl From<crate::coursework::data::DataError> for ApiError {
    fn from(e: crate::coursework::data::DataError) -> Self {
        use crate::coursework::data::DataError;
        match e {
            DataError::Limit(e) => ApiError::BadRequest(e.to_string()),
            DataError::Io { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::InvalidName(_) => ApiError::BadRequest(e.to_string()),
            StoreError::UserExists(_) => ApiError::Conflict(e.to_string()),
            StoreError::NoUser(_) => ApiError::NotFound(e.to_string()),
            StoreError::Deactivated(_) => ApiError::Conflict(e.to_string()),
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Refused(r) = &self {
            use scheduler::admission::Limit;
            let (status, reason) = match r.limit {
                Limit::RoleGpus | Limit::GroupCeiling => (StatusCode::FORBIDDEN, "Forbidden"),
                Limit::UserKernels | Limit::UserGpus | Limit::GpuBudget => {
                    (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests")
                }
                Limit::Capacity => (StatusCode::BAD_REQUEST, "Bad Request"),
            };
            let mut body = json!({
                "reason": reason,
                "message": r.message,
                "limit": r.limit,
                "current": r.current,
                "maximum": r.maximum,
            });
            if let Some(at) = r.resets_at {
                body["resets_at"] = json!(scheduler::admission::fmt_ms(at));
            }
            return (status, Json(body)).into_response();
        }
        let (status, reason) = match &self {
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "Not Found"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "Bad Request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
            ApiError::TooMany(_) => (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large"),
            ApiError::Refused(_) => unreachable!("answered above"),
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        };
        let message = match &self {
            ApiError::Internal(_) => "internal error; see the gateway's log".to_owned(),
            other => other.to_string(),
        };
        (status, Json(json!({"reason": reason, "message": message}))).into_response()
    }
}
