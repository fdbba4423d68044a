//! The HTML a person sees: the coaching page, and the acknowledgement form.
//! Self-contained (inline CSS), accessible (landmarks, labels, contrast),
//! every dynamic string escaped.

use crate::inspect::Decision;

use super::Notice;

/// Escapes text for HTML element content, quoted attribute values and SVG
/// (XML); control characters other than newline and tab become U+FFFD.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2430}\
main{overflow-wrap:anywhere;max-width:40rem;margin:3rem auto;background:#fff;border-radius:12px;padding:2rem 2.5rem;box-shadow:0 2px 12px #0002}\
h1{font-size:1.4rem;margin-top:0}.tag{display:inline-block;padding:.1rem .6rem;border-radius:999px;font-size:.85rem;font-weight:600}\
.block{background:#fde2e1;color:#8a1c17}.coach{background:#fff1d6;color:#7a4b00}.ok{background:#dff5e3;color:#1d5e2a}\
ul{padding-left:1.2rem}code{background:#eef0f3;padding:.05rem .3rem;border-radius:4px}\
a.button,button{display:inline-block;background:#2454c5;color:#fff;border:0;border-radius:8px;padding:.6rem 1.1rem;font-size:1rem;text-decoration:none;cursor:pointer}\
textarea{width:100%;min-height:6rem;font:inherit;box-sizing:border-box}small{color:#5a6472}";

fn document(title: &str, brand: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{title}</title><style>{STYLE}</style></head><body><main role=\"main\">{body}\
<p><small>{brand} · AI data protection</small></p></main></body></html>",
        title = escape(title),
        brand = escape(brand),
    )
}

fn detector_list(detectors: &[(String, u32)]) -> String {
    if detectors.is_empty() {
        return String::new();
    }
    let items: String = detectors
        .iter()
        .map(|(d, n)| format!("<li><code>{}</code> × {n}</li>", escape(d)))
        .collect();
    format!("<p>What was found (names only, never the values):</p><ul>{items}</ul>")
}

/// The page a browser navigation gets on block or coach.
pub fn coaching_page(decision: Decision, notice: &Notice<'_>) -> String {
    let (tag, heading) = match decision {
        Decision::Block => ("block", format!("This was not sent to {}", notice.app)),
        _ => (
            "coach",
            format!("Check before you send this to {}", notice.app),
        ),
    };
    let ack = notice.ack_link.map_or(String::new(), |link| {
        format!(
            "<p>If you need to send it, tell us why and then try again:</p><p><a class=\"button\" href=\"{}\">Give a reason and continue</a></p>",
            escape(link)
        )
    });
    let help = notice.help_url.map_or(String::new(), |url| {
        format!(
            "<p><a href=\"{}\">Questions? Get help.</a></p>",
            escape(url)
        )
    });
    let body = format!(
        "<span class=\"tag {tag}\">{decision}</span><h1>{heading}</h1><p>{message}</p>{detectors}{ack}{help}<p><small>Incident <code>{incident}</code></small></p>",
        decision = decision.as_str(),
        heading = escape(&heading),
        message = escape(&notice.message),
        detectors = detector_list(notice.detectors),
        incident = escape(notice.incident),
    );
    document(&heading, notice.brand, &body)
}

/// The acknowledgement form behind an `/ack/<token>` link.
pub fn ack_form_page(
    brand: &str,
    app: &str,
    detectors: &[(String, u32)],
    incident: &str,
) -> String {
    let body = format!(
        "<span class=\"tag coach\">coach</span><h1>Continue with {app}?</h1>{detectors}\
<form method=\"post\"><p><label for=\"justification\">Why do you need to send this? Your answer is recorded.</label></p>\
<p><textarea id=\"justification\" name=\"justification\" required maxlength=\"1000\"></textarea></p>\
<p><button type=\"submit\">Continue</button></p></form><p><small>Incident <code>{incident}</code></small></p>",
        app = escape(app),
        detectors = detector_list(detectors),
        incident = escape(incident),
    );
    document("Continue?", brand, &body)
}

/// Shown after a justification was recorded.
pub fn ack_done_page(brand: &str, app: &str, hours: u64) -> String {
    let body = format!(
        "<span class=\"tag ok\">recorded</span><h1>Thank you</h1><p>You can retry your request to {} now. \
This applies for the next {hours} hour(s).</p>",
        escape(app)
    );
    document("Recorded", brand, &body)
}
