//! Reading a decoded body in its format (JSON, form, multipart, text) and
//! collecting segments with the layers that locate them.

use std::ops::Range;

use super::decode;
use super::json::{self, Json, Kind};
use super::multipart;
use super::rewrite::{base64_codec, base64_decode, form_decode, Codec, Layer};
use super::route::{JsonReader, Route};
use super::{generic, Error, Limits, Location, Origin, Role, Segment};

/// Collects segments and their origins.
pub(crate) struct Sink<'l> {
    pub limits: &'l Limits,
    segments: Vec<Segment>,
    origins: Vec<Origin>,
}

impl<'l> Sink<'l> {
    /// Segments collected so far.
    pub(crate) fn len(&self) -> usize {
        self.segments.len()
    }

    pub fn new(limits: &'l Limits) -> Self {
        Sink {
            limits,
            segments: Vec::new(),
            origins: Vec::new(),
        }
    }

    pub fn finish(self) -> (Vec<Segment>, Vec<Origin>) {
        (self.segments, self.origins)
    }

    /// Records one text; empty texts carry nothing to scan.
    pub fn push(
        &mut self,
        role: Role,
        location: Location,
        text: String,
        chain: Vec<Layer>,
        rewritable: bool,
    ) {
        if text.is_empty() {
            return;
        }
        self.segments.push(Segment {
            role,
            location,
            text,
        });
        self.origins.push(Origin { chain, rewritable });
    }
}

/// A view of one JSON document for provider readers: where it sits in the
/// body (`base` layers) and how to name what they find.
pub(crate) struct Out<'s, 'l> {
    pub sink: &'s mut Sink<'l>,
    base: Vec<Layer>,
    rewritable: bool,
    /// Set for documents nested in a string: every segment takes this
    /// location (the outer field) instead of a pointer into the inner text.
    location: Option<Location>,
}

impl<'s, 'l> Out<'s, 'l> {
    fn new(sink: &'s mut Sink<'l>, base: Vec<Layer>, rewritable: bool) -> Self {
        Out {
            sink,
            base,
            rewritable,
            location: None,
        }
    }

    fn location(&self, ptr: &str) -> Location {
        self.location
            .clone()
            .unwrap_or_else(|| Location::JsonPointer(ptr.to_string()))
    }

    fn chain(&self, extra: impl IntoIterator<Item = Layer>) -> Vec<Layer> {
        self.base.iter().cloned().chain(extra).collect()
    }

    /// A string value as a segment; anything else is ignored.
    pub fn str(&mut self, role: Role, v: &Json<'_>, ptr: &str) {
        if let Kind::Str(s) = &v.kind {
            let chain = self.chain([Layer {
                range: v.span.clone(),
                codec: Codec::JsonString,
            }]);
            let location = self.location(ptr);
            self.sink
                .push(role, location, s.to_string(), chain, self.rewritable);
        }
    }

    /// `v[key]` as a segment, when it is a string.
    pub fn str_at(&mut self, role: Role, v: &Json<'_>, ptr: &str, key: &str) {
        if let Some(s) = v.get(key) {
            self.str(role, s, &json::pointer(ptr, key));
        }
    }

    /// Every string value under `v` (not member names).
    pub fn all_strings(&mut self, role: Role, v: &Json<'_>, ptr: &str) {
        match &v.kind {
            // Binary data URLs are skipped; text ones are read as files.
            Kind::Str(s) => {
                let data = s.starts_with("data:");
                if !(data && (binary_data_url(s) || self.data_url(Role::File, v, ptr, None))) {
                    self.str(role, v, ptr);
                }
            }
            Kind::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.all_strings(role, item, &json::pointer_at(ptr, i));
                }
            }
            Kind::Object(members) => {
                for (k, item) in members {
                    self.all_strings(role, item, &json::pointer(ptr, k));
                }
            }
            _ => {}
        }
    }

    /// A string holding a whole file in base64: its text when the file is
    /// text-like by `mime` or `name` (or, with neither, by its content).
    pub fn base64_file(
        &mut self,
        role: Role,
        v: &Json<'_>,
        ptr: &str,
        mime: Option<&str>,
        name: Option<&str>,
    ) {
        if let Some(s) = v.as_str() {
            self.base64_in(role, v, ptr, 0..s.len(), mime, name);
        }
    }

    /// A `data:` URL string: its text when the media type is text-like.
    pub fn data_url(&mut self, role: Role, v: &Json<'_>, ptr: &str, name: Option<&str>) -> bool {
        let Some(s) = v.as_str() else { return false };
        let Some(rest) = s.strip_prefix("data:") else {
            return false;
        };
        let Some((meta, _)) = rest.split_once(',') else {
            return false;
        };
        let start = 5 + meta.len() + 1;
        let mime = meta.split(';').next().unwrap_or("");
        meta.ends_with(";base64") && self.base64_in(role, v, ptr, start..s.len(), Some(mime), name)
    }

    fn base64_in(
        &mut self,
        role: Role,
        v: &Json<'_>,
        ptr: &str,
        range: Range<usize>,
        mime: Option<&str>,
        name: Option<&str>,
    ) -> bool {
        let Some(s) = v.as_str() else { return false };
        let encoded = &s.as_bytes()[range.clone()];
        if !maybe_text(mime, name) {
            return false;
        }
        let Some(bytes) = base64_decode(encoded) else {
            return false;
        };
        if bytes.is_empty() || !text_like(mime, name, &bytes) {
            return false;
        }
        let Ok(text) = String::from_utf8(bytes) else {
            return false;
        };
        let chain = self.chain([
            Layer {
                range: v.span.clone(),
                codec: Codec::JsonString,
            },
            Layer {
                range,
                codec: base64_codec(encoded),
            },
        ]);
        let location = self.location(ptr);
        self.sink.push(role, location, text, chain, self.rewritable);
        true
    }

    /// A string that holds a JSON document of its own (web clients): reads
    /// it with `reader`, every segment located at the outer string.
    pub fn nested_json(&mut self, v: &Json<'_>, ptr: &str, reader: JsonReader) -> bool {
        let Some(s) = v.as_str() else { return false };
        let Ok(inner) = json::parse(s) else {
            return false;
        };
        let base = self.chain([Layer {
            range: v.span.clone(),
            codec: Codec::JsonString,
        }]);
        let location = Some(self.location(ptr));
        let mut out = Out {
            sink: self.sink,
            base,
            rewritable: self.rewritable,
            location,
        };
        reader(&inner, &mut out);
        true
    }
}

fn parses_as_json(body: &[u8]) -> bool {
    matches!(body.trim_ascii_start().first(), Some(b'{' | b'['))
        && std::str::from_utf8(body).is_ok_and(|text| json::parse(text).is_ok())
}

/// Reads `body` (already content-decoded) as its media type says.
pub(crate) fn read(
    body: &[u8],
    content_type: Option<&str>,
    route: &Route,
    sink: &mut Sink<'_>,
) -> Result<(), Error> {
    let mime = decode::mime(content_type);
    if mime.starts_with("multipart/") {
        let boundary = content_type
            .and_then(|ct| decode::param(ct, "boundary"))
            .ok_or_else(|| Error::Undecodable("multipart body without boundary".into()))?;
        return multipart::read(body, boundary, route, sink);
    }
    // `curl -d '{...}'` labels JSON as a form: a JSON document would then
    // hide inside one form field name. Read what parses as JSON as JSON.
    let form = mime == "application/x-www-form-urlencoded";
    if form && !parses_as_json(body) {
        read_form(body, route, sink);
        return Ok(());
    }
    let charset = decode::charset(content_type);
    let (text, malformed) = decode::to_utf8(body, charset);
    let base = if charset == encoding_rs::UTF_8 {
        Vec::new()
    } else {
        vec![Layer {
            range: 0..body.len(),
            codec: Codec::Charset(charset),
        }]
    };
    let first = text.trim_start().as_bytes().first().copied();
    let json_like = is_json_mime(&mime)
        || (matches!(first, Some(b'{' | b'['))
            && (mime.is_empty()
                || mime == "text/plain"
                || mime == "application/octet-stream"
                || form
                || route.json.is_some()));
    if json_like {
        if let Ok(doc) = json::parse(&text) {
            let before = sink.len();
            if let Some(reader) = route.json {
                reader(&doc, &mut Out::new(sink, base.clone(), !malformed));
            }
            // A body the provider reader finds nothing in (an unexpected
            // shape, a new endpoint) is read generically: an unfamiliar
            // field must not be a way around inspection.
            if sink.len() == before {
                generic::json(&doc, &mut Out::new(sink, base, !malformed));
            }
            return Ok(());
        }
    }
    if text_like(
        Some(&mime).filter(|m| !m.is_empty()).map(|m| m.as_str()),
        None,
        body,
    ) || is_json_mime(&mime)
    {
        let mut chain = base;
        chain.push(Layer {
            range: 0..text.len(),
            codec: Codec::Raw,
        });
        sink.push(
            route.body_role,
            Location::Body,
            text.into_owned(),
            chain,
            !malformed,
        );
    }
    Ok(())
}

fn is_json_mime(mime: &str) -> bool {
    mime == "application/json"
        || mime.ends_with("+json")
        || mime == "application/x-ndjson"
        || mime == "application/jsonl"
        || mime == "text/json"
}

/// Form fields with the byte range of each value.
pub(crate) fn form_pairs(body: &[u8]) -> Vec<(String, Range<usize>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    for pair in body.split(|&b| b == b'&') {
        let start = pos;
        pos += pair.len() + 1;
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match memchr::memchr(b'=', pair) {
            Some(eq) => (&pair[..eq], start + eq + 1..start + pair.len()),
            None => (pair, start + pair.len()..start + pair.len()),
        };
        out.push((
            String::from_utf8_lossy(&form_decode(name)).into_owned(),
            value,
        ));
    }
    out
}

fn read_form(body: &[u8], route: &Route, sink: &mut Sink<'_>) {
    for (name, range) in form_pairs(body) {
        let bytes = form_decode(&body[range.clone()]);
        let (text, rewritable) = match String::from_utf8(bytes) {
            Ok(t) => (t, true),
            Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), false),
        };
        if let Some(reader) = route.form {
            let base = vec![Layer {
                range: range.clone(),
                codec: Codec::Form,
            }];
            let mut out = Out::new(sink, base, rewritable);
            out.location = Some(Location::FormField(name.clone()));
            if reader(&name, &text, &mut out) {
                continue;
            }
        }
        let chain = vec![Layer {
            range,
            codec: Codec::Form,
        }];
        sink.push(
            route.body_role,
            Location::FormField(name),
            text,
            chain,
            rewritable,
        );
    }
}

/// File-name extensions of text files worth scanning (documents, data,
/// configuration, source code).
const TEXT_EXTENSIONS: &[&str] = &[
    "txt",
    "text",
    "csv",
    "tsv",
    "json",
    "jsonl",
    "ndjson",
    "md",
    "markdown",
    "rst",
    "adoc",
    "yaml",
    "yml",
    "toml",
    "ini",
    "cfg",
    "conf",
    "env",
    "properties",
    "xml",
    "html",
    "htm",
    "css",
    "scss",
    "log",
    "sql",
    "tex",
    "srt",
    "vtt",
    "ics",
    "vcf",
    "eml",
    "py",
    "rs",
    "go",
    "java",
    "kt",
    "kts",
    "scala",
    "js",
    "mjs",
    "cjs",
    "ts",
    "tsx",
    "jsx",
    "vue",
    "svelte",
    "c",
    "h",
    "cc",
    "cpp",
    "cxx",
    "hpp",
    "hh",
    "cs",
    "fs",
    "rb",
    "php",
    "pl",
    "pm",
    "sh",
    "bash",
    "zsh",
    "ps1",
    "bat",
    "swift",
    "m",
    "mm",
    "r",
    "jl",
    "lua",
    "dart",
    "ex",
    "exs",
    "erl",
    "hs",
    "clj",
    "el",
    "tf",
    "hcl",
    "proto",
    "graphql",
    "gradle",
    "dockerfile",
    "makefile",
    "ipynb",
    "diff",
    "patch",
];

/// Media types of files that are never text (checked before sniffing).
fn binary_mime(mime: &str) -> bool {
    mime.starts_with("image/")
        || mime.starts_with("audio/")
        || mime.starts_with("video/")
        || mime.starts_with("font/")
        || matches!(
            mime,
            "application/pdf" | "application/zip" | "application/gzip" | "application/x-tar"
        )
        || mime.starts_with("application/vnd.")
}

fn text_mime(mime: &str) -> bool {
    mime.starts_with("text/")
        || is_json_mime(mime)
        || mime.ends_with("+xml")
        || matches!(
            mime,
            "application/xml"
                | "application/javascript"
                | "application/x-javascript"
                | "application/x-yaml"
                | "application/yaml"
                | "application/toml"
                | "application/sql"
                | "application/csv"
                | "application/x-sh"
                | "application/x-python"
                | "application/x-httpd-php"
                | "application/x-tex"
                | "application/rtf"
        )
}

fn text_extension(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let ext = lower.rsplit_once('.').map(|(_, e)| e).unwrap_or(&lower);
    TEXT_EXTENSIONS.contains(&ext)
}

/// Before decoding: could a file of this media type and name be text?
fn maybe_text(mime: Option<&str>, name: Option<&str>) -> bool {
    let mime = mime.map(|m| m.to_ascii_lowercase());
    match mime.as_deref() {
        Some(m) if text_mime(m) => true,
        Some(m) if binary_mime(m) => name.is_some_and(text_extension),
        _ => true,
    }
}

/// Whether a file is text to scan: by media type, else by extension, else
/// (no type, or `application/octet-stream`) by content: valid UTF-8 without
/// control characters other than whitespace.
pub(crate) fn text_like(mime: Option<&str>, name: Option<&str>, bytes: &[u8]) -> bool {
    let mime = mime.map(|m| {
        m.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    match mime.as_deref() {
        Some(m) if text_mime(m) => true,
        _ if name.is_some_and(text_extension) => true,
        Some(m) if binary_mime(m) => false,
        Some(m) if !m.is_empty() && m != "application/octet-stream" => false,
        _ => sniff_text(bytes),
    }
}

fn sniff_text(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(8192)];
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        // A multi-byte character cut at the sniff boundary is fine.
        Err(e) => e.error_len().is_none(),
    };
    valid
        && !head
            .iter()
            .any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c))
}

/// `data:image/png;base64,...` and other binary data URLs: not prompts.
fn binary_data_url(s: &str) -> bool {
    s.strip_prefix("data:")
        .and_then(|rest| rest.split([';', ',']).next())
        .map(str::to_ascii_lowercase)
        .is_some_and(|mime| binary_mime(&mime) || mime == "application/octet-stream")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_like_by_type_extension_or_content() {
        assert!(text_like(Some("text/csv"), None, b"\0"));
        assert!(text_like(
            Some("application/octet-stream"),
            Some("main.rs"),
            b"fn main() {}"
        ));
        assert!(text_like(None, None, b"plain words\n"));
        assert!(!text_like(None, None, b"\x89PNG\r\n\x1a\n"));
        assert!(!text_like(Some("image/png"), Some("x.png"), b"abc"));
        assert!(!text_like(
            Some("application/pdf"),
            Some("x.pdf"),
            b"%PDF-1.7"
        ));
    }

    #[test]
    fn form_pairs_carry_value_ranges() {
        let body = b"a=1&b=x%20y+z&&c";
        let pairs = form_pairs(body);
        assert_eq!(pairs.len(), 3);
        assert_eq!(&body[pairs[1].1.clone()], b"x%20y+z");
        assert_eq!(form_decode(&body[pairs[1].1.clone()]), b"x y z");
        assert_eq!(pairs[2], ("c".to_string(), 16..16));
    }
}
