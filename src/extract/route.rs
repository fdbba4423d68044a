//! Which provider family and endpoint a request is for, from host and path.

use http::Method;

use super::body::Out;
use super::json::Json;
use super::{anthropic, bedrock, gemini, openai, web, Role};

/// Reads a parsed JSON body into segments.
pub(crate) type JsonReader = fn(&Json<'_>, &mut Out<'_, '_>);

/// Reads one form field (name, decoded value) that the provider nests
/// further; `false` means "not special, read it generically".
pub(crate) type FormReader = fn(&str, &str, &mut Out<'_, '_>) -> bool;

/// How to read one request's body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    pub provider: &'static str,
    pub endpoint: &'static str,
    /// The provider's JSON reader; `None`: every string value.
    pub json: Option<JsonReader>,
    /// Provider-specific form fields.
    pub form: Option<FormReader>,
    /// Role of a whole text body or an uploaded file.
    pub body_role: Role,
    /// Multipart fields (without filename) that are settings, not content.
    pub skip_fields: &'static [&'static str],
}

impl Route {
    /// A provider endpoint read by the generic reader.
    pub const fn generic(provider: &'static str, endpoint: &'static str) -> Route {
        Route {
            provider,
            endpoint,
            json: None,
            form: None,
            body_role: Role::User,
            skip_fields: &[],
        }
    }

    pub const fn json(provider: &'static str, endpoint: &'static str, reader: JsonReader) -> Route {
        Route {
            json: Some(reader),
            ..Route::generic(provider, endpoint)
        }
    }
}

/// Picks the provider reader for `host` and `path` (query ignored).
pub(crate) fn route(host: &str, _method: &Method, path: &str) -> Route {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host = host.as_str();
    let path = path.split(['?', '#']).next().unwrap_or("");
    if host == "api.openai.com" {
        openai::route("openai", path)
    } else if host.ends_with(".openai.azure.com")
        || host.ends_with(".cognitiveservices.azure.com")
        || host.ends_with(".services.ai.azure.com")
    {
        openai::route_azure(path)
    } else if host == "api.anthropic.com" {
        anthropic::route(path)
    } else if host.starts_with("bedrock-runtime") && host.ends_with(".amazonaws.com") {
        bedrock::route(path)
    } else if host == "generativelanguage.googleapis.com"
        || host == "aiplatform.googleapis.com"
        || host.ends_with("-aiplatform.googleapis.com")
    {
        gemini::route(path)
    } else if host == "chatgpt.com"
        || host == "chat.openai.com"
        || host.ends_with(".chatgpt.com")
        || host.ends_with(".oaiusercontent.com")
    {
        web::chatgpt(host, path)
    } else if host == "claude.ai" || host.ends_with(".claude.ai") {
        web::claude(path)
    } else if host == "gemini.google.com" || host == "bard.google.com" {
        web::gemini(path)
    } else {
        Route::generic("generic", "other")
    }
}

/// The path's segments (`/v1/chat/completions` → `["v1", "chat", "completions"]`).
pub(crate) fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}
