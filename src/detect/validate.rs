//! Validators: cheap checks that confirm a regex match really is what the
//! detector claims (a checksum, a number range, enough randomness).
//!
//! Each validator is a pure function of the matched value. They are named in
//! rule files under `validate:`, either bare (`- luhn`) or with a parameter
//! (`- entropy: 3.5`, `- length: {min: 20, max: 40}`).

use std::net::{Ipv4Addr, Ipv6Addr};

/// One check applied to a candidate value.
#[derive(Debug, Clone, PartialEq)]
pub enum Validator {
    /// Luhn checksum over the digits (payment cards).
    Luhn,
    /// Payment card: 13-19 digits, known brand prefix, Luhn, consistent separators.
    Card,
    /// IBAN: known country, its length, mod-97 == 1.
    IbanMod97,
    /// US SSN: area not 000/666/9xx, group not 00, serial not 0000, no known ad numbers.
    UsSsn,
    /// UK National Insurance number prefix rules.
    UkNino,
    /// An IPv4 or IPv6 address that is worth reporting (not 0.0.0.0, not a netmask).
    Ip,
    /// A phone number: 8-15 digits, not one repeated digit.
    Phone,
    /// An email address whose "TLD" is not a file extension (`icon@2x.png`).
    Email,
    /// A JWT: header decodes to JSON with an `alg`.
    Jwt,
    /// A password-looking value, not a variable reference or a prose word.
    Password,
    /// Shannon entropy in bits per byte at least this.
    Entropy(f64),
    /// Length in bytes within bounds.
    Length { min: usize, max: usize },
    /// Contains at least one ASCII digit.
    HasDigit,
    /// Contains at least one ASCII letter.
    HasLetter,
    /// Not a placeholder (`YOUR_API_KEY`, `xxxx`, `<token>`, `${VAR}`, `EXAMPLE`).
    NotPlaceholder,
    /// Not a UUID (common in logs, rarely a secret by itself).
    NotUuid,
}

/// Names accepted in rule files, for error messages.
pub const NAMES: &[&str] = &[
    "luhn",
    "card",
    "iban_mod97",
    "us_ssn",
    "uk_nino",
    "ip",
    "phone",
    "email",
    "jwt",
    "password",
    "entropy",
    "length",
    "has_digit",
    "has_letter",
    "not_placeholder",
    "not_uuid",
];

impl Validator {
    /// A validator without parameter, by name.
    pub fn bare(name: &str) -> Option<Validator> {
        Some(match name {
            "luhn" => Validator::Luhn,
            "card" => Validator::Card,
            "iban_mod97" | "iban" => Validator::IbanMod97,
            "us_ssn" => Validator::UsSsn,
            "uk_nino" => Validator::UkNino,
            "ip" => Validator::Ip,
            "phone" => Validator::Phone,
            "email" => Validator::Email,
            "jwt" => Validator::Jwt,
            "password" => Validator::Password,
            "has_digit" => Validator::HasDigit,
            "has_letter" => Validator::HasLetter,
            "not_placeholder" => Validator::NotPlaceholder,
            "not_uuid" => Validator::NotUuid,
            _ => return None,
        })
    }

    /// Whether `value` passes this check.
    pub fn check(&self, value: &[u8]) -> bool {
        match self {
            Validator::Luhn => luhn(value),
            Validator::Card => card(value),
            Validator::IbanMod97 => iban(value),
            Validator::UsSsn => us_ssn(value),
            Validator::UkNino => uk_nino(value),
            Validator::Ip => ip(value),
            Validator::Phone => phone(value),
            Validator::Email => email(value),
            Validator::Jwt => jwt(value),
            Validator::Password => password(value),
            Validator::Entropy(min) => entropy(value) >= *min,
            Validator::Length { min, max } => (*min..=*max).contains(&value.len()),
            Validator::HasDigit => value.iter().any(u8::is_ascii_digit),
            Validator::HasLetter => value.iter().any(u8::is_ascii_alphabetic),
            Validator::NotPlaceholder => !is_placeholder(value),
            Validator::NotUuid => !is_uuid(value),
        }
    }
}

fn digits(value: &[u8]) -> impl Iterator<Item = u8> + Clone + '_ {
    value
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| b - b'0')
}

/// Luhn (mod 10) checksum over the digits of `value`, ignoring separators.
pub fn luhn(value: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut count = 0;
    let from_right = value.iter().rev().filter(|b| b.is_ascii_digit());
    for (i, d) in from_right.map(|b| b - b'0').enumerate() {
        let mut d = u32::from(d);
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        count += 1;
    }
    count >= 2 && sum.is_multiple_of(10)
}

fn card(value: &[u8]) -> bool {
    if !(13..=19).contains(&digits(value).count()) || !luhn(value) {
        return false;
    }
    let ds: Vec<u8> = digits(value).collect();
    // One separator kind at most, and never doubled.
    let seps: Vec<u8> = value
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_digit())
        .collect();
    if seps.windows(2).any(|w| w[0] != w[1])
        || value
            .windows(2)
            .any(|w| !w[0].is_ascii_digit() && !w[1].is_ascii_digit())
    {
        return false;
    }
    if ds.iter().all(|&d| d == ds[0]) {
        return false;
    }
    let prefix = |n: usize| ds[..n].iter().fold(0u32, |acc, &d| acc * 10 + u32::from(d));
    let len = ds.len();
    match ds[0] {
        4 => matches!(len, 13 | 16 | 19), // Visa
        5 => {
            (51..=55).contains(&prefix(2)) && len == 16
                || prefix(2) == 50
                || (56..=59).contains(&prefix(2))
        } // Mastercard, Maestro
        2 => (2221..=2720).contains(&prefix(4)) && len == 16, // Mastercard 2-series
        3 => {
            let p2 = prefix(2);
            (p2 == 34 || p2 == 37) && len == 15                             // Amex
                || (3528..=3589).contains(&prefix(4)) && len >= 16          // JCB
                || ((300..=305).contains(&prefix(3)) || p2 == 36 || p2 == 38) && (14..=19).contains(&len)
            // Diners
        }
        6 => {
            prefix(4) == 6011 || prefix(2) == 65 || (644..=649).contains(&prefix(3)) // Discover
                || prefix(2) == 62                                          // UnionPay
                || prefix(2) == 63 || prefix(2) == 67 // Maestro
        }
        _ => false,
    }
}

/// IBAN lengths by country (SWIFT IBAN registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BI", 27),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DJ", 27),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FK", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HN", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MN", 20),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NI", 28),
    ("NL", 18),
    ("NO", 15),
    ("OM", 23),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("RU", 33),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("SO", 23),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
    ("YE", 30),
];

/// Length of an IBAN for `country`, if it is an IBAN country.
pub fn iban_length(country: &str) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(c, _)| *c == country)
        .map(|(_, l)| *l)
}

fn iban(value: &[u8]) -> bool {
    let compact: Vec<u8> = value.iter().copied().filter(|b| *b != b' ').collect();
    if compact.len() < 15 || !compact.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let country = std::str::from_utf8(&compact[..2]).unwrap_or("");
    if iban_length(country) != Some(compact.len()) {
        return false;
    }
    let mut rem = 0u32;
    for &b in compact[4..].iter().chain(&compact[..4]) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn us_ssn(value: &[u8]) -> bool {
    let ds: Vec<u32> = digits(value).map(u32::from).collect();
    if ds.len() != 9 {
        return false;
    }
    let area = ds[0] * 100 + ds[1] * 10 + ds[2];
    let group = ds[3] * 10 + ds[4];
    let serial = ds[5] * 1000 + ds[6] * 100 + ds[7] * 10 + ds[8];
    let whole: u32 = ds.iter().fold(0, |a, d| a * 10 + d);
    // 078-05-1120 (the Woolworth wallet card) and 219-09-9999 (an SSA ad).
    area != 0
        && area != 666
        && area < 900
        && group != 0
        && serial != 0
        && whole != 78_051_120
        && whole != 219_099_999
        && whole != 123_456_789
}

fn uk_nino(value: &[u8]) -> bool {
    let compact: Vec<u8> = value.iter().copied().filter(|b| *b != b' ').collect();
    if compact.len() != 9 {
        return false;
    }
    let prefix = &compact[..2];
    !matches!(
        prefix,
        b"BG" | b"GB" | b"KN" | b"NK" | b"NT" | b"TN" | b"ZZ"
    )
}

fn ip(value: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(value) else {
        return false;
    };
    if let Ok(v4) = s.parse::<Ipv4Addr>() {
        let o = v4.octets();
        let is_mask = {
            let n = u32::from(v4);
            n != 0 && (!n).wrapping_add(1) & !n == 0 && n.leading_ones() + n.trailing_zeros() == 32
        };
        return !v4.is_unspecified() && !v4.is_broadcast() && !is_mask && o[0] != 0;
    }
    let s = s.split('%').next().unwrap_or(s);
    match s.parse::<Ipv6Addr>() {
        // Require some substance: `::` and `::1`-style shorthands are rarely data.
        Ok(v6) => {
            !v6.is_unspecified()
                && s.bytes().filter(|b| *b == b':').count() >= 2
                && v6.segments().iter().filter(|s| **s != 0).count() >= 2
        }
        Err(_) => false,
    }
}

fn phone(value: &[u8]) -> bool {
    let ds: Vec<u8> = digits(value).collect();
    // `+1 2024-01-15`: a date after a stray plus sign.
    let has_date = value.windows(10).any(|w| {
        w.iter().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                *b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
    });
    // `+1 3.14159 10`: a decimal fraction, not a group of a phone number.
    let has_fraction = value
        .windows(6)
        .any(|w| w[0] == b'.' && w[1..].iter().all(u8::is_ascii_digit));
    (8..=15).contains(&ds.len()) && !ds.iter().all(|&d| d == ds[0]) && !has_date && !has_fraction
}

const FILE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "css", "js", "ts", "tsx", "jsx",
    "json", "yaml", "yml", "py", "rs", "go", "md", "txt", "html", "htm", "xml", "lock", "java",
    "rb", "php",
];

fn email(value: &[u8]) -> bool {
    let Some(at) = value.iter().position(|b| *b == b'@') else {
        return false;
    };
    let (local, domain) = (&value[..at], &value[at + 1..]);
    let tld = domain.rsplit(|b| *b == b'.').next().unwrap_or(b"");
    let tld = String::from_utf8_lossy(tld).to_ascii_lowercase();
    !local.is_empty()
        && local != b"git"
        && !FILE_EXTENSIONS.contains(&tld.as_str())
        && !domain
            .split(|b| *b == b'.')
            .any(|label| label.is_empty() || label.starts_with(b"-") || label.ends_with(b"-"))
}

/// Decodes unpadded base64url; `None` on a bad character.
fn base64url_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in s {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn jwt(value: &[u8]) -> bool {
    let header = value.split(|b| *b == b'.').next().unwrap_or(b"");
    base64url_decode(header)
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .is_some_and(|h| h.get("alg").is_some())
}

const PLACEHOLDER_WORDS: &[&str] = &[
    "example",
    "your_",
    "your-",
    "yourapi",
    "replace",
    "placeholder",
    "changeme",
    "change_me",
    "dummy",
    "sample",
    "redacted",
    "xxxx",
    "****",
    "....",
    "<",
    ">",
    "${",
    "{{",
    "%s",
    "abcdefgh",
    "12345678",
    "insert",
    "here",
];

/// `YOUR_API_KEY`, `sk-xxxxxxxx`, `<token>`, `${SECRET}`, `AKIA...EXAMPLE`, long single-character runs.
pub fn is_placeholder(value: &[u8]) -> bool {
    let has = |word: &str| {
        value
            .windows(word.len())
            .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
    };
    if PLACEHOLDER_WORDS.iter().any(|w| has(w)) {
        return true;
    }
    // Six or more of the same character in a row: 000000, aaaaaa.
    value.windows(6).any(|w| w.iter().all(|b| *b == w[0]))
}

fn is_uuid(value: &[u8]) -> bool {
    value.len() == 36
        && value.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Shannon entropy of `value` in bits per byte.
pub fn entropy(value: &[u8]) -> f64 {
    if value.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in value {
        counts[usize::from(b)] += 1;
    }
    let n = value.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

const PASSWORD_WORDS: &[&str] = &[
    "password",
    "passwd",
    "null",
    "none",
    "true",
    "false",
    "required",
    "optional",
    "string",
    "empty",
    "secret",
    "hidden",
    "undefined",
    "should",
    "must",
    "needs",
    "which",
    "field",
    "value",
];

fn password(value: &[u8]) -> bool {
    if value.len() < 6 || is_placeholder(value) {
        return false;
    }
    let lower = String::from_utf8_lossy(value).to_ascii_lowercase();
    if PASSWORD_WORDS.iter().any(|w| lower == *w)
        || lower.starts_with('$')
        || lower.starts_with('%')
    {
        return false;
    }
    // `os.environ`, `settings.DB_PASSWORD`, `config.password`: code, not a value.
    let ident_path = value
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.')
        && value.contains(&b'.')
        && !value.ends_with(b".")
        && value.first().is_some_and(|b| b.is_ascii_alphabetic());
    if ident_path && value.iter().filter(|b| b.is_ascii_digit()).count() == 0 {
        return false;
    }
    let classes = [
        value.iter().any(u8::is_ascii_lowercase),
        value.iter().any(u8::is_ascii_uppercase),
        value.iter().any(u8::is_ascii_digit),
        value.iter().any(|b| !b.is_ascii_alphanumeric()),
    ];
    classes.iter().filter(|c| **c).count() >= 2 || value.len() >= 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_cards_and_rejects_typos() {
        assert!(luhn(b"4111 1111 1111 1111"));
        assert!(!luhn(b"4111 1111 1111 1112"));
        assert!(card(b"5555-5555-5555-4444"));
        assert!(card(b"378282246310005"));
        assert!(!card(b"4111 1111-1111 1111"));
        assert!(!card(b"1234567812345670")); // Luhn-valid, no brand
    }

    #[test]
    fn iban_checks_country_length_and_mod97() {
        assert!(iban(b"DE89 3704 0044 0532 0130 00"));
        assert!(iban(b"GB82WEST12345698765432"));
        assert!(!iban(b"GB82WEST12345698765433"));
        assert!(!iban(b"XX82WEST12345698765432"));
        assert!(!iban(b"DE89 3704 0044 0532 0130"));
    }

    #[test]
    fn ssn_ranges() {
        assert!(us_ssn(b"536-22-1234"));
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "536-00-1234",
            "536-22-0000",
            "078-05-1120",
        ] {
            assert!(!us_ssn(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn ip_rejects_masks_and_unspecified() {
        assert!(ip(b"10.20.30.40"));
        assert!(ip(b"2001:db8:85a3::8a2e:370:7334"));
        assert!(!ip(b"255.255.255.0"));
        assert!(!ip(b"0.0.0.0"));
        assert!(!ip(b"12:30:45"));
        assert!(!ip(b"::1"));
    }

    #[test]
    fn phone_is_not_a_date() {
        assert!(phone(b"+44 20 7946 0958"));
        assert!(!phone(b"+1 2024-01-15"));
        assert!(!phone(b"+1 3.14159 10"));
    }

    #[test]
    fn entropy_of_random_and_repeated() {
        assert!(entropy(b"aaaaaaaa") < 0.01);
        assert!(entropy(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq9Lk3") > 4.0);
    }

    #[test]
    fn placeholders() {
        for p in [
            "YOUR_API_KEY",
            "sk-xxxxxxxxxxxxxxxx",
            "<token>",
            "${SECRET}",
            "AKIAIOSFODNN7EXAMPLE",
            "000000000000",
        ] {
            assert!(is_placeholder(p.as_bytes()), "{p}");
        }
        assert!(!is_placeholder(b"q8Zt2LmW9xKc4RvB"));
    }

    #[test]
    fn password_shapes() {
        assert!(password(b"hunter2!"));
        assert!(password(b"S3cr3tPass"));
        assert!(!password(b"must"));
        assert!(!password(b"os.environ"));
        assert!(!password(b"${DB_PASSWORD}"));
        assert!(!password(b"required"));
    }

    #[test]
    fn jwt_header_must_be_json_with_alg() {
        assert!(jwt(b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc"));
        assert!(!jwt(b"eyJub3QiOiJqd3QifQ.eyJzdWIiOiIxIn0.abc"));
    }
}
