//! The console, for compliance officers and operators: one static page, its strings (one
//! table per language), its script and its style, served on the admin listener. The page
//! holds no data; its script asks for an admin token (kept in the tab's session storage),
//! learns the token's role and draws only that role's views, which call the admin endpoints
//! with it. A strict Content-Security-Policy allows only these files and calls to the same
//! origin.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const HTML: &str = include_str!("console/index.html");
const JS: &str = include_str!("console/console.js");
const STRINGS: &str = include_str!("console/strings.js");
const CSS: &str = include_str!("console/console.css");

fn serve(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

pub async fn page() -> Response {
    serve(HTML, "text/html; charset=utf-8")
}

pub async fn script() -> Response {
    serve(JS, "text/javascript; charset=utf-8")
}

pub async fn strings() -> Response {
    serve(STRINGS, "text/javascript; charset=utf-8")
}

pub async fn style() -> Response {
    serve(CSS, "text/css; charset=utf-8")
}
