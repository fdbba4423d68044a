//! Fuzzing extraction with bodies shaped like each provider's requests
//! (OpenAI chat and responses, Azure, Anthropic, Gemini, Bedrock, the
//! ChatGPT, claude.ai and Gemini web apps), multipart uploads and form
//! bodies, written with every JSON escape a client may use. Beside
//! `extract_props.rs` (arbitrary bytes and generic JSON), these check:
//!
//! - every planted prompt, system text, tool result and text file comes
//!   out as a segment with its role;
//! - every location points into the body (a JSON pointer to a string, a
//!   form field or multipart part that exists);
//! - redacting every segment whole yields a body that still parses (valid
//!   JSON stays valid) and extracts again to `[REDACTED:…]` only.
//!
//! The `fuzz_` variants are ignored by default: see README.md, "Fuzzing".

mod common;

use base64::Engine as _;
use lantern::extract::{extract, Error, Extracted, Limits, Location, Request, Role};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Prompt text with what JSON must escape and what it may.
fn text(max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9 .,]{1,12}",
        2 => "\\PC{1,6}",
        1 => prop::sample::select(vec![
            "\"", "\\", "/", "\n", "\r\n", "\t", "\u{0}", "\u{1f}", "\u{7f}", "\u{2028}", "é", "😀",
            "\u{fffd}", "\\u0041", "</script>",
        ])
        .prop_map(String::from),
    ];
    prop::collection::vec(piece, 1..max).prop_map(|p| p.concat())
}

/// What one message carries.
#[derive(Debug, Clone)]
enum Item {
    Text(String),
    /// A text file attached inline (base64 or plain, by provider).
    File(String),
    /// A tool or function result.
    Tool(String),
    /// An image or other part with no text.
    Opaque,
}

#[derive(Debug, Clone)]
struct Turn {
    /// 0 user, 1 assistant, 2 system (where messages may carry it).
    role: usize,
    /// Content as a bare string where the provider allows it (first text).
    bare: bool,
    items: Vec<Item>,
}

#[derive(Debug, Clone)]
struct Conversation {
    system: Option<String>,
    turns: Vec<Turn>,
}

fn conversation(max_text: usize, max_turns: usize) -> impl Strategy<Value = Conversation> {
    let item = prop_oneof![
        5 => text(max_text).prop_map(Item::Text),
        1 => text(max_text).prop_map(Item::File),
        1 => text(max_text).prop_map(Item::Tool),
        1 => Just(Item::Opaque),
    ];
    let turn = (0usize..3, any::<bool>(), prop::collection::vec(item, 1..4))
        .prop_map(|(role, bare, items)| Turn { role, bare, items });
    (
        prop::option::of(text(max_text)),
        prop::collection::vec(turn, 0..max_turns),
    )
        .prop_map(|(system, turns)| Conversation { system, turns })
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A request body shaped for one provider endpoint, and what must come out.
struct Shaped {
    host: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    planted: Vec<(Role, String)>,
}

const PROVIDERS: usize = 10;

/// Builds provider `which`'s body for `c`, serialised with `escapes`.
fn shape(which: usize, c: &Conversation, escapes: u64) -> Shaped {
    let mut planted = Vec::new();
    let mut plant = |role: Role, t: &str| planted.push((role, t.to_string()));
    let json_body = |v: Value| to_json(&v, escapes).into_bytes();
    let (host, path, body) = match which {
        // OpenAI and Azure chat completions.
        0 | 1 => {
            let mut messages = Vec::new();
            if let Some(s) = &c.system {
                plant(Role::System, s);
                messages.push(json!({"role": "system", "content": s}));
            }
            for t in &c.turns {
                let (name, role) = [
                    ("user", Role::User),
                    ("assistant", Role::Assistant),
                    ("developer", Role::System),
                ][t.role];
                let content = match (&t.items[0], t.bare) {
                    (Item::Text(s), true) => {
                        plant(role, s);
                        json!(s)
                    }
                    _ => Value::Array(
                        t.items
                            .iter()
                            .map(|i| match i {
                                Item::Text(s) => {
                                    plant(role, s);
                                    json!({"type": "text", "text": s})
                                }
                                Item::File(s) => {
                                    plant(Role::File, s);
                                    json!({"type": "file", "file": {"filename": "notes.txt", "file_data": format!("data:text/plain;base64,{}", b64(s))}})
                                }
                                Item::Tool(s) => {
                                    plant(role, s);
                                    json!({"type": "text", "text": s})
                                }
                                Item::Opaque => json!({"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}),
                            })
                            .collect(),
                    ),
                };
                messages.push(json!({"role": name, "content": content}));
            }
            let body = json_body(json!({"model": "gpt", "messages": messages, "stream": true}));
            if which == 0 {
                ("api.openai.com", "/v1/chat/completions", body)
            } else {
                (
                    "x.openai.azure.com",
                    "/openai/deployments/d/chat/completions?api-version=1",
                    body,
                )
            }
        }
        // OpenAI responses.
        2 => {
            let mut doc = json!({"model": "gpt"});
            if let Some(s) = &c.system {
                plant(Role::System, s);
                doc["instructions"] = json!(s);
            }
            let input: Vec<Value> = c
                .turns
                .iter()
                .map(|t| {
                    let (name, role) = [
                        ("user", Role::User),
                        ("assistant", Role::Assistant),
                        ("system", Role::System),
                    ][t.role];
                    let parts: Vec<Value> = t
                        .items
                        .iter()
                        .map(|i| match i {
                            Item::Text(s) | Item::Tool(s) => {
                                plant(role, s);
                                json!({"type": "input_text", "text": s})
                            }
                            Item::File(s) => {
                                plant(Role::File, s);
                                json!({"type": "input_file", "filename": "a.txt", "file_data": b64(s)})
                            }
                            Item::Opaque => json!({"type": "input_image", "image_url": "https://x.test/a.png"}),
                        })
                        .collect();
                    json!({"role": name, "content": parts})
                })
                .collect();
            doc["input"] = Value::Array(input);
            ("api.openai.com", "/v1/responses", json_body(doc))
        }
        // Anthropic messages.
        3 => {
            let mut doc = json!({"model": "claude", "max_tokens": 10});
            if let Some(s) = &c.system {
                plant(Role::System, s);
                doc["system"] = json!([{"type": "text", "text": s}]);
            }
            let messages: Vec<Value> = c
                .turns
                .iter()
                .map(|t| {
                    let (name, role) = [("user", Role::User), ("assistant", Role::Assistant)][t.role % 2];
                    let content = match (&t.items[0], t.bare) {
                        (Item::Text(s), true) => {
                            plant(role, s);
                            json!(s)
                        }
                        _ => Value::Array(
                            t.items
                                .iter()
                                .enumerate()
                                .map(|(n, i)| match i {
                                    Item::Text(s) => {
                                        plant(role, s);
                                        json!({"type": "text", "text": s})
                                    }
                                    Item::File(s) if n % 2 == 0 => {
                                        plant(Role::File, s);
                                        json!({"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": b64(s)}})
                                    }
                                    Item::File(s) => {
                                        plant(Role::File, s);
                                        json!({"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": s}})
                                    }
                                    Item::Tool(s) => {
                                        plant(Role::Tool, s);
                                        json!({"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": s}]})
                                    }
                                    Item::Opaque => json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}),
                                })
                                .collect(),
                        ),
                    };
                    json!({"role": name, "content": content})
                })
                .collect();
            doc["messages"] = Value::Array(messages);
            ("api.anthropic.com", "/v1/messages", json_body(doc))
        }
        // Gemini generateContent.
        4 => {
            let mut doc = json!({});
            if let Some(s) = &c.system {
                plant(Role::System, s);
                doc["systemInstruction"] = json!({"parts": [{"text": s}]});
            }
            let contents: Vec<Value> = c
                .turns
                .iter()
                .map(|t| {
                    let (name, role) = [("user", Role::User), ("model", Role::Assistant)][t.role % 2];
                    let parts: Vec<Value> = t
                        .items
                        .iter()
                        .map(|i| match i {
                            Item::Text(s) => {
                                plant(role, s);
                                json!({"text": s})
                            }
                            Item::File(s) => {
                                plant(Role::File, s);
                                json!({"inlineData": {"mimeType": "text/plain", "data": b64(s)}})
                            }
                            Item::Tool(s) => {
                                plant(Role::Tool, s);
                                json!({"functionResponse": {"name": "f", "response": {"result": s}}})
                            }
                            Item::Opaque => json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}),
                        })
                        .collect();
                    json!({"role": name, "parts": parts})
                })
                .collect();
            doc["contents"] = Value::Array(contents);
            (
                "generativelanguage.googleapis.com",
                "/v1beta/models/gemini:generateContent",
                json_body(doc),
            )
        }
        // Bedrock Converse.
        5 => {
            let mut doc = json!({});
            if let Some(s) = &c.system {
                plant(Role::System, s);
                doc["system"] = json!([{"text": s}]);
            }
            let messages: Vec<Value> = c
                .turns
                .iter()
                .map(|t| {
                    let (name, role) = [("user", Role::User), ("assistant", Role::Assistant)][t.role % 2];
                    let content: Vec<Value> = t
                        .items
                        .iter()
                        .map(|i| match i {
                            Item::Text(s) => {
                                plant(role, s);
                                json!({"text": s})
                            }
                            Item::File(s) => {
                                plant(Role::File, s);
                                json!({"document": {"format": "txt", "name": "d", "source": {"bytes": b64(s)}}})
                            }
                            Item::Tool(s) => {
                                plant(Role::Tool, s);
                                json!({"toolResult": {"toolUseId": "t", "content": [{"text": s}]}})
                            }
                            Item::Opaque => json!({"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}),
                        })
                        .collect();
                    json!({"role": name, "content": content})
                })
                .collect();
            doc["messages"] = Value::Array(messages);
            (
                "bedrock-runtime.us-east-1.amazonaws.com",
                "/model/anthropic.claude/converse",
                json_body(doc),
            )
        }
        // Bedrock InvokeModel with an Anthropic body.
        6 => {
            let messages: Vec<Value> = c
                .turns
                .iter()
                .map(|t| {
                    let (name, role) =
                        [("user", Role::User), ("assistant", Role::Assistant)][t.role % 2];
                    let blocks: Vec<Value> = t
                        .items
                        .iter()
                        .filter_map(|i| match i {
                            Item::Text(s) | Item::File(s) | Item::Tool(s) => {
                                plant(role, s);
                                Some(json!({"type": "text", "text": s}))
                            }
                            Item::Opaque => None,
                        })
                        .collect();
                    json!({"role": name, "content": blocks})
                })
                .collect();
            let body =
                json_body(json!({"anthropic_version": "bedrock-2023-05-31", "messages": messages}));
            (
                "bedrock-runtime.us-east-1.amazonaws.com",
                "/model/anthropic.claude/invoke",
                body,
            )
        }
        // ChatGPT web.
        7 => {
            let messages: Vec<Value> = c
                .turns
                .iter()
                .map(|t| {
                    let (name, role) = [
                        ("user", Role::User),
                        ("assistant", Role::Assistant),
                        ("system", Role::System),
                    ][t.role];
                    let parts: Vec<Value> = t
                        .items
                        .iter()
                        .map(|i| match i {
                            Item::Text(s) | Item::File(s) | Item::Tool(s) => {
                                plant(role, s);
                                json!(s)
                            }
                            Item::Opaque => json!({"content_type": "image_asset_pointer", "asset_pointer": "file-service://x"}),
                        })
                        .collect();
                    json!({"id": "m", "author": {"role": name}, "content": {"content_type": "text", "parts": parts}})
                })
                .collect();
            let body = json_body(json!({"action": "next", "messages": messages, "model": "auto"}));
            ("chatgpt.com", "/backend-api/conversation", body)
        }
        // claude.ai.
        8 => {
            let mut doc = json!({"timezone": "UTC"});
            let first = c.turns.iter().flat_map(|t| &t.items).find_map(|i| match i {
                Item::Text(s) => Some(s),
                _ => None,
            });
            if let Some(s) = first {
                plant(Role::User, s);
                doc["prompt"] = json!(s);
            }
            let attachments: Vec<Value> = c
                .turns
                .iter()
                .flat_map(|t| &t.items)
                .filter_map(|i| match i {
                    Item::File(s) => {
                        plant(Role::File, s);
                        Some(json!({"file_name": "a.txt", "extracted_content": s}))
                    }
                    _ => None,
                })
                .collect();
            doc["attachments"] = Value::Array(attachments);
            (
                "claude.ai",
                "/api/organizations/o/chat_conversations/c/completion",
                json_body(doc),
            )
        }
        // Gemini web: a form whose f.req is JSON holding JSON.
        _ => {
            let prompt = c
                .turns
                .iter()
                .flat_map(|t| &t.items)
                .find_map(|i| match i {
                    Item::Text(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| "hello".into());
            plant(Role::User, &prompt);
            let inner = to_json(
                &json!([[prompt, 0, null], ["en"], ["c", "r", "rc"]]),
                escapes,
            );
            let outer = to_json(&json!([null, inner]), escapes.rotate_left(7));
            let body = form_urlencoded::Serializer::new(String::new())
                .append_pair("f.req", &outer)
                .append_pair("at", "token")
                .finish();
            return Shaped {
                host: "gemini.google.com",
                path: "/_/BardChatUi/data/assistant.lamda.BardFrontendService/StreamGenerate?bl=x",
                content_type: "application/x-www-form-urlencoded;charset=UTF-8",
                body: body.into_bytes(),
                planted,
            };
        }
    };
    Shaped {
        host,
        path,
        content_type: "application/json",
        body,
        planted,
    }
}

/// JSON text for `v` with escapes and whitespace picked by `seed`: `\uXXXX`
/// (surrogate pairs beyond the BMP) for some characters, `\/`, short or
/// long forms of control escapes, spaces and newlines between tokens.
fn to_json(v: &Value, seed: u64) -> String {
    let mut rng = seed | 1;
    let mut out = String::new();
    write_json(v, &mut rng, &mut out);
    out
}

fn next(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

fn space(rng: &mut u64, out: &mut String) {
    match next(rng) % 8 {
        0 => out.push(' '),
        1 => out.push_str("\n  "),
        2 => out.push_str("\r\n\t"),
        _ => {}
    }
}

fn write_json(v: &Value, rng: &mut u64, out: &mut String) {
    space(rng, out);
    match v {
        Value::String(s) => write_str(s, rng, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, rng, out);
            }
            space(rng, out);
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (i, (k, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                space(rng, out);
                write_str(k, rng, out);
                space(rng, out);
                out.push(':');
                write_json(item, rng, out);
            }
            space(rng, out);
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
    space(rng, out);
}

fn write_str(s: &str, rng: &mut u64, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        let escape = next(rng).is_multiple_of(4);
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if escape => out.push_str("\\/"),
            '\n' if !escape => out.push_str("\\n"),
            '\r' if !escape => out.push_str("\\r"),
            '\t' if !escape => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (escape && !c.is_ascii_alphanumeric()) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    if next(rng).is_multiple_of(2) {
                        out.push_str(&format!("\\u{u:04x}"));
                    } else {
                        out.push_str(&format!("\\u{u:04X}"));
                    }
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn content_type(ct: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(http::header::CONTENT_TYPE, ct.parse().unwrap());
    h
}

/// Redacts every segment whole and extracts again: the same number of
/// segments, each `[REDACTED:d]`. Returns the rewritten body, or `None`
/// when the rewrite was refused (segments in malformed encodings).
fn redact_all(req: &Request<'_>, x: &Extracted) -> Result<Option<Vec<u8>>, TestCaseError> {
    let reds = common::redact_whole(x);
    let rewritten = match x.rewrite(&reds) {
        Ok(r) => r,
        Err(Error::Unsupported(_)) => return Ok(None),
        Err(e) => return Err(TestCaseError::fail(format!("rewrite: {e}"))),
    };
    let again = extract(
        &Request {
            body: &rewritten.body,
            ..*req
        },
        &Limits::default(),
    )
    .map_err(|e| TestCaseError::fail(format!("extract after rewrite: {e}")))?;
    prop_assert_eq!(again.segments.len(), x.segments.len());
    for (before, after) in x.segments.iter().zip(&again.segments) {
        prop_assert_eq!(&after.text, "[REDACTED:d]");
        prop_assert_eq!(&after.location, &before.location);
    }
    Ok(Some(rewritten.body.to_vec()))
}

fn check_shaped(which: usize, c: &Conversation, escapes: u64) -> Result<(), TestCaseError> {
    let s = shape(which, c, escapes);
    let headers = content_type(s.content_type);
    let req = common::extract_post(s.host, s.path, &headers, &s.body);
    let x = extract(&req, &Limits::default())
        .map_err(|e| TestCaseError::fail(format!("{}{}: {e}", s.host, s.path)))?;
    for (role, text) in &s.planted {
        prop_assert!(
            x.segments
                .iter()
                .any(|g| g.role == *role && &g.text == text),
            "{} {}: {:?} {:?} not among {:?}",
            s.host,
            s.path,
            role,
            text,
            x.segments
        );
    }
    let parsed: Option<Value> = serde_json::from_slice(&s.body).ok();
    if s.content_type == "application/json" {
        prop_assert!(parsed.is_some(), "generated body is not JSON");
    }
    for g in &x.segments {
        match (&g.location, &parsed) {
            (Location::JsonPointer(p), Some(doc)) => prop_assert!(
                doc.pointer(p).is_some_and(Value::is_string),
                "{} does not point at a string",
                p
            ),
            (Location::FormField(name), None) => {
                prop_assert!(name == "f.req" || name == "at", "no field {}", name)
            }
            (other, _) => prop_assert!(false, "unexpected location {}", other),
        }
    }
    if let Some(body) = redact_all(&req, &x)? {
        if parsed.is_some() {
            prop_assert!(
                serde_json::from_slice::<Value>(&body).is_ok(),
                "redacted body is not JSON: {}",
                String::from_utf8_lossy(&body)
            );
        }
    } else {
        prop_assert!(false, "a well-formed body refused redaction");
    }
    Ok(())
}

/// One generated multipart part.
#[derive(Debug, Clone)]
struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<&'static str>,
    base64: bool,
    content: Vec<u8>,
}

fn part(max: usize) -> impl Strategy<Value = Part> {
    (
        "[a-z_]{1,8}",
        prop::option::of("[a-z]{1,6}\\.(txt|md|csv|png|bin|json)"),
        prop::option::of(prop::sample::select(vec![
            "text/plain",
            "text/plain; charset=utf-8",
            "text/plain; charset=iso-8859-1",
            "application/json",
            "image/png",
            "application/octet-stream",
        ])),
        prop::bool::weighted(0.2),
        prop_oneof![
            3 => text(max).prop_map(String::into_bytes),
            1 => prop::collection::vec(any::<u8>(), 0..max * 4),
        ],
    )
        .prop_map(|(name, filename, content_type, base64, content)| Part {
            name,
            filename,
            content_type,
            base64,
            content,
        })
}

/// Builds a multipart body and checks what extraction makes of it.
fn check_multipart(
    boundary: &str,
    quoted: bool,
    preamble: &str,
    parts: &[Part],
    epilogue: &str,
    max_parts: usize,
) -> Result<(), TestCaseError> {
    let delimiter = format!("\r\n--{boundary}");
    let mut body = Vec::new();
    if !preamble.is_empty() {
        body.extend_from_slice(preamble.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    let mut contents = Vec::new();
    for p in parts {
        let mut content = if p.base64 {
            base64::engine::general_purpose::STANDARD
                .encode(&p.content)
                .into_bytes()
        } else {
            p.content.clone()
        };
        if content
            .windows(delimiter.len())
            .any(|w| w == delimiter.as_bytes())
            || content.ends_with(b"\r")
        {
            content = b"x".to_vec();
        }
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{}\"", p.name);
        if let Some(f) = &p.filename {
            disposition.push_str(&format!("; filename=\"{f}\""));
        }
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        if let Some(ct) = p.content_type {
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        if p.base64 {
            body.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n");
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&content);
        body.extend_from_slice(b"\r\n");
        contents.push(content);
    }
    body.extend_from_slice(format!("--{boundary}--").as_bytes());
    body.extend_from_slice(epilogue.as_bytes());
    let ct = if quoted {
        format!("multipart/form-data; boundary=\"{boundary}\"")
    } else {
        format!("multipart/form-data; boundary={boundary}")
    };
    let headers = content_type(&ct);
    let req = common::extract_post("example.com", "/upload", &headers, &body);
    let limits = Limits {
        max_parts,
        ..Limits::default()
    };
    let x = match extract(&req, &limits) {
        Err(Error::TooLarge) => {
            prop_assert!(
                parts.len() > max_parts,
                "TooLarge with {} parts",
                parts.len()
            );
            return Ok(());
        }
        other => other.map_err(|e| TestCaseError::fail(format!("{e}")))?,
    };
    prop_assert!(parts.len() <= max_parts, "{} parts accepted", parts.len());
    for g in &x.segments {
        let Location::MultipartPart {
            index,
            name,
            filename,
        } = &g.location
        else {
            return Err(TestCaseError::fail(format!("location {}", g.location)));
        };
        let p = &parts[*index];
        prop_assert_eq!(name, &p.name);
        prop_assert_eq!(filename, &p.filename);
    }
    // Plain fields that are UTF-8 text come out exactly.
    for (index, p) in parts.iter().enumerate() {
        let plain = p.filename.is_none() && p.content_type.is_none() && !p.base64;
        if let (true, Ok(text)) = (plain, std::str::from_utf8(&contents[index])) {
            if text.is_empty() {
                continue;
            }
            prop_assert!(
                x.segments.iter().any(|g| g.text == text
                    && matches!(g.location, Location::MultipartPart { index: i, .. } if i == index)),
                "part {} ({:?}) not extracted",
                index,
                text
            );
        }
    }
    redact_all(&req, &x)?;
    Ok(())
}

/// Form bodies from pieces that stress percent-decoding.
fn form_soup(max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9._~-]{1,6}",
        2 => Just("=".to_string()),
        2 => Just("&".to_string()),
        1 => Just("+".to_string()),
        1 => Just("%".to_string()),
        2 => "%[0-9A-Fa-f]{2}",
        1 => "%[0-9A-Fa-f]",
        1 => "%[89A-Fa-f][0-9A-Fa-f]%[89A-Ba-b][0-9A-Fa-f]",
        1 => Just(";".to_string()),
        1 => "\\PC{1,3}",
    ];
    prop::collection::vec(piece, 0..max).prop_map(|p| p.concat())
}

fn check_form(body: &str) -> Result<(), TestCaseError> {
    let headers = content_type("application/x-www-form-urlencoded");
    let req = common::extract_post("example.com", "/", &headers, body.as_bytes());
    let x = extract(&req, &Limits::default()).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    let same = x
        .rewrite(&[])
        .map_err(|e| TestCaseError::fail(format!("{e}")))?;
    prop_assert_eq!(&same.body[..], body.as_bytes());
    let names: Vec<String> = form_urlencoded::parse(body.as_bytes())
        .map(|(k, _)| k.into_owned())
        .collect();
    for g in &x.segments {
        match &g.location {
            Location::FormField(name) => prop_assert!(names.contains(name), "no field {:?}", name),
            other => prop_assert!(false, "location {}", other),
        }
    }
    if let Some(rewritten) = redact_all(&req, &x)? {
        prop_assert!(std::str::from_utf8(&rewritten).is_ok());
    }
    Ok(())
}

fn boundary() -> impl Strategy<Value = String> {
    "[0-9A-Za-z'()+_,./:=?-]{1,40}"
}

proptest! {
    #![proptest_config(common::proptest_config(96))]

    #[test]
    fn provider_shaped_bodies_yield_every_planted_text(
        which in 0..PROVIDERS,
        c in conversation(6, 4),
        escapes in any::<u64>(),
    ) {
        check_shaped(which, &c, escapes)?;
    }

    #[test]
    fn multipart_parts_are_located_and_redactable(
        boundary in boundary(),
        quoted in any::<bool>(),
        preamble in prop::option::of("[a-z ]{0,10}"),
        parts in prop::collection::vec(part(16), 0..6),
        epilogue in prop::sample::select(vec!["", "\r\n", "\r\nepilogue\r\n"]),
        max_parts in 1usize..8,
    ) {
        check_multipart(&boundary, quoted, preamble.as_deref().unwrap_or(""), &parts, epilogue, max_parts)?;
    }

    #[test]
    fn form_bodies_keep_their_bytes_and_fields(body in form_soup(24)) {
        check_form(&body)?;
    }
}

proptest! {
    #![proptest_config(common::proptest_config(10_000))]

    #[test]
    #[ignore = "fuzz profile (minutes): see README.md, Fuzzing"]
    fn fuzz_provider_shaped_bodies(
        which in 0..PROVIDERS,
        c in conversation(24, 12),
        escapes in any::<u64>(),
    ) {
        check_shaped(which, &c, escapes)?;
    }

    #[test]
    #[ignore = "fuzz profile (minutes): see README.md, Fuzzing"]
    fn fuzz_multipart(
        boundary in boundary(),
        quoted in any::<bool>(),
        preamble in prop::option::of("[a-z ]{0,10}"),
        parts in prop::collection::vec(part(256), 0..24),
        epilogue in prop::sample::select(vec!["", "\r\n", "\r\nepilogue\r\n"]),
        max_parts in 1usize..32,
    ) {
        check_multipart(&boundary, quoted, preamble.as_deref().unwrap_or(""), &parts, epilogue, max_parts)?;
    }

    #[test]
    #[ignore = "fuzz profile (minutes): see README.md, Fuzzing"]
    fn fuzz_form_bodies(body in form_soup(256)) {
        check_form(&body)?;
    }
}
