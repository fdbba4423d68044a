//! Anthropic Messages API (also the body of Bedrock's Anthropic models):
//! `system` (string or text blocks), `messages[].content` (string or
//! blocks: text, document with text / base64 / content sources,
//! tool_result), legacy `/v1/complete`, message batches, file uploads.

use super::body::Out;
use super::json::{pointer, pointer_at, Json, Kind};
use super::route::{segments, Route};
use super::Role;

pub(crate) fn route(path: &str) -> Route {
    const P: &str = "anthropic";
    match segments(path).as_slice() {
        ["v1", "messages"] | ["v1", "messages", "count_tokens"] => {
            Route::json(P, "messages", messages)
        }
        ["v1", "messages", "batches"] => Route::json(P, "messages.batches", batches),
        ["v1", "complete"] => Route::json(P, "complete", complete),
        ["v1", "files"] => Route {
            body_role: Role::File,
            ..Route::generic(P, "files")
        },
        _ => Route::generic(P, "other"),
    }
}

/// A Messages request body: `system`, `messages`.
pub(crate) fn messages(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    messages_at(doc, "", out);
}

fn messages_at(doc: &Json<'_>, base: &str, out: &mut Out<'_, '_>) {
    if let Some(system) = doc.get("system") {
        blocks(Role::System, system, &pointer(base, "system"), out);
    }
    let ptr = pointer(base, "messages");
    for (i, m) in doc
        .get("messages")
        .map(Json::items)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let role = match m.str_at("role") {
            Some("assistant") => Role::Assistant,
            _ => Role::User,
        };
        if let Some(content) = m.get("content") {
            blocks(
                role,
                content,
                &pointer(&pointer_at(&ptr, i), "content"),
                out,
            );
        }
    }
}

/// `{"requests": [{"custom_id", "params": {messages body}}]}`.
fn batches(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    for (i, r) in doc
        .get("requests")
        .map(Json::items)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if let Some(params) = r.get("params") {
            messages_at(params, &format!("/requests/{i}/params"), out);
        }
    }
}

/// Legacy text completions: `"\n\nHuman: ...\n\nAssistant:"`.
pub(crate) fn complete(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    out.str_at(Role::User, doc, "", "prompt");
}

/// Content as a string or an array of blocks.
fn blocks(role: Role, v: &Json<'_>, ptr: &str, out: &mut Out<'_, '_>) {
    match &v.kind {
        Kind::Str(_) => out.str(role, v, ptr),
        Kind::Array(list) => {
            for (i, b) in list.iter().enumerate() {
                block(role, b, &pointer_at(ptr, i), out);
            }
        }
        _ => {}
    }
}

fn block(role: Role, b: &Json<'_>, ptr: &str, out: &mut Out<'_, '_>) {
    match b.str_at("type") {
        Some("text") => out.str_at(role, b, ptr, "text"),
        Some("document") => {
            if let Some(source) = b.get("source") {
                document(source, &pointer(ptr, "source"), out);
            }
            out.str_at(Role::File, b, ptr, "context");
        }
        Some("tool_result") => {
            if let Some(content) = b.get("content") {
                blocks(Role::Tool, content, &pointer(ptr, "content"), out);
            }
        }
        Some("search_result") => {
            if let Some(content) = b.get("content") {
                blocks(Role::Tool, content, &pointer(ptr, "content"), out);
            }
        }
        _ => {}
    }
}

/// A document source: plain text, base64 of a text file, or content blocks.
fn document(source: &Json<'_>, ptr: &str, out: &mut Out<'_, '_>) {
    match source.str_at("type") {
        Some("text") => out.str_at(Role::File, source, ptr, "data"),
        Some("base64") => {
            if let Some(data) = source.get("data") {
                let mime = source.str_at("media_type");
                out.base64_file(Role::File, data, &pointer(ptr, "data"), mime, None);
            }
        }
        Some("content") => {
            if let Some(content) = source.get("content") {
                blocks(Role::File, content, &pointer(ptr, "content"), out);
            }
        }
        _ => {}
    }
}
