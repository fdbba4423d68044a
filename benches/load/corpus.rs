//! What the harness sends: OpenAI chat-completions bodies of exact sizes,
//! clean or carrying a credential the bundled rules and the mitmproxy addon
//! both catch, and the bulk payload.

/// Chat body sizes measured; the upstream refuses any other.
pub const SIZES: [usize; 2] = [1024, 64 * 1024];

/// A real-looking AWS access key id (not one of AWS's documented
/// examples, which the bundled rule allows): the policy blocks it.
pub const SECRET: &str = "AKIAQYLPMN5HHHFPZAM2";
/// Where the secret sits: at the end of the last user message, so both
/// inspectors read the whole body before they find it.
const SECRET_LINE: &str = " It fails with aws_access_key_id = AKIAQYLPMN5HHHFPZAM2";

/// What the upstream answers to every good chat post.
pub const ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}"#;

/// Bulk transfers go in frames of this size.
pub const BULK_CHUNK: usize = 64 * 1024;
/// Bulk payload size unless `LOAD_BULK_MIB` says otherwise.
const DEFAULT_BULK_MIB: usize = 64;

/// Prose with no credential, personal data or classification marker in it.
const PROSE: [&str; 8] = [
    "Summarise the quarterly report in three bullet points. ",
    "Our team shipped the new onboarding flow and cut setup time by a third. ",
    "Churn went down slightly while support tickets about billing went up. ",
    "Please rewrite the paragraph below so it reads more clearly for managers. ",
    "The roadmap for next quarter focuses on search, exports and reliability. ",
    "Keep the tone friendly and avoid jargon where a plain word will do. ",
    "List the open risks and suggest one mitigation for each of them. ",
    "Compare the two proposals and explain which one is cheaper to run. ",
];

/// True when `body` carries the planted secret.
pub fn has_secret(body: &[u8]) -> bool {
    memchr::memmem::find(body, SECRET.as_bytes()).is_some()
}

/// A chat-completions body of exactly `size` bytes: a system message,
/// history turns (user and assistant, ~2 KiB each) while they fit, then a
/// last user message padded to the size, ending in the secret if `secret`.
pub fn chat_body(size: usize, secret: bool) -> Vec<u8> {
    const HEAD: &str = r#"{"model":"gpt-4o-mini","stream":false,"messages":[{"role":"system","content":"You are a concise assistant for a product team."}"#;
    const LAST: &str = r#",{"role":"user","content":""#;
    const TAIL: &str = r#""}]}"#;
    const TURN: usize = 2048;
    let mut body = String::from(HEAD);
    let mut turn = 0;
    while body.len() + TURN + LAST.len() + 512 + TAIL.len() <= size {
        let role = if turn % 2 == 0 { "user" } else { "assistant" };
        let open = format!(r#",{{"role":"{role}","content":""#);
        let room = TURN - open.len() - 2;
        body.push_str(&open);
        body.push_str(&prose(turn, room));
        body.push_str(r#""}"#);
        turn += 1;
    }
    body.push_str(LAST);
    let ending = if secret { SECRET_LINE } else { "" };
    let room = size - body.len() - ending.len() - TAIL.len();
    body.push_str(&prose(turn, room));
    body.push_str(ending);
    body.push_str(TAIL);
    assert_eq!(body.len(), size, "chat body size");
    body.into_bytes()
}

/// `len` bytes of prose, starting at a sentence that depends on `seed`.
fn prose(seed: usize, len: usize) -> String {
    PROSE
        .iter()
        .cycle()
        .skip(seed % PROSE.len())
        .flat_map(|s| s.chars())
        .take(len)
        .collect()
}

/// Bytes per bulk transfer: `LOAD_BULK_MIB` MiB (default 64), whole chunks.
pub fn bulk_bytes() -> usize {
    let mib = std::env::var("LOAD_BULK_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&m| m > 0)
        .unwrap_or(DEFAULT_BULK_MIB);
    mib * 1024 * 1024
}

/// One bulk frame: incompressible-looking bytes (TLS does not compress, but
/// nothing here should look like a prompt either).
pub fn bulk_chunk() -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..BULK_CHUNK)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
