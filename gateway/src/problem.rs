//! RFC 9457 problem details, the one error body every HTTP endpoint answers with.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use wingspan_adapters::AdapterError;
use wingspan_core::Rejection;
use wingspan_core::schema::Violation;

#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Violation>,
    #[serde(skip)]
    pub retry_after: Option<u32>,
}

/// Problem types are stable relative URIs: `/problems/<slug>`.
pub fn problem_type(slug: &str) -> String {
    format!("/problems/{slug}")
}

impl Problem {
    pub fn new(status: u16, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: problem_type(slug),
            title: title.into(),
            status,
            detail: detail.into(),
            message_id: None,
            errors: Vec::new(),
            retry_after: None,
        }
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut p = Self::new(
            503,
            "unavailable",
            "Not accepting messages right now",
            detail,
        );
        p.retry_after = Some(5);
        p
    }
}

impl From<Rejection> for Problem {
    fn from(r: Rejection) -> Self {
        Self {
            kind: problem_type(r.kind.slug()),
            title: r.kind.title().into(),
            status: r.kind.status(),
            detail: r.detail,
            message_id: r.message_id,
            errors: r.errors,
            retry_after: None,
        }
    }
}

/// A partner document its source's adapter could not decode. The detail names what is wrong
/// in general terms; adapter errors never quote document content.
impl From<AdapterError> for Problem {
    fn from(e: AdapterError) -> Self {
        let (status, title) = match &e {
            AdapterError::Malformed { .. } => (400, "Malformed document"),
            AdapterError::Refused(_) => (400, "Document refused"),
            AdapterError::Unmappable(_) | AdapterError::Encode(_) => {
                (422, "Document cannot be mapped")
            }
            AdapterError::UnsupportedType(_) => (422, "Message type not supported"),
            AdapterError::UnsupportedContentType(_) => (415, "Unsupported media type"),
        };
        Self::new(status, e.slug(), title, e.to_string())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
