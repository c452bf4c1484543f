//! Cross-site request forgery guard for the REST API's writes (`POST /sql`, `POST /ingest`).
//!
//! A web page on another origin can make a browser POST a `text/plain` or form body to
//! Weir without a CORS preflight (`DROP SOURCE events CASCADE` from any open tab). Browsers
//! mark such requests: they carry an `Origin` header naming the page, and
//! `Sec-Fetch-Site: cross-site`. A write whose `Origin` is not the host it was sent to, or
//! that a browser marks cross-site, is refused with 403 and a JSON error. Clients that are
//! not browsers (curl, scripts, services) send neither header and are not affected.

use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Refuses cross-origin writes; everything else passes.
pub async fn same_origin_writes(request: Request, next: Next) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        if let Some(why) = cross_origin(&request) {
            return (
                StatusCode::FORBIDDEN,
                Json(json!({ "error": format!("cross-origin write refused: {why}; send the request from a client that is not a web page of another origin") })),
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// Why `request` is a cross-origin write, if it is one.
fn cross_origin(request: &Request) -> Option<String> {
    let headers = request.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
            return Some(format!("Sec-Fetch-Site is {site}"));
        }
    }
    let origin = headers.get(header::ORIGIN)?.to_str().unwrap_or("");
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // `Origin: scheme://host[:port]`, or `null` for opaque origins.
    let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
    if origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
        return Some(format!("Origin {origin} is not this server ({host})"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().method(Method::POST).uri("/sql");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn browsers_on_other_origins_are_refused_and_plain_clients_pass() {
        assert!(cross_origin(&request(&[("host", "127.0.0.1:8080")])).is_none());
        assert!(cross_origin(&request(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ]))
        .is_none());
        assert!(cross_origin(&request(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil")
        ]))
        .is_some());
        assert!(cross_origin(&request(&[("host", "weir"), ("origin", "null")])).is_some());
        assert!(cross_origin(&request(&[
            ("host", "weir"),
            ("sec-fetch-site", "cross-site")
        ]))
        .is_some());
    }
}
