//! Masked previews: enough of a value for a person to recognise which one
//! was found, never enough to use it.

/// How a rule's values are previewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskStyle {
    /// Keep a few characters at each end: `AKIA************MPLE`.
    Ends,
    /// `j***@e***.com`.
    Email,
    /// Every character masked, length kept (capped).
    Full,
    /// Shown as is: for values that are labels, not secrets (`CONFIDENTIAL`).
    None,
}

impl MaskStyle {
    pub fn parse(s: &str) -> Option<MaskStyle> {
        Some(match s {
            "ends" => MaskStyle::Ends,
            "email" => MaskStyle::Email,
            "full" => MaskStyle::Full,
            "none" => MaskStyle::None,
            _ => return None,
        })
    }
}

/// Longest run of `*` in a preview; longer values are shortened.
const MAX_STARS: usize = 16;
/// Longest unmasked preview (for `MaskStyle::None`).
const MAX_PLAIN: usize = 64;

/// Masks `value` for display.
pub fn preview(value: &[u8], style: MaskStyle) -> String {
    let text = String::from_utf8_lossy(value);
    let chars: Vec<char> = text.chars().filter(|c| !c.is_control()).collect();
    match style {
        MaskStyle::None => chars.iter().take(MAX_PLAIN).collect(),
        MaskStyle::Full => "*".repeat(chars.len().clamp(1, MAX_STARS)),
        MaskStyle::Ends => ends(&chars),
        MaskStyle::Email => email(&chars),
    }
}

fn stars(n: usize) -> String {
    "*".repeat(n.clamp(1, MAX_STARS))
}

/// Shows at most a quarter of the value: 4+4 characters from 16 up,
/// 2+2 from 10, 1+1 from 6, nothing below.
fn ends(chars: &[char]) -> String {
    let n = chars.len();
    let keep = match n {
        0..=5 => 0,
        6..=9 => 1,
        10..=15 => 2,
        _ => 4,
    };
    let head: String = chars[..keep].iter().collect();
    let tail: String = chars[n - keep..].iter().collect();
    format!("{head}{}{tail}", stars(n - 2 * keep))
}

fn email(chars: &[char]) -> String {
    let Some(at) = chars.iter().position(|c| *c == '@') else {
        return ends(chars);
    };
    let (local, domain) = (&chars[..at], &chars[at + 1..]);
    let dot = domain
        .iter()
        .rposition(|c| *c == '.')
        .unwrap_or(domain.len());
    let first = |s: &[char]| s.first().map(|c| c.to_string()).unwrap_or_default();
    let tld: String = domain[dot..].iter().collect();
    format!("{}***@{}***{tld}", first(local), first(&domain[..dot]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_keeps_first_letters_and_tld() {
        assert_eq!(
            preview(b"john.doe@example.com", MaskStyle::Email),
            "j***@e***.com"
        );
    }

    #[test]
    fn ends_shows_at_most_a_quarter() {
        assert_eq!(
            preview(b"AKIAIOSFODNN7EXAMPLE", MaskStyle::Ends),
            "AKIA************MPLE"
        );
        assert_eq!(preview(b"hunter2!", MaskStyle::Ends), "h******!");
        assert_eq!(preview(b"abc", MaskStyle::Ends), "***");
        let long = vec![b'x'; 4000];
        assert_eq!(preview(&long, MaskStyle::Ends).len(), 4 + MAX_STARS + 4);
    }
}
