//! Redaction rewrite: replace spans of segment texts with
//! `[REDACTED:<detector>]` and splice each changed text back into the body
//! through the layers it was decoded from (JSON string, form value, base64,
//! charset), leaving every other byte unchanged.

use std::ops::Range;

use base64::Engine as _;
use bytes::Bytes;
use encoding_rs::Encoding;
use http::HeaderValue;

use super::{json, Error, Extracted};

/// One redaction: byte span `[start, end)` within `segments[segment].text`,
/// replaced by `[REDACTED:<detector>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redaction<'a> {
    pub segment: usize,
    pub start: usize,
    pub end: usize,
    pub detector: &'a str,
}

/// A rewritten body and the `Content-Encoding` it carries.
#[derive(Debug, Clone)]
pub struct Rewritten {
    pub body: Bytes,
    /// `Some`: set this `Content-Encoding` (the original, body unchanged).
    /// `None`: remove the header: a changed body is sent uncompressed.
    pub content_encoding: Option<HeaderValue>,
}

/// One level of nesting: a range of the enclosing text and how the inner
/// text is encoded there.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub range: Range<usize>,
    pub codec: Codec,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Codec {
    /// The bytes are the text (UTF-8).
    Raw,
    /// A JSON string literal, quotes included.
    JsonString,
    /// A form-urlencoded value.
    Form,
    /// Base64 (standard or URL-safe alphabet, padded or not).
    Base64 { url_safe: bool, padded: bool },
    /// Text in a legacy charset.
    Charset(&'static Encoding),
}

impl Codec {
    /// The text inside `bytes`, for a layer that holds nested layers.
    fn decode(self, bytes: &[u8]) -> Result<String, Error> {
        let unsupported = |what: &str| Error::Unsupported(format!("{what} changed under us"));
        match self {
            Codec::Raw => String::from_utf8(bytes.to_vec()).map_err(|_| unsupported("utf-8 text")),
            Codec::JsonString => {
                let text = std::str::from_utf8(bytes).map_err(|_| unsupported("JSON string"))?;
                match json::parse(text).map(|v| v.kind) {
                    Ok(json::Kind::Str(s)) => Ok(s.into_owned()),
                    _ => Err(unsupported("JSON string")),
                }
            }
            Codec::Form => {
                String::from_utf8(form_decode(bytes)).map_err(|_| unsupported("form value"))
            }
            Codec::Base64 { .. } => base64_decode(bytes)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| unsupported("base64 text")),
            Codec::Charset(enc) => {
                let (text, malformed) = enc.decode_without_bom_handling(bytes);
                if malformed {
                    return Err(unsupported("charset text"));
                }
                Ok(text.into_owned())
            }
        }
    }

    /// `text` encoded for this layer.
    fn encode(self, text: &str, out: &mut Vec<u8>) {
        match self {
            Codec::Raw => out.extend_from_slice(text.as_bytes()),
            Codec::JsonString => json::quote(text, out),
            Codec::Form => {
                for chunk in form_urlencoded::byte_serialize(text.as_bytes()) {
                    out.extend_from_slice(chunk.as_bytes());
                }
            }
            Codec::Base64 { url_safe, padded } => {
                let b64 = match (url_safe, padded) {
                    (false, true) => base64::engine::general_purpose::STANDARD.encode(text),
                    (false, false) => base64::engine::general_purpose::STANDARD_NO_PAD.encode(text),
                    (true, true) => base64::engine::general_purpose::URL_SAFE.encode(text),
                    (true, false) => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text),
                };
                out.extend_from_slice(b64.as_bytes());
            }
            Codec::Charset(enc) => {
                let (bytes, _, _) = enc.encode(text);
                out.extend_from_slice(&bytes);
            }
        }
    }
}

/// Percent-decodes a form value (`+` is a space).
pub(crate) fn form_decode(bytes: &[u8]) -> Vec<u8> {
    let plus: Vec<u8> = bytes
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&plus).collect()
}

/// Decodes base64 in any of the four usual spellings; `None` if it is not.
pub(crate) fn base64_decode(bytes: &[u8]) -> Option<Vec<u8>> {
    use base64::engine::general_purpose as gp;
    let url_safe = bytes.iter().any(|&b| b == b'-' || b == b'_');
    let engine = match (url_safe, bytes.last() == Some(&b'=')) {
        (false, true) => &gp::STANDARD,
        (false, false) => &gp::STANDARD_NO_PAD,
        (true, true) => &gp::URL_SAFE,
        (true, false) => &gp::URL_SAFE_NO_PAD,
    };
    engine.decode(bytes).ok()
}

/// The base64 codec that writes back in the same spelling as `bytes`.
pub(crate) fn base64_codec(bytes: &[u8]) -> Codec {
    Codec::Base64 {
        url_safe: bytes.iter().any(|&b| b == b'-' || b == b'_'),
        padded: bytes.last() == Some(&b'='),
    }
}

impl Extracted {
    /// Rewrites the body with the spans replaced by `[REDACTED:<detector>]`.
    ///
    /// Zero redactions return the body as received, byte for byte, with its
    /// `Content-Encoding`. Otherwise only the targeted strings change and the
    /// body is returned without `Content-Encoding` (`content_encoding:
    /// None`: remove the header and set the new length). Overlapping spans of
    /// one segment are merged and labelled with the first detector.
    pub fn rewrite(&self, redactions: &[Redaction<'_>]) -> Result<Rewritten, Error> {
        if redactions.is_empty() {
            return Ok(Rewritten {
                body: self.raw.clone(),
                content_encoding: self.raw_encoding.clone(),
            });
        }
        let mut by_segment: Vec<Vec<&Redaction<'_>>> = vec![Vec::new(); self.segments.len()];
        for r in redactions {
            let segment = self
                .segments
                .get(r.segment)
                .ok_or_else(|| Error::InvalidRedaction(format!("no segment {}", r.segment)))?;
            let text = &segment.text;
            if r.start > r.end
                || r.end > text.len()
                || !text.is_char_boundary(r.start)
                || !text.is_char_boundary(r.end)
            {
                return Err(Error::InvalidRedaction(format!(
                    "span {}..{} in segment {} of {} bytes",
                    r.start,
                    r.end,
                    r.segment,
                    text.len()
                )));
            }
            by_segment[r.segment].push(r);
        }
        let mut edits: Vec<(&[Layer], String)> = Vec::new();
        for (index, mut spans) in by_segment.into_iter().enumerate() {
            if spans.is_empty() {
                continue;
            }
            let origin = &self.origins[index];
            if !origin.rewritable {
                return Err(Error::Unsupported(format!(
                    "segment {index} ({}) is not valid text in its encoding",
                    self.segments[index].location
                )));
            }
            spans.sort_by_key(|r| (r.start, r.end));
            edits.push((&origin.chain, redact(&self.segments[index].text, &spans)));
        }
        let body = splice(&self.decoded, edits)?;
        Ok(Rewritten {
            body: Bytes::from(body),
            content_encoding: None,
        })
    }
}

/// `text` with the sorted spans replaced; overlapping spans merge.
fn redact(text: &str, spans: &[&Redaction<'_>]) -> String {
    let mut out = String::with_capacity(text.len() + 16 * spans.len());
    let mut pos = 0;
    let mut i = 0;
    while i < spans.len() {
        let (start, detector) = (spans[i].start, spans[i].detector);
        let mut end = spans[i].end;
        i += 1;
        while i < spans.len() && spans[i].start < end {
            end = end.max(spans[i].end);
            i += 1;
        }
        let start = start.max(pos);
        out.push_str(&text[pos..start]);
        out.push_str("[REDACTED:");
        out.push_str(detector);
        out.push(']');
        pos = end.max(start);
    }
    out.push_str(&text[pos..]);
    out
}

/// Applies the edits (each a chain of layers down to a new innermost text)
/// to `doc`: edits sharing an outer layer are grouped, that layer decoded
/// once, the inner edits applied, and the result encoded back.
fn splice(doc: &[u8], mut edits: Vec<(&[Layer], String)>) -> Result<Vec<u8>, Error> {
    edits.sort_by_key(|(chain, _)| chain.first().map(|l| (l.range.start, l.range.end)));
    let mut out = Vec::with_capacity(doc.len() + 64);
    let mut pos = 0;
    let mut edits = edits.into_iter().peekable();
    while let Some((chain, text)) = edits.next() {
        let Some((layer, inner)) = chain.split_first() else {
            return Err(Error::Unsupported("segment without a location".into()));
        };
        if layer.range.start < pos || layer.range.end > doc.len() {
            return Err(Error::Unsupported("overlapping segments".into()));
        }
        out.extend_from_slice(&doc[pos..layer.range.start]);
        if inner.is_empty() {
            layer.codec.encode(&text, &mut out);
        } else {
            let mut group = vec![(inner, text)];
            while let Some((next, _)) = edits.peek() {
                if next.first().map(|l| &l.range) != Some(&layer.range) {
                    break;
                }
                let Some((next, text)) = edits.next() else {
                    break;
                };
                if next.len() < 2 {
                    return Err(Error::Unsupported("overlapping segments".into()));
                }
                group.push((&next[1..], text));
            }
            let enclosing = layer.codec.decode(&doc[layer.range.clone()])?;
            let changed = splice(enclosing.as_bytes(), group)?;
            let changed = String::from_utf8(changed)
                .map_err(|_| Error::Unsupported("nested text not UTF-8".into()))?;
            layer.codec.encode(&changed, &mut out);
        }
        pos = layer.range.end;
    }
    out.extend_from_slice(&doc[pos..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: usize, end: usize, detector: &str) -> Redaction<'_> {
        Redaction {
            segment: 0,
            start,
            end,
            detector,
        }
    }

    #[test]
    fn spans_are_replaced_and_overlaps_merge() {
        let a = r(4, 9, "pii.email");
        let b = r(6, 13, "secret.x");
        let c = r(15, 16, "pii.phone");
        assert_eq!(
            redact("abc john@x.io! 5", &[&a, &b, &c]),
            "abc [REDACTED:pii.email]! [REDACTED:pii.phone]"
        );
        assert_eq!(redact("abc", &[]), "abc");
    }

    #[test]
    fn nested_layers_share_one_decode() {
        // A JSON string holding JSON, holding two strings.
        let inner = r#"["one two","three"]"#;
        let mut outer = Vec::new();
        json::quote(inner, &mut outer);
        let doc = [b"{\"q\":".as_slice(), &outer, b"}"].concat();
        let start = 5;
        let end = 5 + outer.len();
        let chain = |range: Range<usize>| {
            vec![
                Layer {
                    range: start..end,
                    codec: Codec::JsonString,
                },
                Layer {
                    range,
                    codec: Codec::JsonString,
                },
            ]
        };
        let (c1, c2) = (chain(1..10), chain(11..18));
        let out = splice(&doc, vec![(&c2, "3".into()), (&c1, "1 \"2\"".into())]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["q"], r#"["1 \"2\"","3"]"#);
    }

    #[test]
    fn codecs_round_trip() {
        for codec in [
            Codec::Raw,
            Codec::JsonString,
            Codec::Form,
            Codec::Base64 {
                url_safe: false,
                padded: true,
            },
            Codec::Base64 {
                url_safe: true,
                padded: false,
            },
            Codec::Charset(encoding_rs::WINDOWS_1252),
        ] {
            let mut out = Vec::new();
            codec.encode("café & co = 100% \"x\"\n", &mut out);
            assert_eq!(
                codec.decode(&out).unwrap(),
                "café & co = 100% \"x\"\n",
                "{codec:?}"
            );
        }
    }
}
