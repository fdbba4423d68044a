//! The web apps' own clients, best-effort (their APIs are private and
//! change): ChatGPT, claude.ai, Gemini. Unknown endpoints fall back to the
//! generic reader with the app's provider name.

use super::body::Out;
use super::json::{pointer, pointer_at, Json, Kind};
use super::route::{segments, Route};
use super::Role;

/// chatgpt.com: `/backend-api/conversation` (and `/backend-api/f/...`),
/// file uploads (to the app or its blob store).
pub(crate) fn chatgpt(host: &str, path: &str) -> Route {
    const P: &str = "chatgpt-web";
    if host.ends_with(".oaiusercontent.com") {
        return Route {
            body_role: Role::File,
            ..Route::generic(P, "files")
        };
    }
    match segments(path).as_slice() {
        ["backend-api", "conversation"] | ["backend-api", "f", "conversation"] => {
            Route::json(P, "conversation", conversation)
        }
        ["backend-api", "files", ..] => Route {
            body_role: Role::File,
            ..Route::generic(P, "files")
        },
        _ => Route::generic(P, "other"),
    }
}

/// `messages[]`: `author.role`, `content.parts[]` (strings; objects are
/// image or file pointers).
fn conversation(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    for (i, m) in doc
        .get("messages")
        .map(Json::items)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let role = match m.get("author").and_then(|a| a.str_at("role")) {
            Some("system") => Role::System,
            Some("assistant") => Role::Assistant,
            Some("tool") => Role::Tool,
            _ => Role::User,
        };
        let ptr = pointer(&pointer_at("/messages", i), "content");
        let Some(content) = m.get("content") else {
            continue;
        };
        let parts = pointer(&ptr, "parts");
        for (j, part) in content
            .get("parts")
            .map(Json::items)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if matches!(part.kind, Kind::Str(_)) {
                out.str(role, part, &pointer_at(&parts, j));
            }
        }
        // content_type "code" / "execution_output" carry `text`.
        out.str_at(role, content, &ptr, "text");
    }
}

/// claude.ai: `/api/organizations/{org}/chat_conversations/{id}/completion`
/// (`prompt`, attachments' `extracted_content`), uploads.
pub(crate) fn claude(path: &str) -> Route {
    const P: &str = "claude-web";
    let segs = segments(path);
    match segs.last().copied() {
        Some("completion" | "retry_completion") => Route::json(P, "completion", completion),
        Some("upload" | "convert_document" | "upload-file") => Route {
            body_role: Role::File,
            ..Route::generic(P, "upload")
        },
        _ => Route::generic(P, "other"),
    }
}

fn completion(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    out.str_at(Role::User, doc, "", "prompt");
    for (i, a) in doc
        .get("attachments")
        .map(Json::items)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        out.str_at(
            Role::File,
            a,
            &pointer_at("/attachments", i),
            "extracted_content",
        );
    }
}

/// gemini.google.com: `StreamGenerate` posts a form whose `f.req` is JSON
/// (`[null, "<JSON>"]`) whose inner JSON starts with `[["<prompt>", ...`.
pub(crate) fn gemini(path: &str) -> Route {
    const P: &str = "gemini-web";
    if path.ends_with("/StreamGenerate") {
        Route {
            form: Some(f_req),
            ..Route::generic(P, "StreamGenerate")
        }
    } else {
        Route::generic(P, "other")
    }
}

fn f_req(name: &str, value: &str, out: &mut Out<'_, '_>) -> bool {
    if name != "f.req" {
        return false;
    }
    let Ok(outer) = super::json::parse(value) else {
        return false;
    };
    let Some(inner) = outer.items().get(1) else {
        return false;
    };
    out.nested_json(inner, "", |doc, out| {
        if let Some(prompt) = doc.items().first().and_then(|p| p.items().first()) {
            out.str(Role::User, prompt, "");
        }
    })
}
