//! `multipart/form-data` with limits: at most `max_parts` parts, text parts
//! of at most `max_part_bytes`. Binary parts (images, audio, archives) are
//! skipped; fields and text-like files become segments.

use std::ops::Range;

use memchr::memmem;

use super::body::{text_like, Sink};
use super::decode;
use super::rewrite::{base64_codec, base64_decode, Codec, Layer};
use super::route::Route;
use super::{Error, Location, Role};

/// Header block of one part: more is not a browser or an SDK.
const MAX_PART_HEADER_BYTES: usize = 8 * 1024;

/// One part: its headers and the byte range of its content.
#[derive(Debug)]
pub(crate) struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub base64: bool,
    pub range: Range<usize>,
}

/// Splits `body` into parts (RFC 7578 / RFC 2046).
pub(crate) fn parse(body: &[u8], boundary: &str, max_parts: usize) -> Result<Vec<Part>, Error> {
    let bad = |what: &str| Error::Undecodable(format!("multipart: {what}"));
    if boundary.is_empty() || boundary.len() > 200 {
        return Err(bad("invalid boundary"));
    }
    let delimiter = format!("\r\n--{boundary}");
    let finder = memmem::Finder::new(delimiter.as_bytes());
    // The first delimiter may start the body without the leading CRLF.
    let first = format!("--{boundary}");
    let mut pos = if body.starts_with(first.as_bytes()) {
        first.len()
    } else {
        finder
            .find(body)
            .map(|i| i + delimiter.len())
            .ok_or_else(|| bad("no boundary"))?
    };
    let mut parts = Vec::new();
    loop {
        // After a delimiter: `--` closes, else optional whitespace and CRLF.
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        while matches!(body.get(pos), Some(b' ' | b'\t')) {
            pos += 1;
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err(bad("malformed delimiter"));
        }
        pos += 2;
        if parts.len() >= max_parts {
            return Err(Error::TooLarge);
        }
        let (headers, content_start) = if body[pos..].starts_with(b"\r\n") {
            ("", pos + 2)
        } else {
            let window = &body[pos..body.len().min(pos + MAX_PART_HEADER_BYTES)];
            let end = memmem::find(window, b"\r\n\r\n")
                .map(|i| pos + i)
                .ok_or_else(|| bad("part headers too long or unterminated"))?;
            (std::str::from_utf8(&body[pos..end]).unwrap_or(""), end + 4)
        };
        let end = finder
            .find(&body[content_start..])
            .map(|i| content_start + i)
            .ok_or_else(|| bad("unterminated part"))?;
        parts.push(part(headers, content_start..end));
        pos = end + delimiter.len();
    }
}

fn part(headers: &str, range: Range<usize>) -> Part {
    let mut p = Part {
        name: String::new(),
        filename: None,
        content_type: None,
        base64: false,
        range,
    };
    for line in headers.split("\r\n") {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if key.eq_ignore_ascii_case("content-disposition") {
            p.name = decode::param(value, "name").unwrap_or("").to_string();
            p.filename = decode::param(value, "filename").map(str::to_string);
        } else if key.eq_ignore_ascii_case("content-type") {
            p.content_type = Some(value.to_string());
        } else if key.eq_ignore_ascii_case("content-transfer-encoding") {
            p.base64 = value.eq_ignore_ascii_case("base64");
        }
    }
    p
}

/// Reads every part as a segment when it is text.
pub(crate) fn read(
    body: &[u8],
    boundary: &str,
    route: &Route,
    sink: &mut Sink<'_>,
) -> Result<(), Error> {
    let limits = sink.limits;
    for (index, part) in parse(body, boundary, limits.max_parts)?
        .into_iter()
        .enumerate()
    {
        if part.filename.is_none() && route.skip_fields.contains(&part.name.as_str()) {
            continue;
        }
        let raw = &body[part.range.clone()];
        let mime = part.content_type.as_deref();
        let (content, codec) = if part.base64 {
            let compact: Vec<u8> = raw
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            if compact.len() != raw.len() {
                // Line-wrapped base64 cannot be spliced back as one run.
                match base64_decode(&compact) {
                    Some(d) => (d, None),
                    None => continue,
                }
            } else {
                match base64_decode(raw) {
                    Some(d) => (d, Some(base64_codec(raw))),
                    None => continue,
                }
            }
        } else {
            (raw.to_vec(), Some(Codec::Raw))
        };
        let is_file = part.filename.is_some();
        let text_part = if is_file {
            text_like(mime, part.filename.as_deref(), &content)
        } else {
            mime.is_none() || text_like(mime, None, &content)
        };
        if !text_part {
            continue;
        }
        if content.len() as u64 > limits.max_part_bytes {
            return Err(Error::TooLarge);
        }
        let charset = decode::charset(mime);
        let (text, malformed) = decode::to_utf8(&content, charset);
        let mut chain = vec![Layer {
            range: part.range.clone(),
            codec: codec.unwrap_or(Codec::Raw),
        }];
        if charset != encoding_rs::UTF_8 {
            if matches!(chain[0].codec, Codec::Raw) {
                chain[0].codec = Codec::Charset(charset);
            } else {
                chain.push(Layer {
                    range: 0..content.len(),
                    codec: Codec::Charset(charset),
                });
            }
        }
        let role = if is_file { Role::File } else { route.body_role };
        let location = Location::MultipartPart {
            index,
            name: part.name,
            filename: part.filename,
        };
        sink.push(
            role,
            location,
            text.into_owned(),
            chain,
            !malformed && codec.is_some(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"--XyZ\r\n\
Content-Disposition: form-data; name=\"purpose\"\r\n\r\n\
assistants\r\n\
--XyZ\r\n\
Content-Disposition: form-data; name=\"file\"; filename=\"notes.txt\"\r\n\
Content-Type: text/plain\r\n\r\n\
line one\r\nline two\r\n\
--XyZ\r\n\
Content-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\
Content-Type: image/png\r\n\r\n\
\x89PNG\0\0\r\n\
--XyZ--\r\n";

    #[test]
    fn parts_and_ranges() {
        let parts = parse(BODY, "XyZ", 10).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].name, "purpose");
        assert_eq!(&BODY[parts[0].range.clone()], b"assistants");
        assert_eq!(parts[1].filename.as_deref(), Some("notes.txt"));
        assert_eq!(&BODY[parts[1].range.clone()], b"line one\r\nline two");
        assert!(matches!(parse(BODY, "XyZ", 2), Err(Error::TooLarge)));
        assert!(parse(b"--XyZ\r\nContent-Disposition: x\r\n\r\nno end", "XyZ", 10).is_err());
        assert!(parse(b"garbage", "XyZ", 10).is_err());
    }
}
