//! Gemini API and Vertex AI: `generateContent`, `streamGenerateContent`,
//! `countTokens`, `embedContent`, `batchEmbedContents`, cached contents.
//! `contents[].parts[].text`, `systemInstruction`, inline text data
//! (base64 with a text media type), function responses. REST accepts
//! camelCase and snake_case member names; both are read.

use super::body::Out;
use super::json::{pointer, pointer_at, Json};
use super::route::{segments, Route};
use super::Role;

pub(crate) fn route(path: &str) -> Route {
    const P: &str = "gemini";
    let segs = segments(path);
    // `.../models/{model}:method` (Gemini API and Vertex publisher models).
    let method = segs
        .last()
        .and_then(|last| last.rsplit_once(':'))
        .map(|(_, m)| m);
    match method {
        Some("generateContent") => Route::json(P, "generateContent", generate),
        Some("streamGenerateContent") => Route::json(P, "streamGenerateContent", generate),
        Some("countTokens") => Route::json(P, "countTokens", count_tokens),
        Some("embedContent") => Route::json(P, "embedContent", embed),
        Some("batchEmbedContents") => Route::json(P, "batchEmbedContents", batch_embed),
        Some("batchGenerateContent") => Route::generic(P, "batchGenerateContent"),
        _ if segs.last() == Some(&"cachedContents") => Route::json(P, "cachedContents", generate),
        _ => Route::generic(P, "other"),
    }
}

/// A GenerateContentRequest: `contents`, `systemInstruction`.
fn generate(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    generate_at(doc, "", out);
}

fn generate_at(doc: &Json<'_>, base: &str, out: &mut Out<'_, '_>) {
    if let Some((key, system)) = doc.get_any(&["systemInstruction", "system_instruction"]) {
        content(Role::System, system, &pointer(base, key), out);
    }
    if let Some(contents) = doc.get("contents") {
        let ptr = pointer(base, "contents");
        for (i, c) in contents.items().iter().enumerate() {
            let role = match c.str_at("role") {
                Some("model") => Role::Assistant,
                _ => Role::User,
            };
            content(role, c, &pointer_at(&ptr, i), out);
        }
    }
}

/// A Content: `parts[]` of text, inline data, function responses.
fn content(role: Role, c: &Json<'_>, ptr: &str, out: &mut Out<'_, '_>) {
    let ptr = pointer(ptr, "parts");
    for (i, part) in c
        .get("parts")
        .map(Json::items)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let ptr = pointer_at(&ptr, i);
        if part.get("thought").is_some() {
            continue;
        }
        out.str_at(role, part, &ptr, "text");
        if let Some((key, inline)) = part.get_any(&["inlineData", "inline_data"]) {
            let mime = inline
                .get_any(&["mimeType", "mime_type"])
                .and_then(|(_, m)| m.as_str());
            if let Some(data) = inline.get("data") {
                let ptr = pointer(&pointer(&ptr, key), "data");
                out.base64_file(
                    Role::File,
                    data,
                    &ptr,
                    Some(mime.unwrap_or("application/octet-stream")),
                    None,
                );
            }
        }
        if let Some((key, response)) = part.get_any(&["functionResponse", "function_response"]) {
            if let Some(r) = response.get("response") {
                out.all_strings(Role::Tool, r, &pointer(&pointer(&ptr, key), "response"));
            }
        }
    }
}

/// `{"contents": ...}` or `{"generateContentRequest": {...}}`.
fn count_tokens(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    generate(doc, out);
    if let Some((key, request)) =
        doc.get_any(&["generateContentRequest", "generate_content_request"])
    {
        generate_at(request, &pointer("", key), out);
    }
}

/// `{"content": {...}}`.
fn embed(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    if let Some(c) = doc.get("content") {
        content(Role::User, c, "/content", out);
    }
}

/// `{"requests": [{"content": {...}}]}`.
fn batch_embed(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    for (i, r) in doc
        .get("requests")
        .map(Json::items)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if let Some(c) = r.get("content") {
            content(Role::User, c, &format!("/requests/{i}/content"), out);
        }
    }
}
