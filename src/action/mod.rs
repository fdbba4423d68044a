//! Actions that answer the client instead of the upstream: block and coach
//! responses shaped like the provider's own errors (so the official SDKs
//! raise an error whose text is the message), an HTML coaching page for
//! browser navigations, and acknowledgement tokens.

pub mod ack;
mod page;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::catalog::App;
use crate::inspect::Decision;

pub use page::{ack_done_page, ack_form_page, escape};

/// The error format a client of this app understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `{"error":{"message","type","code"}}` — OpenAI and the many
    /// OpenAI-compatible APIs.
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`.
    Anthropic,
    /// `{"error":{"code","message","status"}}`.
    Gemini,
    /// A page for a person in a browser.
    Html,
}

impl Shape {
    /// Browser navigations get HTML; API clients their provider's JSON.
    pub fn for_request(app: &App, headers: &HeaderMap) -> Shape {
        if is_navigation(headers) {
            return Shape::Html;
        }
        match app.vendor.to_ascii_lowercase().as_str() {
            "anthropic" => Shape::Anthropic,
            "google" => Shape::Gemini,
            _ => Shape::OpenAi,
        }
    }
}

/// `Sec-Fetch-Mode: navigate`, or an `Accept` that prefers `text/html`.
pub fn is_navigation(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-mode")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"navigate"))
    {
        return true;
    }
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let first = accept.split(',').next().unwrap_or("").trim();
    first.starts_with("text/html") || first.starts_with("application/xhtml+xml")
}

/// What the person is told.
#[derive(Debug, Clone)]
pub struct Notice<'a> {
    pub brand: &'a str,
    pub app: &'a str,
    /// The rendered message (never contains matched values).
    pub message: String,
    /// Detector ids and counts.
    pub detectors: &'a [(String, u32)],
    pub incident: &'a str,
    /// Where to acknowledge (coach only).
    pub ack_link: Option<&'a str>,
    pub help_url: Option<&'a str>,
}

/// A 403 carrying the notice in the client's format.
pub fn respond(decision: Decision, shape: Shape, notice: &Notice<'_>) -> Response<Bytes> {
    let (content_type, body) = match shape {
        Shape::Html => (
            "text/html; charset=utf-8",
            page::coaching_page(decision, notice),
        ),
        Shape::OpenAi => (
            "application/json",
            serde_json::json!({"error": {
                "message": notice.message,
                "type": "lantern_policy",
                "code": format!("lantern_{}", decision.as_str()),
                "param": null,
            }})
            .to_string(),
        ),
        Shape::Anthropic => (
            "application/json",
            serde_json::json!({"type": "error", "error": {
                "type": "permission_error",
                "message": notice.message,
            }})
            .to_string(),
        ),
        Shape::Gemini => (
            "application/json",
            serde_json::json!({"error": {
                "code": 403,
                "message": notice.message,
                "status": "PERMISSION_DENIED",
            }})
            .to_string(),
        ),
    };
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = StatusCode::FORBIDDEN;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(vendor: &str) -> App {
        App {
            id: "x".into(),
            name: "X".into(),
            vendor: vendor.into(),
            category: "api".into(),
            hosts: vec![],
            sanctioned: false,
            inspect: true,
        }
    }

    fn notice() -> Notice<'static> {
        Notice {
            brand: "Acme",
            app: "ChatGPT",
            message: "no <secrets> please".into(),
            detectors: &[],
            incident: "abc",
            ack_link: None,
            help_url: None,
        }
    }

    #[test]
    fn provider_shapes() {
        let h = HeaderMap::new();
        let body = |shape| {
            let r = respond(Decision::Block, shape, &notice());
            assert_eq!(r.status(), 403);
            serde_json::from_slice::<serde_json::Value>(r.body()).unwrap()
        };
        let openai = body(Shape::for_request(&app("OpenAI"), &h));
        assert_eq!(openai["error"]["message"], "no <secrets> please");
        assert_eq!(openai["error"]["code"], "lantern_block");
        let anthropic = body(Shape::for_request(&app("Anthropic"), &h));
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "permission_error");
        let gemini = body(Shape::for_request(&app("Google"), &h));
        assert_eq!(gemini["error"]["status"], "PERMISSION_DENIED");
        assert_eq!(gemini["error"]["code"], 403);
    }

    #[test]
    fn navigations_get_html_with_escaped_text() {
        let mut h = HeaderMap::new();
        h.insert(
            "accept",
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        assert_eq!(Shape::for_request(&app("OpenAI"), &h), Shape::Html);
        let r = respond(Decision::Coach, Shape::Html, &notice());
        let text = String::from_utf8(r.body().to_vec()).unwrap();
        assert!(text.contains("no &lt;secrets&gt; please"));
        let mut h = HeaderMap::new();
        h.insert("accept", HeaderValue::from_static("application/json"));
        assert!(!is_navigation(&h));
        h.insert("sec-fetch-mode", HeaderValue::from_static("navigate"));
        assert!(is_navigation(&h));
    }
}
