//! Errors as RFC 9457 problem details, mapped from every crate's error in one place.

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, ResponseError};
use gofer_core::id::IdError;
use gofer_core::json::JsonError;
use gofer_core::{Classify, ConfigError, ErrorKind, with_sources};
use gofer_engine::EngineError;
use gofer_tenants::TenantsError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An RFC 9457 problem detail, served as `application/problem+json`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:gofer:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// Stable machine-readable code, e.g. `pipeline_not_found`.
    pub code: String,
}

/// Every error an HTTP handler can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or unknown bearer token.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// The token may not do this; `code` says why (`forbidden`, `tenant_suspended`, `client_ip_not_allowed`).
    #[error("{detail}")]
    Forbidden {
        /// Stable code.
        code: &'static str,
        /// What is missing.
        detail: String,
    },
    /// Too many requests (or failed authentications) from this client; retry after the given seconds.
    #[error("too many requests; retry after {retry_after_s}s")]
    RateLimited {
        /// Seconds until a retry can succeed.
        retry_after_s: u64,
    },
    /// Too many failed authentications from this client address: it is blocked for a while for
    /// everything but verified paying and operator tokens (code `rate_limited`, like any 429).
    #[error(
        "too many failed authentications from this client address; blocked for {retry_after_s}s more \
         (a request with a paying tenant's or an operator's token passes)"
    )]
    AuthFailuresBlocked {
        /// Seconds until the block ends.
        retry_after_s: u64,
    },
    /// The tenant holds as many long-lived streams as its plan allows; the detail names the cap.
    #[error("{detail}")]
    TooManyStreams {
        /// Which cap, and how to free a slot.
        detail: String,
        /// Seconds after which a retry may find a slot.
        retry_after_s: u64,
    },
    /// A path or body identifier breaks the identifier rule.
    #[error(transparent)]
    InvalidIdentifier(#[from] IdError),
    /// A JSON body could not be read.
    #[error(transparent)]
    InvalidBody(#[from] JsonError),
    /// A pipeline config was refused.
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
    /// A query parameter or header is wrong; `code` names which rule.
    #[error("{detail}")]
    InvalidParameter {
        /// Stable code (`invalid_limit`, `invalid_cursor`, …).
        code: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The request matches the document's schema but breaks a rule no schema can state: a
    /// relation between fields or parameters, or a reference to something that does not exist or
    /// was not handed out (422).
    #[error("{detail}")]
    Unprocessable {
        /// Stable code (`invalid_filter`, `empty_period`, `challenge_invalid`, …).
        code: &'static str,
        /// What is wrong, naming the field.
        detail: String,
    },
    /// The body is not JSON.
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    /// The body is larger than this endpoint accepts.
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// Something does not exist (or belongs to another tenant, which looks the same).
    #[error("{detail}")]
    NotFound {
        /// `namespace_not_found`, `pipeline_not_found`, …
        code: &'static str,
        /// Which object.
        detail: String,
    },
    /// The path exists, but not with this method; `allow` lists the methods it has.
    #[error("{method} is not a method of this path; it allows {allow}")]
    MethodNotAllowed {
        /// The method asked for.
        method: String,
        /// The path's methods, comma-separated (the `Allow` header).
        allow: String,
    },
    /// The object exists already.
    #[error("{detail}")]
    Conflict {
        /// `tenant_exists`, …
        code: &'static str,
        /// Which object.
        detail: String,
    },
    /// It existed, and its content is gone for good (`object_expired`, `logs_expired`).
    #[error("{detail}")]
    Gone {
        /// Stable code.
        code: &'static str,
        /// What is gone.
        detail: String,
    },
    /// The object store is out of space.
    #[error("the object store is out of space")]
    InsufficientStorage,
    /// The service cannot answer now (database down, migrations missing).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an infrastructure failure; the detail is logged, never returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 403 with the generic `forbidden` code.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        ApiError::Forbidden { code: "forbidden", detail: detail.into() }
    }

    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden { code, .. } => code,
            ApiError::RateLimited { .. } | ApiError::AuthFailuresBlocked { .. } => "rate_limited",
            ApiError::TooManyStreams { .. } => "too_many_streams",
            ApiError::InvalidIdentifier(_) => "invalid_identifier",
            ApiError::InvalidBody(e) => e.code,
            ApiError::InvalidConfig(e) => e.code(),
            ApiError::InvalidParameter { code, .. } | ApiError::Unprocessable { code, .. } => code,
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::NotFound { code, .. } | ApiError::Conflict { code, .. } | ApiError::Gone { code, .. } => code,
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::InsufficientStorage => "insufficient_storage",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::RateLimited { .. } | ApiError::AuthFailuresBlocked { .. } => "Too many requests",
            ApiError::TooManyStreams { .. } => "Too many streams",
            ApiError::InvalidIdentifier(_) => "Invalid identifier",
            ApiError::InvalidBody(_) => "Invalid request body",
            ApiError::InvalidConfig(_) => "Invalid pipeline config",
            ApiError::InvalidParameter { .. } => "Invalid parameter",
            ApiError::Unprocessable { .. } => "Unprocessable request",
            ApiError::UnsupportedMediaType => "Unsupported media type",
            ApiError::PayloadTooLarge(_) => "Payload too large",
            ApiError::NotFound { .. } => "Not found",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Gone { .. } => "Gone",
            ApiError::MethodNotAllowed { .. } => "Method not allowed",
            ApiError::InsufficientStorage => "Insufficient storage",
            ApiError::Unavailable(_) => "Service unavailable",
            ApiError::Internal(_) => "Internal error",
        }
    }

    /// The problem detail the client sees.
    pub fn problem(&self) -> Problem {
        let detail = match self {
            // Never leak internals (SQL, paths) to clients; they are logged instead.
            ApiError::Internal(_) => "an internal error occurred; it has been logged".to_owned(),
            other => other.to_string(),
        };
        Problem {
            kind: format!("urn:gofer:problem:{}", self.code()),
            title: self.title().to_owned(),
            status: self.status_code().as_u16(),
            detail,
            code: self.code().to_owned(),
        }
    }

    /// An internal error from a message (an `anyhow::Error` formatted with `{:#}` keeps its chain).
    pub(crate) fn internal(err: impl std::fmt::Display) -> Self {
        ApiError::Internal(err.to_string())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } | ApiError::AuthFailuresBlocked { .. } | ApiError::TooManyStreams { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            // A body that is not JSON of the config's shape is a bad request; a config of the
            // right shape that breaks its rules (ranges, references, the task graph) cannot be
            // processed, as Buildkite answers an invalid pipeline upload.
            ApiError::InvalidConfig(ConfigError::Json(_)) => StatusCode::BAD_REQUEST,
            ApiError::InvalidConfig(_) | ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::InvalidIdentifier(_) | ApiError::InvalidBody(_) | ApiError::InvalidParameter { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        // One counter for every refusal by code: rate limits, quota refusals, blocks, bad input.
        metrics::counter!("gofer_problem_responses_total", "code" => self.code()).increment(1);
        match self {
            ApiError::Internal(detail) => tracing::error!(%detail, "internal error"),
            ApiError::Unavailable(detail) => tracing::warn!(%detail, "service unavailable"),
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let ApiError::RateLimited { retry_after_s }
        | ApiError::AuthFailuresBlocked { retry_after_s }
        | ApiError::TooManyStreams { retry_after_s, .. } = self
        {
            response.insert_header(("Retry-After", retry_after_s.to_string()));
        }
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            response.insert_header(("Allow", allow.as_str()));
        }
        response
            .content_type(ContentType(mime_problem()))
            .body(serde_json::to_string(&self.problem()).unwrap_or_default())
    }
}

/// A handler may answer with the error itself (`Err(e)` of a `Result<_, ApiError>` does this too).
impl actix_web::Responder for ApiError {
    type Body = actix_web::body::BoxBody;
    fn respond_to(self, _: &actix_web::HttpRequest) -> actix_web::HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
}

fn mime_problem() -> actix_web::mime::Mime {
    "application/problem+json".parse().unwrap_or(actix_web::mime::APPLICATION_JSON)
}

impl From<gofer_core::scheduler::SchedulerError> for ApiError {
    fn from(err: gofer_core::scheduler::SchedulerError) -> Self {
        use gofer_core::scheduler::SchedulerError;
        match err {
            SchedulerError::NotFound(_) => {
                ApiError::Conflict { code: "task_not_running", detail: "the task is not running (any more)".into() }
            }
            SchedulerError::Unsupported { .. } => {
                ApiError::Conflict { code: "attach_unsupported", detail: err.to_string() }
            }
            SchedulerError::Rejected(detail) => ApiError::InvalidParameter { code: "invalid_command", detail },
            SchedulerError::Unavailable(detail) => {
                ApiError::Unavailable(format!("the scheduler is unavailable: {detail}"))
            }
        }
    }
}

/// Maps an error of a domain crate by its kind; its code and message are the crate's own.
fn classified(err: &dyn Classify) -> ApiError {
    let code = err.code();
    match err.kind() {
        ErrorKind::NotFound => ApiError::NotFound { code, detail: err.to_string() },
        ErrorKind::Conflict => ApiError::Conflict { code, detail: err.to_string() },
        ErrorKind::Invalid => ApiError::InvalidParameter { code, detail: err.to_string() },
        ErrorKind::Unprocessable => ApiError::Unprocessable { code, detail: err.to_string() },
        ErrorKind::Forbidden => ApiError::Forbidden { code, detail: err.to_string() },
        ErrorKind::Gone => ApiError::Gone { code, detail: err.to_string() },
        ErrorKind::TooLarge(limit) => ApiError::PayloadTooLarge(usize::try_from(limit).unwrap_or(usize::MAX)),
        ErrorKind::StorageFull => ApiError::InsufficientStorage,
        ErrorKind::Unavailable(service) => {
            // The service's own answer (Vault's, S3's) is logged, never returned.
            tracing::error!(error = %with_sources(err), "{service} unavailable");
            ApiError::Unavailable(format!("the {service} is unavailable; try again"))
        }
        ErrorKind::Unstorable => {
            // Logged, so that the missing validation gets added.
            tracing::warn!(error = %with_sources(err), "a request value the database cannot store");
            ApiError::InvalidParameter {
                code: "invalid_value",
                detail: "a value in the request cannot be stored (for example it holds a NUL character)".into(),
            }
        }
        ErrorKind::Internal => ApiError::Internal(with_sources(err)),
    }
}

/// `From` for each domain crate's error, through [`classified`].
macro_rules! from_classified {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for ApiError {
            fn from(err: $error) -> Self {
                classified(&err)
            }
        }
    )*};
}

from_classified!(
    EngineError,
    TenantsError,
    gofer_billing::BillingError,
    gofer_secrets::SecretsError,
    gofer_objects::ObjectsError,
);

impl From<actix_web::error::JsonPayloadError> for ApiError {
    fn from(err: actix_web::error::JsonPayloadError) -> Self {
        use actix_web::error::JsonPayloadError as E;
        match err {
            E::Deserialize(e) => ApiError::InvalidBody(gofer_core::json::classify(&e)),
            E::ContentType => ApiError::UnsupportedMediaType,
            E::Overflow { limit } | E::OverflowKnownLength { limit, .. } => ApiError::PayloadTooLarge(limit),
            other => ApiError::InvalidBody(JsonError { code: "invalid_json", message: other.to_string() }),
        }
    }
}

impl From<gofer_core::objects::ObjectKeyError> for ApiError {
    fn from(err: gofer_core::objects::ObjectKeyError) -> Self {
        ApiError::InvalidParameter { code: "invalid_object_key", detail: err.to_string() }
    }
}
