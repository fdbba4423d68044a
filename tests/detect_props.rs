//! Property tests: the engine never panics, reports spans inside the input
//! and on character boundaries, in order and without overlap, and is
//! deterministic.

mod common;

use std::sync::OnceLock;

use lantern::detect::Engine;
use proptest::prelude::*;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::bundled().expect("bundled rules compile"))
}

/// Bytes biased towards what the rules look for.
fn near_misses() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"@".to_vec()),
        Just(b"AKIA".to_vec()),
        Just(b"sk-".to_vec()),
        Just(b"eyJ".to_vec()),
        Just(b"password=".to_vec()),
        Just(b"://u:".to_vec()),
        Just(b"-----BEGIN RSA PRIVATE KEY-----\n".to_vec()),
        Just("é".as_bytes().to_vec()),
        Just(b" ".to_vec()),
        "[0-9 .:-]{1,12}".prop_map(String::into_bytes),
        "[A-Za-z0-9+/=_]{1,24}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

fn check(input: &[u8]) {
    let findings = engine().scan(input);
    let text = std::str::from_utf8(input).ok();
    let mut last_end = 0;
    for f in &findings {
        assert!(
            f.start < f.end && f.end <= input.len(),
            "span out of bounds"
        );
        assert!(f.start >= last_end, "findings overlap or are unordered");
        last_end = f.end;
        if let Some(text) = text {
            assert!(
                text.is_char_boundary(f.start) && text.is_char_boundary(f.end),
                "span not on char boundaries"
            );
        }
    }
    assert_eq!(findings, engine().scan(input), "scan is not deterministic");
}

proptest! {
    #![proptest_config(common::proptest_config(256))]

    #[test]
    fn arbitrary_bytes(input in prop::collection::vec(any::<u8>(), 0..2048)) {
        check(&input);
    }

    #[test]
    fn arbitrary_text(input in "\\PC{0,400}") {
        check(input.as_bytes());
    }

    #[test]
    fn near_miss_soup(input in near_misses()) {
        check(&input);
    }
}

proptest! {
    #![proptest_config(common::proptest_config(128))]

    /// Windows around candidates find what running every regex over the
    /// whole input finds.
    #[test]
    fn windowed_scan_equals_naive_scan(input in near_misses()) {
        let windowed = engine().scan(&input);
        let naive = engine().scan_naive(&input);
        prop_assert_eq!(windowed.len(), naive.len());
        for (a, b) in windowed.iter().zip(&naive) {
            prop_assert_eq!((&a.detector, a.start, a.end), (&b.detector, b.start, b.end));
        }
    }
}
