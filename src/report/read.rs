//! Streaming audit files line by line: plain or gzip'd (sniffed from the
//! magic bytes, so `audit.jsonl.1` and `audit.jsonl.2.gz` both work), one
//! bounded line buffer at a time whatever the file size.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Longest line accepted; a longer one is skipped as malformed (audit
/// lines are a few hundred bytes).
pub const MAX_LINE: usize = 1 << 20;

/// The fields of an audit event the report reads. Unknown fields are
/// ignored, so newer writers stay readable; `groups` is optional.
#[derive(Debug, Deserialize)]
pub struct Record {
    pub ts: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub client_ip: Option<String>,
    pub app: String,
    #[serde(default)]
    pub vendor: String,
    #[serde(default)]
    pub sanctioned: bool,
    pub decision: String,
    #[serde(default)]
    pub findings: Vec<RecordFinding>,
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    #[serde(default)]
    pub req_bytes: u64,
}

/// One `findings[]` entry.
#[derive(Debug, Deserialize)]
pub struct RecordFinding {
    pub detector: String,
    #[serde(default)]
    pub severity: String,
    #[serde(default = "one")]
    pub count: u64,
}

fn one() -> u64 {
    1
}

/// A parsed line: the record and its time.
pub struct Parsed {
    pub record: Record,
    pub ts: OffsetDateTime,
}

/// What one line of a file turned out to be.
pub enum Line {
    Event(Box<Parsed>),
    /// Blank line: ignored silently.
    Blank,
    /// Not an event; the message says why (without echoing the line).
    Malformed(String),
}

/// Parses one line.
pub fn parse(line: &[u8]) -> Line {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Line::Blank;
    }
    let record: Record = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => return Line::Malformed(format!("not an audit event: {e}")),
    };
    match OffsetDateTime::parse(&record.ts, &Rfc3339) {
        Ok(ts) => Line::Event(Box::new(Parsed { record, ts })),
        Err(e) => Line::Malformed(format!("ts is not RFC 3339: {e}")),
    }
}

/// Opens a file for line reading, decompressing when it starts with the
/// gzip magic bytes.
pub fn open(path: &Path) -> io::Result<Box<dyn BufRead>> {
    let mut file = BufReader::with_capacity(64 * 1024, File::open(path)?);
    let gzip = file.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(BufReader::with_capacity(
            64 * 1024,
            MultiGzDecoder::new(file),
        ))
    } else {
        Box::new(file)
    })
}

/// Reads lines of at most [`MAX_LINE`] bytes into one reused buffer.
pub struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    /// 1-based number of the line last returned.
    pub number: u64,
}

/// One step of [`Lines`].
pub enum Next<'a> {
    Line(&'a [u8]),
    TooLong,
    End,
}

impl<R: BufRead> Lines<R> {
    pub fn new(reader: R) -> Lines<R> {
        Lines {
            reader,
            buf: Vec::with_capacity(1024),
            number: 0,
        }
    }

    /// The next line without its terminator.
    pub fn next_line(&mut self) -> io::Result<Next<'_>> {
        self.buf.clear();
        let limit = MAX_LINE as u64 + 1;
        let n = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(Next::End);
        }
        self.number += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
        } else if self.buf.len() > MAX_LINE {
            skip_line(&mut self.reader)?;
            return Ok(Next::TooLong);
        }
        Ok(Next::Line(&self.buf))
    }
}

/// Discards input up to and including the next newline.
fn skip_line(reader: &mut impl BufRead) -> io::Result<()> {
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(());
        }
        match available.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let len = available.len();
                reader.consume(len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<Option<Vec<u8>>> {
        let mut lines = Lines::new(input);
        let mut out = Vec::new();
        loop {
            match lines.next_line().unwrap() {
                Next::Line(l) => out.push(Some(l.to_vec())),
                Next::TooLong => out.push(None),
                Next::End => return out,
            }
        }
    }

    #[test]
    fn splits_lines_with_and_without_final_newline() {
        assert_eq!(
            lines(b"a\r\nb\n\nc"),
            [
                Some(b"a".to_vec()),
                Some(b"b".to_vec()),
                Some(vec![]),
                Some(b"c".to_vec())
            ]
        );
    }

    #[test]
    fn an_overlong_line_is_skipped_and_the_next_one_read() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\nnext\n");
        assert_eq!(lines(&input), [None, Some(b"next".to_vec())]);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_kept() {
        let mut input = vec![b'x'; MAX_LINE];
        input.push(b'\n');
        assert_eq!(lines(&input).len(), 1);
        assert!(lines(&input)[0].is_some());
    }

    #[test]
    fn malformed_lines_say_why() {
        assert!(matches!(parse(b"  "), Line::Blank));
        assert!(matches!(parse(b"{"), Line::Malformed(_)));
        let bad_ts = br#"{"ts":"yesterday","app":"a","decision":"log"}"#;
        match parse(bad_ts) {
            Line::Malformed(m) => assert!(m.contains("RFC 3339"), "{m}"),
            _ => panic!("accepted a bad ts"),
        }
        let ok = br#"{"ts":"2025-01-02T03:04:05Z","app":"a","decision":"log","groups":null}"#;
        assert!(matches!(parse(ok), Line::Event(_)));
    }
}
