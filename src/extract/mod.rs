//! Provider-aware prompt extraction: from an intercepted request to the text
//! the person typed (and the files they attached), each piece with its role
//! and where it sits in the body, so findings can be redacted in place.
//!
//! [`extract`] is the one entry point. It undoes `Content-Encoding`
//! ([`decode`]), picks the provider family from host and path ([`route`]),
//! reads the body in its format (JSON, form, multipart, text) and returns
//! [`Segment`]s. [`Extracted::rewrite`] replaces byte spans of segment texts
//! with `[REDACTED:<detector>]` and splices the re-encoded strings back into
//! the body, every other byte unchanged.
//!
//! This module knows nothing of policy or sockets; it depends on `http`
//! types only.

use std::fmt;

use bytes::Bytes;
use http::HeaderValue;

mod anthropic;
mod bedrock;
mod body;
mod decode;
mod gemini;
mod generic;
mod json;
mod multipart;
mod openai;
mod rewrite;
mod route;
mod web;

pub use rewrite::{Redaction, Rewritten};

use body::Sink;
use rewrite::Layer;

/// An intercepted request, body complete and still content-encoded.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The host the request is for, without port.
    pub host: &'a str,
    pub method: &'a http::Method,
    /// Path and query (`/v1/chat/completions?x=1`).
    pub path: &'a str,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

/// Bounds on what extraction may cost. Over any of them, [`extract`] answers
/// [`Error::TooLarge`] without having held more than the limit in memory.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest body after undoing `Content-Encoding` (default 4 MiB).
    pub max_decoded_bytes: u64,
    /// Largest decoded / encoded size ratio (default 100): zip bombs.
    pub max_ratio: u64,
    /// Most parts in a multipart body (default 64).
    pub max_parts: usize,
    /// Largest multipart part scanned as text (default 4 MiB).
    pub max_part_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decoded_bytes: 4 << 20,
            max_ratio: 100,
            max_parts: 64,
            max_part_bytes: 4 << 20,
        }
    }
}

/// Who wrote a segment, as the provider sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// What the person typed.
    User,
    /// System or developer instructions.
    System,
    /// Earlier model answers replayed as history.
    Assistant,
    /// Tool or function results sent back to the model.
    Tool,
    /// The text of an attached or uploaded file.
    File,
}

impl Role {
    /// The stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::System => "system",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::File => "file",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a segment sits in the request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A JSON string value, by RFC 6901 pointer (`/messages/0/content`).
    /// For text nested inside that string (a base64 or data-URL file, JSON
    /// inside a string) the pointer names the outer string.
    JsonPointer(String),
    /// A value of an `application/x-www-form-urlencoded` body.
    FormField(String),
    /// A part of a multipart body (index counts every part, from 0).
    MultipartPart {
        index: usize,
        name: String,
        filename: Option<String>,
    },
    /// The whole body (text bodies).
    Body,
}

/// `/messages/0/content`, `form:f.req`, `part[1]:file(notes.txt)`, `body`.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::JsonPointer(p) => f.write_str(p),
            Location::FormField(name) => write!(f, "form:{name}"),
            Location::MultipartPart {
                index,
                name,
                filename,
            } => {
                write!(f, "part[{index}]:{name}")?;
                match filename {
                    Some(file) => write!(f, "({file})"),
                    None => Ok(()),
                }
            }
            Location::Body => f.write_str("body"),
        }
    }
}

/// One piece of text to scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub role: Role,
    pub location: Location,
    /// Decoded, unescaped text as the person typed it. Redaction spans are
    /// byte offsets into this string.
    pub text: String,
}

/// What [`extract`] found in one request.
#[derive(Debug, Clone)]
pub struct Extracted {
    /// `openai`, `azure-openai`, `anthropic`, `bedrock`, `gemini`,
    /// `chatgpt-web`, `claude-web`, `gemini-web` or `generic`.
    pub provider: &'static str,
    /// The API endpoint (`chat.completions`, `responses`, `messages`,
    /// `generateContent`, `files`, …) or `other`.
    pub endpoint: &'static str,
    /// The texts to scan. Keep the order: [`Redaction::segment`] indexes it.
    pub segments: Vec<Segment>,
    /// Parallel to `segments`: how each text is encoded inside the body.
    origins: Vec<Origin>,
    /// The body as received.
    raw: Bytes,
    /// The request's `Content-Encoding`, for an unchanged body.
    raw_encoding: Option<HeaderValue>,
    /// The body with `Content-Encoding` undone (segments point into it).
    decoded: Bytes,
}

/// How one segment's text is nested inside the decoded body: the outermost
/// layer first. Not rewritable when some layer was malformed (bytes that
/// are not valid in their charset), since writing it back would change
/// more than the redacted spans.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    chain: Vec<Layer>,
    rewritable: bool,
}

/// Why a request could not be extracted or rewritten.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Decoded body, ratio or part over a [`Limits`] bound.
    #[error("body over the inspection limit")]
    TooLarge,
    /// Content encoding or framing that cannot be read.
    #[error("undecodable body: {0}")]
    Undecodable(String),
    /// A rewrite this body's format does not allow; block instead.
    #[error("cannot rewrite: {0}")]
    Unsupported(String),
    /// A redaction outside its segment or not on character boundaries.
    #[error("invalid redaction: {0}")]
    InvalidRedaction(String),
}

/// Extracts the prompt texts of one request. Bodies the provider module does
/// not understand fall back to the generic reader (every JSON string, form
/// value, text part), so nothing typed goes unscanned.
pub fn extract(req: &Request<'_>, limits: &Limits) -> Result<Extracted, Error> {
    if req.body.len() as u64 > limits.max_decoded_bytes {
        return Err(Error::TooLarge);
    }
    let decoded = decode::content_decode(req.headers, req.body, limits)?;
    let raw = Bytes::copy_from_slice(req.body);
    let (decoded, raw_encoding) = match decoded {
        std::borrow::Cow::Borrowed(_) => (raw.clone(), None),
        std::borrow::Cow::Owned(d) => (
            Bytes::from(d),
            req.headers.get(http::header::CONTENT_ENCODING).cloned(),
        ),
    };
    let route = route::route(req.host, req.method, req.path);
    let content_type = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let mut sink = Sink::new(limits);
    body::read(&decoded, content_type, &route, &mut sink)?;
    let (segments, origins) = sink.finish();
    Ok(Extracted {
        provider: route.provider,
        endpoint: route.endpoint,
        segments,
        origins,
        raw,
        raw_encoding,
        decoded,
    })
}

impl Extracted {
    /// The body with `Content-Encoding` undone.
    pub fn decoded_body(&self) -> &Bytes {
        &self.decoded
    }
}
