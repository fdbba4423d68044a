//! OpenAI API and Azure OpenAI: chat completions, Responses, legacy
//! completions, embeddings, moderations, images, Assistants/threads,
//! conversations, audio, file uploads.
//!
//! Tool and function schemas are the organisation's, not the person's, and
//! are not read; tool results sent back to the model are (`Role::Tool`).

use super::body::Out;
use super::json::{pointer, pointer_at, Json, Kind};
use super::route::{segments, Route};
use super::Role;

/// Multipart fields that are settings, not content.
const SETTINGS: &[&str] = &[
    "model",
    "purpose",
    "response_format",
    "temperature",
    "language",
    "timestamp_granularities[]",
    "include[]",
    "stream",
    "chunking_strategy",
    "n",
    "size",
    "quality",
    "background",
    "output_format",
    "user",
    "expires_after[anchor]",
    "expires_after[seconds]",
];

/// Routes an OpenAI-shaped path (`/v1/...`).
pub(crate) fn route(provider: &'static str, path: &str) -> Route {
    let segs = segments(path);
    let rest = match segs.split_first() {
        Some((&"v1", rest)) => rest,
        _ => return Route::generic(provider, "other"),
    };
    let json = |endpoint, reader| Route::json(provider, endpoint, reader);
    let mut route = match rest {
        ["chat", "completions"] => json("chat.completions", chat),
        ["responses"] => json("responses", responses),
        ["responses", "input_tokens"] => json("responses", responses),
        ["completions"] => json("completions", completions),
        ["embeddings"] => json("embeddings", input),
        ["moderations"] => json("moderations", input),
        ["images", "generations" | "edits" | "variations"] => json("images", images),
        ["assistants"] | ["assistants", _] => json("assistants", assistants),
        ["threads", "runs"] => json("threads.runs", thread_and_run),
        ["threads"] | ["threads", _] => json("threads", thread),
        ["threads", _, "messages"] | ["threads", _, "messages", _] => {
            json("threads.messages", message)
        }
        ["threads", _, "runs"] => json("threads.runs", run),
        ["conversations"] | ["conversations", _, "items"] => json("conversations", conversation),
        ["audio", "speech"] => json("audio.speech", speech),
        ["audio", "transcriptions"] => Route::generic(provider, "audio.transcriptions"),
        ["audio", "translations"] => Route::generic(provider, "audio.translations"),
        ["files"] => Route {
            body_role: Role::File,
            ..Route::generic(provider, "files")
        },
        ["uploads"] => json("uploads", nothing),
        ["uploads", _, "parts"] => Route {
            body_role: Role::File,
            ..Route::generic(provider, "uploads")
        },
        _ => Route::generic(provider, "other"),
    };
    route.skip_fields = SETTINGS;
    route
}

/// Azure OpenAI: `/openai/deployments/{d}/...`, `/openai/v1/...` and
/// `/openai/...` carry the OpenAI bodies.
pub(crate) fn route_azure(path: &str) -> Route {
    const P: &str = "azure-openai";
    let segs = segments(path.split(['?', '#']).next().unwrap_or(""));
    let rest = match segs.as_slice() {
        ["openai", "deployments", _, rest @ ..] => rest,
        ["openai", "v1", rest @ ..] => rest,
        ["openai", rest @ ..] => rest,
        _ => return Route::generic(P, "other"),
    };
    route(P, &format!("/v1/{}", rest.join("/")))
}

fn nothing(_: &Json<'_>, _: &mut Out<'_, '_>) {}

/// `messages[]`: role, content (string or parts).
fn chat(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    messages(doc, "", "messages", out);
}

fn messages(doc: &Json<'_>, base: &str, key: &str, out: &mut Out<'_, '_>) {
    let ptr = pointer(base, key);
    if let Some(list) = doc.get(key) {
        for (i, m) in list.items().iter().enumerate() {
            message_at(m, &pointer_at(&ptr, i), out);
        }
    }
}

fn message_at(m: &Json<'_>, ptr: &str, out: &mut Out<'_, '_>) {
    let role = role(m.str_at("role"));
    if let Some(content) = m.get("content") {
        self::content(role, content, &pointer(ptr, "content"), out);
    }
}

/// A chat role as a segment role.
pub(crate) fn role(role: Option<&str>) -> Role {
    match role {
        Some("system" | "developer") => Role::System,
        Some("assistant" | "model") => Role::Assistant,
        Some("tool" | "function") => Role::Tool,
        _ => Role::User,
    }
}

/// Content as a string or an array of typed parts.
fn content(role: Role, v: &Json<'_>, ptr: &str, out: &mut Out<'_, '_>) {
    match &v.kind {
        Kind::Str(_) => out.str(role, v, ptr),
        Kind::Array(parts) => {
            for (i, part) in parts.iter().enumerate() {
                content_part(role, part, &pointer_at(ptr, i), out);
            }
        }
        _ => {}
    }
}

fn content_part(role: Role, part: &Json<'_>, ptr: &str, out: &mut Out<'_, '_>) {
    match part.str_at("type") {
        Some("image_url" | "input_image" | "input_audio" | "image_file" | "refusal") => {}
        // Chat completions: {"type":"file","file":{"filename","file_data"}}.
        Some("file") => {
            if let Some(file) = part.get("file") {
                file_data(file, &pointer(ptr, "file"), out);
            }
        }
        // Responses: {"type":"input_file","filename","file_data"}.
        Some("input_file") => file_data(part, ptr, out),
        // Assistants: {"type":"text","text":{"value": "..."}} in replies.
        _ => match part.get("text") {
            Some(t) if matches!(t.kind, Kind::Str(_)) => out.str(role, t, &pointer(ptr, "text")),
            Some(t) => out.str_at(role, t, &pointer(ptr, "text"), "value"),
            None => {}
        },
    }
}

/// An inline file: `file_data` as a data URL or bare base64, `filename`.
fn file_data(file: &Json<'_>, ptr: &str, out: &mut Out<'_, '_>) {
    let Some(data) = file.get("file_data") else {
        return;
    };
    let name = file.str_at("filename");
    let ptr = pointer(ptr, "file_data");
    if data.as_str().is_some_and(|s| s.starts_with("data:")) {
        out.data_url(Role::File, data, &ptr, name);
    } else {
        out.base64_file(Role::File, data, &ptr, None, name);
    }
}

/// Responses API: `instructions`, `input` (string or items).
fn responses(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    out.str_at(Role::System, doc, "", "instructions");
    if let Some(input) = doc.get("input") {
        items(input, "/input", out);
    }
}

fn items(v: &Json<'_>, ptr: &str, out: &mut Out<'_, '_>) {
    match &v.kind {
        Kind::Str(_) => out.str(Role::User, v, ptr),
        Kind::Array(list) => {
            for (i, item) in list.iter().enumerate() {
                response_item(item, &pointer_at(ptr, i), out);
            }
        }
        _ => {}
    }
}

fn response_item(item: &Json<'_>, ptr: &str, out: &mut Out<'_, '_>) {
    match item.str_at("type") {
        Some("message") | None => message_at(item, ptr, out),
        Some(t) if t.ends_with("_call_output") => {
            if let Some(output) = item.get("output") {
                content(Role::Tool, output, &pointer(ptr, "output"), out);
            }
        }
        _ => {}
    }
}

fn conversation(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    if let Some(list) = doc.get("items") {
        items(list, "/items", out);
    }
}

/// Legacy completions: `prompt` (string or strings), `suffix`.
fn completions(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    strings(Role::User, doc, "prompt", out);
    out.str_at(Role::User, doc, "", "suffix");
}

/// Embeddings and moderations: `input` as a string, strings, or parts.
fn input(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    if let Some(input) = doc.get("input") {
        match &input.kind {
            Kind::Array(list) if list.iter().any(|p| p.get("type").is_some()) => {
                content(Role::User, input, "/input", out)
            }
            _ => strings(Role::User, doc, "input", out),
        }
    }
}

/// `doc[key]` as a string or each string of an array (token arrays skipped).
fn strings(role: Role, doc: &Json<'_>, key: &str, out: &mut Out<'_, '_>) {
    let Some(v) = doc.get(key) else { return };
    let ptr = pointer("", key);
    match &v.kind {
        Kind::Str(_) => out.str(role, v, &ptr),
        Kind::Array(list) => {
            for (i, s) in list.iter().enumerate() {
                out.str(role, s, &pointer_at(&ptr, i));
            }
        }
        _ => {}
    }
}

fn images(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    out.str_at(Role::User, doc, "", "prompt");
}

fn speech(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    out.str_at(Role::User, doc, "", "input");
    out.str_at(Role::System, doc, "", "instructions");
}

fn assistants(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    out.str_at(Role::System, doc, "", "instructions");
}

/// `POST /v1/threads`: `messages[]`.
fn thread(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    messages(doc, "", "messages", out);
}

/// `POST /v1/threads/{id}/messages`: one message.
fn message(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    message_at(doc, "", out);
}

/// `POST /v1/threads/{id}/runs`.
fn run(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    out.str_at(Role::System, doc, "", "instructions");
    out.str_at(Role::System, doc, "", "additional_instructions");
    messages(doc, "", "additional_messages", out);
}

/// `POST /v1/threads/runs`: a run and its new thread.
fn thread_and_run(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    out.str_at(Role::System, doc, "", "instructions");
    if let Some(thread) = doc.get("thread") {
        messages(thread, "/thread", "messages", out);
    }
}
