//! Body decoding before extraction: `Content-Encoding` (gzip, deflate, br,
//! zstd, stacked) bounded in size and ratio, and charsets from
//! `Content-Type`.

use std::borrow::Cow;
use std::io::Read;

use encoding_rs::Encoding;
use http::HeaderMap;

use super::{Error, Limits};

/// More stacked encodings than this is an attack, not a client.
const MAX_STACKED_ENCODINGS: usize = 4;

/// Undoes every `Content-Encoding` of `body`, last applied first. The output
/// is capped at `limits.max_decoded_bytes` and at `limits.max_ratio` times
/// the input: past either the answer is [`Error::TooLarge`], after at most
/// the cap in memory.
pub(crate) fn content_decode<'b>(
    headers: &HeaderMap,
    body: &'b [u8],
    limits: &Limits,
) -> Result<Cow<'b, [u8]>, Error> {
    let codings = codings(headers)?;
    if codings.len() > MAX_STACKED_ENCODINGS {
        return Err(Error::Undecodable(format!(
            "{} stacked content encodings",
            codings.len()
        )));
    }
    let cap = limits
        .max_decoded_bytes
        .min(limits.max_ratio.saturating_mul(body.len().max(1) as u64));
    let mut data = Cow::Borrowed(body);
    for coding in codings.iter().rev() {
        data = Cow::Owned(decode_one(coding, &data, cap)?);
    }
    if data.len() as u64 > limits.max_decoded_bytes {
        return Err(Error::TooLarge);
    }
    Ok(data)
}

/// The content codings in the order they were applied; `identity` dropped.
fn codings(headers: &HeaderMap) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for value in headers.get_all(http::header::CONTENT_ENCODING) {
        let value = value
            .to_str()
            .map_err(|_| Error::Undecodable("Content-Encoding is not ASCII".into()))?;
        for token in value.split(',') {
            let token = token.trim().to_ascii_lowercase();
            if !token.is_empty() && token != "identity" {
                out.push(token);
            }
        }
    }
    Ok(out)
}

fn decode_one(coding: &str, input: &[u8], cap: u64) -> Result<Vec<u8>, Error> {
    let bad = |e: std::io::Error| classify(coding, e);
    match coding {
        "gzip" | "x-gzip" => {
            read_capped(flate2::read::MultiGzDecoder::new(input), cap).map_err(bad)
        }
        "deflate" => {
            // RFC 9110 deflate is zlib-wrapped; some clients send it raw.
            let zlib = input.len() >= 2
                && input[0] & 0x0f == 8
                && (u16::from(input[0]) << 8 | u16::from(input[1])) % 31 == 0;
            if zlib {
                read_capped(flate2::read::ZlibDecoder::new(input), cap).map_err(bad)
            } else {
                read_capped(flate2::read::DeflateDecoder::new(input), cap).map_err(bad)
            }
        }
        "br" => read_capped(brotli::Decompressor::new(input, 4096), cap).map_err(bad),
        "zstd" => zstd_decode(input, cap),
        other => Err(Error::Undecodable(format!(
            "unsupported content encoding {other:?}"
        ))),
    }
}

/// Reads `r` to the end, or fails with `TooLarge` once past `cap` bytes.
fn read_capped(r: impl Read, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut limited = r.take(cap.saturating_add(1));
    limited.read_to_end(&mut out)?;
    if out.len() as u64 > cap {
        return Err(std::io::Error::other(TooLargeMarker));
    }
    Ok(out)
}

#[derive(Debug)]
struct TooLargeMarker;
impl std::fmt::Display for TooLargeMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("decoded body over the limit")
    }
}
impl std::error::Error for TooLargeMarker {}

/// zstd, frame after frame. The decoder's window (its allocation) is
/// bounded too, so a header that announces a huge window is refused.
fn zstd_decode(input: &[u8], cap: u64) -> Result<Vec<u8>, Error> {
    let mut source = input;
    let mut out = Vec::new();
    let max_window = cap.clamp(1 << 20, 1 << 27);
    while !source.is_empty() {
        let decoder =
            ruzstd::decoding::StreamingDecoder::new_with_max_window_size(&mut source, max_window)
                .map_err(|e| Error::Undecodable(format!("zstd: {e}")))?;
        let budget = cap - out.len() as u64;
        let frame = read_capped(decoder, budget).map_err(|e| classify("zstd", e))?;
        out.extend_from_slice(&frame);
    }
    Ok(out)
}

fn classify(coding: &str, e: std::io::Error) -> Error {
    if e.get_ref()
        .is_some_and(|inner| inner.is::<TooLargeMarker>())
    {
        Error::TooLarge
    } else {
        Error::Undecodable(format!("{coding}: {e}"))
    }
}

/// The `charset` parameter of a media type; UTF-8 when absent or unknown.
pub(crate) fn charset(content_type: Option<&str>) -> &'static Encoding {
    content_type
        .and_then(|ct| param(ct, "charset"))
        .and_then(|label| Encoding::for_label(label.as_bytes()))
        .map(|e| e.output_encoding())
        .unwrap_or(encoding_rs::UTF_8)
}

/// A parameter of a media type (`multipart/form-data; boundary=x`), unquoted.
pub(crate) fn param<'a>(content_type: &'a str, name: &str) -> Option<&'a str> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"'))
    })
}

/// The media type without parameters, lowercased (`application/json`).
pub(crate) fn mime(content_type: Option<&str>) -> String {
    content_type
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Decodes `bytes` in `encoding` to UTF-8; the flag says whether anything
/// was malformed (and replaced), in which case the text cannot be written
/// back byte for byte.
pub(crate) fn to_utf8<'b>(bytes: &'b [u8], encoding: &'static Encoding) -> (Cow<'b, str>, bool) {
    if encoding == encoding_rs::UTF_8 {
        return match std::str::from_utf8(bytes) {
            Ok(s) => (Cow::Borrowed(s), false),
            Err(_) => (String::from_utf8_lossy(bytes), true),
        };
    }
    let (text, malformed) = encoding.decode_without_bom_handling(bytes);
    (text, malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn headers(encoding: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_ENCODING, encoding.parse().unwrap());
        h
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn every_coding_and_stacks_decode() {
        let text = b"hello hello hello lantern".repeat(20);
        let limits = Limits::default();
        let gz = gzip(&text);
        assert_eq!(
            *content_decode(&headers("gzip"), &gz, &limits).unwrap(),
            text[..]
        );

        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&text).unwrap();
        let z = z.finish().unwrap();
        assert_eq!(
            *content_decode(&headers("deflate"), &z, &limits).unwrap(),
            text[..]
        );
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(&text).unwrap();
        let raw = raw.finish().unwrap();
        assert_eq!(
            *content_decode(&headers("deflate"), &raw, &limits).unwrap(),
            text[..]
        );

        let mut br = Vec::new();
        brotli::CompressorWriter::new(&mut br, 4096, 5, 22)
            .write_all(&text)
            .unwrap();
        assert_eq!(
            *content_decode(&headers("br"), &br, &limits).unwrap(),
            text[..]
        );

        let zs = ruzstd::encoding::compress_to_vec(
            &text[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert_eq!(
            *content_decode(&headers("zstd"), &zs, &limits).unwrap(),
            text[..]
        );

        // gzip applied first, then zstd: undone in reverse.
        let stacked =
            ruzstd::encoding::compress_to_vec(&gz[..], ruzstd::encoding::CompressionLevel::Fastest);
        assert_eq!(
            *content_decode(&headers("gzip, zstd"), &stacked, &limits).unwrap(),
            text[..]
        );
        assert!(matches!(
            content_decode(&headers("compress"), &text, &limits),
            Err(Error::Undecodable(_))
        ));
    }

    #[test]
    fn zip_bomb_stops_at_the_cap() {
        let zeros = vec![0u8; 8 << 20];
        let bomb = gzip(&zeros);
        let limits = Limits {
            max_ratio: u64::MAX,
            ..Limits::default()
        };
        assert!(matches!(
            content_decode(&headers("gzip"), &bomb, &limits),
            Err(Error::TooLarge)
        ));
        // Ratio: 1 KiB of zeros compresses ~100x; a 10x ratio refuses it.
        let small = gzip(&[0u8; 1024 * 64]);
        let strict = Limits {
            max_ratio: 10,
            ..Limits::default()
        };
        assert!(matches!(
            content_decode(&headers("gzip"), &small, &strict),
            Err(Error::TooLarge)
        ));
        let zs = ruzstd::encoding::compress_to_vec(
            &zeros[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert!(matches!(
            content_decode(&headers("zstd"), &zs, &limits),
            Err(Error::TooLarge)
        ));
    }

    #[test]
    fn charset_and_params() {
        assert_eq!(
            charset(Some("text/plain; charset=ISO-8859-1")),
            encoding_rs::WINDOWS_1252
        );
        assert_eq!(charset(Some("application/json")), encoding_rs::UTF_8);
        assert_eq!(
            param("multipart/form-data; boundary=\"a b\"", "boundary"),
            Some("a b")
        );
        assert_eq!(
            mime(Some("Application/JSON; charset=utf-8")),
            "application/json"
        );
        let (text, bad) = to_utf8(b"caf\xe9", encoding_rs::WINDOWS_1252);
        assert_eq!((text.as_ref(), bad), ("café", false));
        assert!(to_utf8(b"caf\xe9", encoding_rs::UTF_8).1);
    }
}
