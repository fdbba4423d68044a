//! Amazon Bedrock runtime: `Converse` / `ConverseStream` bodies and
//! `InvokeModel` bodies, whose shape is the model vendor's (Anthropic
//! Messages, Amazon Nova / Titan, Meta Llama, Mistral, Cohere).

use super::anthropic;
use super::body::Out;
use super::json::{pointer, pointer_at, Json, Kind};
use super::route::{segments, Route};
use super::Role;

/// Converse document formats that are text.
const TEXT_FORMATS: &[&str] = &["txt", "csv", "md", "html"];

pub(crate) fn route(path: &str) -> Route {
    const P: &str = "bedrock";
    match segments(path).as_slice() {
        ["model", _, "converse" | "converse-stream"] => Route::json(P, "converse", converse),
        ["model", _, "invoke" | "invoke-with-response-stream"] => Route::json(P, "invoke", invoke),
        ["model", _, "count-tokens"] => Route::json(P, "count-tokens", count_tokens),
        _ => Route::generic(P, "other"),
    }
}

/// Converse: `system[].text`, `messages[].content[]` blocks.
fn converse(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    converse_at(doc, "", out);
}

fn converse_at(doc: &Json<'_>, base: &str, out: &mut Out<'_, '_>) {
    let system = pointer(base, "system");
    for (i, b) in doc
        .get("system")
        .map(Json::items)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        content_block(Role::System, b, &pointer_at(&system, i), out);
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
        let content = pointer(&pointer_at(&ptr, i), "content");
        match m.get("content") {
            Some(s) if matches!(s.kind, Kind::Str(_)) => out.str(role, s, &content),
            Some(list) => {
                for (j, b) in list.items().iter().enumerate() {
                    content_block(role, b, &pointer_at(&content, j), out);
                }
            }
            None => {}
        }
    }
}

fn content_block(role: Role, b: &Json<'_>, ptr: &str, out: &mut Out<'_, '_>) {
    out.str_at(role, b, ptr, "text");
    if let Some(doc) = b.get("document") {
        let ptr = pointer(ptr, "document");
        let format = doc.str_at("format").unwrap_or("");
        if let Some(source) = doc.get("source") {
            let ptr = pointer(&ptr, "source");
            out.str_at(Role::File, source, &ptr, "text");
            if TEXT_FORMATS.contains(&format) {
                if let Some(bytes) = source.get("bytes") {
                    let name = format!("document.{format}");
                    out.base64_file(
                        Role::File,
                        bytes,
                        &pointer(&ptr, "bytes"),
                        None,
                        Some(&name),
                    );
                }
            }
            for (i, c) in source
                .get("content")
                .map(Json::items)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                out.str_at(
                    Role::File,
                    c,
                    &pointer_at(&pointer(&ptr, "content"), i),
                    "text",
                );
            }
        }
    }
    if let Some(result) = b.get("toolResult") {
        let ptr = pointer(&pointer(ptr, "toolResult"), "content");
        for (i, c) in result
            .get("content")
            .map(Json::items)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let ptr = pointer_at(&ptr, i);
            out.str_at(Role::Tool, c, &ptr, "text");
            if let Some(json) = c.get("json") {
                out.all_strings(Role::Tool, json, &pointer(&ptr, "json"));
            }
        }
    }
}

/// InvokeModel: the model vendor's own body, recognised by its keys.
fn invoke(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    let messages = doc.get("messages");
    let anthropic_style = doc.get("anthropic_version").is_some()
        || messages.is_some_and(|m| {
            m.items().iter().any(|msg| {
                msg.get("content").is_some_and(|c| {
                    matches!(c.kind, Kind::Str(_))
                        || c.items().iter().any(|b| b.get("type").is_some())
                })
            })
        });
    if anthropic_style {
        anthropic::messages(doc, out);
    } else if messages.is_some() || doc.get("system").is_some_and(Json::is_array) {
        // Amazon Nova: Converse-shaped blocks without `type`.
        converse(doc, out);
    }
    // Titan; Llama, Mistral and legacy Anthropic; Cohere.
    out.str_at(Role::User, doc, "", "inputText");
    out.str_at(Role::User, doc, "", "prompt");
    out.str_at(Role::User, doc, "", "message");
    if doc
        .get("system")
        .is_some_and(|s| matches!(s.kind, Kind::Str(_)))
        && !anthropic_style
    {
        out.str_at(Role::System, doc, "", "system");
    }
    for (i, turn) in doc
        .get("chat_history")
        .map(Json::items)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let role = match turn.str_at("role") {
            Some("CHATBOT") => Role::Assistant,
            Some("SYSTEM") => Role::System,
            _ => Role::User,
        };
        out.str_at(role, turn, &pointer_at("/chat_history", i), "message");
    }
    if let Some(texts) = doc.get("texts") {
        for (i, t) in texts.items().iter().enumerate() {
            out.str(Role::User, t, &pointer_at("/texts", i));
        }
    }
}

/// CountTokens: `{"input": {"converse": {...}} | {"invokeModel": {"body": "..."}}}`.
fn count_tokens(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    if let Some(input) = doc.get("input") {
        if let Some(c) = input.get("converse") {
            converse_at(c, "/input/converse", out);
        }
    }
}
