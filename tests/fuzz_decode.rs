//! Fuzzing `Content-Encoding` decoding through [`extract`]: arbitrary
//! bytes, real streams (gzip, deflate zlib and raw, br, zstd, stacked) that
//! round-trip, the same streams damaged, and compression bombs. Properties:
//! decoding fails or yields at most the cap (the smaller of
//! `max_decoded_bytes` and `max_ratio` times the input); a bomb is refused
//! as `TooLarge` without the thread ever holding much more than the cap;
//! nothing panics.
//!
//! The `fuzz_` variants are ignored by default: see README.md, "Fuzzing".

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::sync::OnceLock;

use lantern::extract::{extract, Error, Limits, Request};
use proptest::prelude::*;
use proptest::sample::Index;

/// Counts the bytes live on the current thread, and their peak, so a test
/// can tell what one call held at most.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(size);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn note_free(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(size)));
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_free(layout.size());
        note_alloc(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most bytes it held at once.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(Cell::get) - base)
}

/// Decoder state a stream may ask for whatever the cap: brotli's window
/// (up to 16 MiB) and zstd's (at least 1 MiB), plus buffers.
const DECODER_STATE: u64 = 20 << 20;
/// The same for the streams this file encodes (brotli window 4 MiB): well
/// under the bombs' 16 MiB, so holding a whole bomb cannot pass.
const OWN_DECODER_STATE: u64 = 8 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Gzip,
    Zlib,
    RawDeflate,
    Brotli,
    Zstd,
}

impl Coding {
    /// The `Content-Encoding` token (both deflate flavours say `deflate`).
    fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Zlib | Coding::RawDeflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }

    fn encode(self, data: &[u8]) -> Vec<u8> {
        let level = flate2::Compression::fast();
        match self {
            Coding::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Coding::Zlib => {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Coding::RawDeflate => {
                let mut e = flate2::write::DeflateEncoder::new(Vec::new(), level);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Coding::Brotli => {
                let mut out = Vec::new();
                {
                    let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                    w.write_all(data).unwrap();
                }
                out
            }
            Coding::Zstd => {
                ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
            }
        }
    }
}

fn coding() -> impl Strategy<Value = Coding> {
    prop::sample::select(vec![
        Coding::Gzip,
        Coding::Zlib,
        Coding::RawDeflate,
        Coding::Brotli,
        Coding::Zstd,
    ])
}

/// Encodes with each coding in turn (the first applied first).
fn encode_all(codings: &[Coding], data: &[u8]) -> Vec<u8> {
    codings.iter().fold(data.to_vec(), |d, c| c.encode(&d))
}

/// `Content-Encoding` for `tokens` (in the order applied), written as one
/// header or one header per coding, in any letter case.
fn headers(tokens: &[&str], split: bool, upper: bool) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(http::header::CONTENT_TYPE, "text/plain".parse().unwrap());
    let tokens: Vec<String> = tokens
        .iter()
        .map(|t| {
            if upper {
                t.to_ascii_uppercase()
            } else {
                t.to_string()
            }
        })
        .collect();
    if split {
        for t in &tokens {
            h.append(http::header::CONTENT_ENCODING, t.parse().unwrap());
        }
    } else if !tokens.is_empty() {
        h.insert(
            http::header::CONTENT_ENCODING,
            tokens.join(", ").parse().unwrap(),
        );
    }
    h
}

/// The most a body of `len` bytes may decode to under `limits`.
fn cap(limits: &Limits, len: usize) -> u64 {
    limits
        .max_decoded_bytes
        .min(limits.max_ratio.saturating_mul(len.max(1) as u64))
}

/// Extracts `body`, checks what decoding held and produced against the
/// cap, and returns the decoded body.
fn decode(
    headers: &http::HeaderMap,
    body: &[u8],
    limits: &Limits,
    state: u64,
) -> Result<Result<Vec<u8>, Error>, TestCaseError> {
    let req = Request {
        host: "example.com",
        method: &http::Method::POST,
        path: "/",
        headers,
        body,
    };
    let (result, peak) = peak_of(|| extract(&req, limits).map(|x| x.decoded_body().to_vec()));
    let cap = cap(limits, body.len());
    prop_assert!(
        peak as u64 <= 3 * cap + 4 * body.len() as u64 + state,
        "held {} bytes for a cap of {}",
        peak,
        cap
    );
    if let Ok(decoded) = &result {
        prop_assert!(
            decoded.len() as u64 <= cap,
            "decoded {} bytes, over the cap of {}",
            decoded.len(),
            cap
        );
    }
    Ok(result)
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        prop_oneof![Just(4u64 << 20), 1024u64..(1 << 20)],
        prop_oneof![Just(100u64), Just(u64::MAX), 1u64..200],
    )
        .prop_map(|(max_decoded_bytes, max_ratio)| Limits {
            max_decoded_bytes,
            max_ratio,
            ..Limits::default()
        })
}

/// Data that compresses anywhere from not at all to very well.
fn data(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..max),
        ("\\PC{0,64}", 1..max.max(2))
            .prop_map(move |(s, n)| s.repeat(n.min(max / s.len().max(1))).into_bytes()),
        (any::<u8>(), 0..max * 8).prop_map(|(b, n)| vec![b; n]),
    ]
}

fn check_arbitrary(
    body: &[u8],
    tokens: &[&str],
    split: bool,
    limits: &Limits,
) -> Result<(), TestCaseError> {
    match decode(&headers(tokens, split, false), body, limits, DECODER_STATE)? {
        Ok(_) | Err(Error::TooLarge) | Err(Error::Undecodable(_)) => Ok(()),
        Err(e) => Err(TestCaseError::fail(e.to_string())),
    }
}

fn check_round_trip(
    data: &[u8],
    codings: &[Coding],
    split: bool,
    upper: bool,
    limits: &Limits,
) -> Result<(), TestCaseError> {
    let body = encode_all(codings, data);
    let tokens: Vec<&str> = codings.iter().map(|c| c.token()).collect();
    let result = decode(
        &headers(&tokens, split, upper),
        &body,
        limits,
        OWN_DECODER_STATE,
    )?;
    if body.len() as u64 > limits.max_decoded_bytes
        || data.len() as u64 > cap(limits, body.len())
        // A stage in the middle may be the largest.
        || (1..codings.len()).any(|i| encode_all(&codings[..i], data).len() as u64 > cap(limits, body.len()))
    {
        prop_assert!(matches!(result, Err(Error::TooLarge)), "{result:?}");
    } else {
        match result {
            Ok(decoded) => prop_assert!(decoded == data, "decoded body differs"),
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        }
    }
    Ok(())
}

/// Damages a real stream: overwritten bytes, then a cut, then a tail.
fn check_damaged(
    data: &[u8],
    codings: &[Coding],
    flips: &[(Index, u8)],
    cut: Option<Index>,
    tail: &[u8],
    limits: &Limits,
) -> Result<(), TestCaseError> {
    let mut body = encode_all(codings, data);
    if !body.is_empty() {
        for (at, byte) in flips {
            let i = at.index(body.len());
            body[i] ^= byte;
        }
    }
    if let Some(cut) = cut {
        body.truncate(cut.index(body.len() + 1));
    }
    body.extend_from_slice(tail);
    let tokens: Vec<&str> = codings.iter().map(|c| c.token()).collect();
    check_arbitrary(&body, &tokens, false, limits)
}

/// 16 MiB of zeros in each coding, made once.
fn bombs() -> &'static [(Coding, Vec<u8>)] {
    static BOMBS: OnceLock<Vec<(Coding, Vec<u8>)>> = OnceLock::new();
    BOMBS.get_or_init(|| {
        let zeros = vec![0u8; 16 << 20];
        [
            Coding::Gzip,
            Coding::Zlib,
            Coding::RawDeflate,
            Coding::Brotli,
            Coding::Zstd,
        ]
        .into_iter()
        .map(|c| (c, c.encode(&zeros)))
        .collect()
    })
}

/// A bomb, possibly wrapped in more codings, against a cap far below its
/// size: refused as `TooLarge`, holding little more than the cap.
fn check_bomb(bomb: Index, outer: &[Coding], max_decoded_bytes: u64) -> Result<(), TestCaseError> {
    let (inner, compressed) = &bombs()[bomb.index(bombs().len())];
    let body = outer.iter().fold(compressed.clone(), |d, c| c.encode(&d));
    let tokens: Vec<&str> = std::iter::once(inner.token())
        .chain(outer.iter().map(|c| c.token()))
        .collect();
    let limits = Limits {
        max_decoded_bytes,
        max_ratio: u64::MAX,
        ..Limits::default()
    };
    let result = decode(
        &headers(&tokens, false, false),
        &body,
        &limits,
        OWN_DECODER_STATE,
    )?;
    prop_assert!(matches!(result, Err(Error::TooLarge)), "{result:?}");
    Ok(())
}

/// Codings lantern knows, some it does not, and noise.
fn tokens() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(
        prop::sample::select(vec![
            "gzip", "x-gzip", "deflate", "br", "zstd", "identity", "compress", "", "GZIP",
        ]),
        0..6,
    )
}

proptest! {
    #![proptest_config(common::proptest_config(128))]

    #[test]
    fn arbitrary_bytes_fail_or_decode_within_the_cap(
        body in prop::collection::vec(any::<u8>(), 0..1024),
        tokens in tokens(),
        split in any::<bool>(),
        limits in limits(),
    ) {
        check_arbitrary(&body, &tokens, split, &limits)?;
    }

    #[test]
    fn streams_round_trip_or_are_too_large(
        data in data(2048),
        codings in prop::collection::vec(coding(), 1..4),
        split in any::<bool>(),
        upper in any::<bool>(),
        limits in limits(),
    ) {
        check_round_trip(&data, &codings, split, upper, &limits)?;
    }

    #[test]
    fn damaged_streams_fail_or_decode_within_the_cap(
        data in data(2048),
        codings in prop::collection::vec(coding(), 1..3),
        flips in prop::collection::vec((any::<Index>(), 1u8..), 0..4),
        cut in prop::option::weighted(0.3, any::<Index>()),
        tail in prop::collection::vec(any::<u8>(), 0..4),
        limits in limits(),
    ) {
        check_damaged(&data, &codings, &flips, cut, &tail, &limits)?;
    }
}

proptest! {
    #![proptest_config(common::proptest_config(24))]

    #[test]
    fn bombs_are_refused_at_the_cap(
        bomb in any::<Index>(),
        outer in prop::collection::vec(coding(), 0..2),
        max in 1024u64..(1 << 20),
    ) {
        check_bomb(bomb, &outer, max)?;
    }
}

proptest! {
    #![proptest_config(common::proptest_config(20_000))]

    #[test]
    #[ignore = "fuzz profile (minutes): see README.md, Fuzzing"]
    fn fuzz_arbitrary_bytes(
        body in prop::collection::vec(any::<u8>(), 0..64 * 1024),
        tokens in tokens(),
        split in any::<bool>(),
        limits in limits(),
    ) {
        check_arbitrary(&body, &tokens, split, &limits)?;
    }

    #[test]
    #[ignore = "fuzz profile (minutes): see README.md, Fuzzing"]
    fn fuzz_round_trips(
        data in data(64 * 1024),
        codings in prop::collection::vec(coding(), 1..5),
        split in any::<bool>(),
        upper in any::<bool>(),
        limits in limits(),
    ) {
        check_round_trip(&data, &codings, split, upper, &limits)?;
    }

    #[test]
    #[ignore = "fuzz profile (minutes): see README.md, Fuzzing"]
    fn fuzz_damaged_streams(
        data in data(64 * 1024),
        codings in prop::collection::vec(coding(), 1..4),
        flips in prop::collection::vec((any::<Index>(), 1u8..), 0..16),
        cut in prop::option::weighted(0.3, any::<Index>()),
        tail in prop::collection::vec(any::<u8>(), 0..64),
        limits in limits(),
    ) {
        check_damaged(&data, &codings, &flips, cut, &tail, &limits)?;
    }

    #[test]
    #[ignore = "fuzz profile (minutes): see README.md, Fuzzing"]
    fn fuzz_bombs(
        bomb in any::<Index>(),
        outer in prop::collection::vec(coding(), 0..3),
        max in 1024u64..(4 << 20),
    ) {
        check_bomb(bomb, &outer, max)?;
    }
}
