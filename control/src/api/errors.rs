//! API errors, answered as `metav1.Status` with upstream reasons, codes and messages.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

use crate::registry::{FieldError, Resource};
use crate::store::StoreError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        group: String,
        resource: String,
        name: String,
    },
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        group: String,
        resource: String,
        name: String,
    },
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {detail}")]
    Conflict {
        group: String,
        resource: String,
        name: String,
        detail: String,
    },
    #[error("{kind_group} \"{name}\" is invalid: {}", summary(.causes))]
    Invalid {
        group: String,
        kind: String,
        kind_group: String,
        name: String,
        causes: Vec<FieldError>,
    },
    #[error("{message}")]
    ApplyConflict {
        message: String,
        /// (cause message, field) per conflicting field.
        causes: Vec<(String, String)>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("the server could not find the requested resource")]
    UnknownPath,
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("{0}")]
    Expired(String),
    #[error(
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf, application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
    )]
    UnsupportedMediaType,
    #[error("Request entity too large: limit is {0}")]
    TooLarge(usize),
    #[error("Internal error occurred: {0}")]
    Internal(String),
    /// 429: refused for now, as an eviction a disruption budget blocks.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        /// (reason, message) per cause.
        causes: Vec<(String, String)>,
    },
}

/// The causes as upstream's aggregate error prints them: one alone, several in brackets, each once.
fn summary(causes: &[FieldError]) -> String {
    let mut messages: Vec<String> = Vec::new();
    for cause in causes {
        let message = cause.to_string();
        if !messages.contains(&message) {
            messages.push(message);
        }
    }
    match messages.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

impl ApiError {
    /// NotFound for an object of `resource`.
    pub fn not_found(resource: &Resource, name: &str) -> Self {
        ApiError::NotFound {
            group: resource.group.into(),
            resource: qualified(resource),
            name: name.into(),
        }
    }

    /// Invalid (422) for an object of `resource` with the failing fields.
    pub fn invalid(resource: &Resource, name: &str, causes: Vec<FieldError>) -> Self {
        let kind_group = if resource.group.is_empty() {
            resource.kind.to_string()
        } else {
            format!("{}.{}", resource.kind, resource.group)
        };
        ApiError::Invalid {
            group: resource.group.into(),
            kind: resource.kind.into(),
            kind_group,
            name: name.into(),
            causes,
        }
    }

    /// Maps a store failure on `resource`/`name` to its API error.
    pub fn from_store(e: StoreError, resource: &Resource, name: &str) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found(resource, name),
            StoreError::AlreadyExists => ApiError::AlreadyExists {
                group: resource.group.into(),
                resource: qualified(resource),
                name: name.into(),
            },
            StoreError::Conflict(_) => ApiError::Conflict {
                group: resource.group.into(),
                resource: qualified(resource),
                name: name.into(),
                detail: "the object has been modified; please apply your changes to the latest version and try again".into(),
            },
            StoreError::Expired { .. } => ApiError::Expired(e.to_string()),
            StoreError::Backend(m) => ApiError::Internal(m),
        }
    }

    fn code(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } | ApiError::UnknownPath => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflict { .. } => StatusCode::CONFLICT,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Expired(_) => StatusCode::GONE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::UnknownPath => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::Expired(_) => "Expired",
            ApiError::UnsupportedMediaType => "UnsupportedMediaType",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::Internal(_) => "InternalError",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
        }
    }

    /// The `metav1.Status` body.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        let details = match self {
            ApiError::NotFound {
                group,
                resource,
                name,
            }
            | ApiError::AlreadyExists {
                group,
                resource,
                name,
            }
            | ApiError::Conflict {
                group,
                resource,
                name,
                ..
            } => Some(json!({
                "name": name,
                "group": group,
                "kind": resource.split('.').next().unwrap_or(resource),
            })),
            ApiError::Invalid {
                group,
                kind,
                name,
                causes,
                ..
            } => Some(json!({
                "name": name,
                "group": group,
                "kind": kind,
                "causes": causes.iter().map(|c| json!({
                    "reason": c.reason(),
                    "message": c.body(),
                    "field": c.field,
                })).collect::<Vec<_>>(),
            })),
            ApiError::TooManyRequests { causes, .. } => Some(json!({
                "causes": causes.iter().map(|(reason, message)| json!({
                    "reason": reason,
                    "message": message,
                })).collect::<Vec<_>>(),
            })),
            ApiError::ApplyConflict { causes, .. } => Some(json!({
                "causes": causes.iter().map(|(message, field)| json!({
                    "reason": "FieldManagerConflict",
                    "message": message,
                    "field": field,
                })).collect::<Vec<_>>(),
            })),
            _ => None,
        };
        if let Some(mut details) = details {
            if details.get("group").is_some_and(|g| g == "") {
                details.as_object_mut().map(|d| d.remove("group"));
            }
            status["details"] = details;
        }
        status
    }
}

/// `deployments.apps`, or `pods` for the core group, as upstream messages name resources.
pub fn qualified(resource: &Resource) -> String {
    resource.storage_name()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        if code.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body = self.status().to_string();
        let mut response = (code, body).into_response();
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response
    }
}
