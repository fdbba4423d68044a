//! `lantern scan`: runs the detection engine over a file or stdin.
//!
//! Inputs of any size are scanned in bounded memory: the input is read in
//! chunks, and each scan sees the new chunk plus some bytes of the previous
//! one (left context) and holds back a tail (overlap) for the next, so a value
//! cut by a chunk boundary is found whole, with offsets relative to its
//! document, and reported once. With `--lines`, every line is its own
//! document (numbered from 1, like lines); otherwise the whole input is
//! document 1.
//!
//! Output, text: one `NAME:LINE:COL: SEVERITY DETECTOR PREVIEW` line per
//! finding (grep-like). JSON: one object per document,
//! `{"doc": N, "findings": [{"detector", "start", "end", "severity", "preview"}]}`.
//! Only masked previews are printed, never a matched value.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use anyhow::{anyhow, Context};

use crate::detect::{Engine, Finding, MAX_SPAN};

/// Output format of `lantern scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScanFormat {
    #[default]
    Text,
    Json,
}

/// Options of `lantern scan`.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// File to scan; `None` or `-` reads stdin.
    pub input: Option<PathBuf>,
    pub format: ScanFormat,
    /// Every input line is its own document.
    pub lines: bool,
    /// Rule directory instead of the bundled packs.
    pub rules: Option<PathBuf>,
}

/// Runs the scan. `Ok(true)` when anything was found (exit 1), `Ok(false)`
/// when clean (exit 0); errors (unreadable input, bad rules) map to exit 2.
pub fn run(opts: &ScanOptions, out: &mut dyn Write) -> anyhow::Result<bool> {
    let engine = match &opts.rules {
        Some(dir) => Engine::from_dir(dir),
        None => Engine::bundled(),
    }
    .map_err(|errors| {
        anyhow!(errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"))
    })?;
    let (name, reader): (String, Box<dyn Read>) = match &opts.input {
        Some(path) if path.as_os_str() != "-" => {
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            (path.display().to_string(), Box::new(file))
        }
        _ => ("<stdin>".to_string(), Box::new(io::stdin().lock())),
    };
    let mut printer = Printer {
        out,
        format: opts.format,
        name: &name,
        lines: opts.lines,
        in_doc: 0,
        first: true,
    };
    let found = scan_reader(
        &engine,
        reader,
        opts.lines,
        Limits::default(),
        &mut |event| printer.event(event),
    )
    .with_context(|| format!("scanning {name}"))?;
    out_flush(printer.out)?;
    Ok(found > 0)
}

fn out_flush(out: &mut dyn Write) -> io::Result<()> {
    out.flush()
}

/// Memory bounds of a streaming scan.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of new input per engine scan.
    pub chunk: usize,
    /// Tail held back for the next scan; must exceed the longest finding.
    pub overlap: usize,
    /// Bytes before the new input kept for look-behind and context words.
    pub left: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            chunk: 1 << 20,
            overlap: 2 * MAX_SPAN,
            left: MAX_SPAN + 4096,
        }
    }
}

/// What a streaming scan reports, in input order.
#[derive(Debug)]
pub enum Event<'a> {
    DocStart(u64),
    /// A finding with offsets relative to its document, and its 1-based
    /// line and column (byte) in that document.
    Finding {
        doc: u64,
        finding: &'a Finding,
        line: u64,
        col: u64,
    },
    DocEnd(u64),
}

/// Scans `reader` document by document in bounded memory; returns the
/// number of findings.
pub fn scan_reader(
    engine: &Engine,
    mut reader: impl Read,
    lines: bool,
    limits: Limits,
    emit: &mut dyn FnMut(Event<'_>) -> io::Result<()>,
) -> io::Result<u64> {
    let limits = Limits {
        overlap: limits.overlap.max(MAX_SPAN + 1),
        chunk: limits.chunk.max(1),
        left: limits.left,
    };
    let mut doc = Doc::new(1);
    let mut total = 0;
    let mut block = vec![0u8; 64 * 1024];
    let mut started = false;
    loop {
        let n = match reader.read(&mut block) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut data = &block[..n];
        while !data.is_empty() {
            if !started {
                emit(Event::DocStart(doc.number))?;
                started = true;
            }
            let newline = if lines {
                data.iter().position(|b| *b == b'\n')
            } else {
                None
            };
            let (part, rest, ends_doc) = match newline {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &data[data.len()..], false),
            };
            total += doc.feed(engine, part, limits, emit)?;
            if ends_doc {
                total += doc.finish(engine, limits, emit)?;
                emit(Event::DocEnd(doc.number))?;
                doc = Doc::new(doc.number + 1);
                started = false;
            }
            data = rest;
        }
    }
    if !started && !lines {
        emit(Event::DocStart(doc.number))?;
        started = true;
    }
    if started {
        total += doc.finish(engine, limits, emit)?;
        emit(Event::DocEnd(doc.number))?;
    }
    Ok(total)
}

/// One document being streamed through the engine.
struct Doc {
    number: u64,
    buf: Vec<u8>,
    /// Document offset of `buf[0]`.
    base: usize,
    /// Findings starting before this document offset have been reported.
    committed: usize,
    /// Newlines before `base`, and the document offset where `base`'s line starts.
    lines_before: u64,
    line_start: usize,
}

impl Doc {
    fn new(number: u64) -> Doc {
        Doc {
            number,
            buf: Vec::new(),
            base: 0,
            committed: 0,
            lines_before: 0,
            line_start: 0,
        }
    }

    fn feed(
        &mut self,
        engine: &Engine,
        data: &[u8],
        limits: Limits,
        emit: &mut dyn FnMut(Event<'_>) -> io::Result<()>,
    ) -> io::Result<u64> {
        let mut found = 0;
        let mut data = data;
        while !data.is_empty() {
            let room = (limits.left + limits.chunk + limits.overlap)
                .saturating_sub(self.buf.len())
                .max(1);
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() >= limits.left + limits.chunk + limits.overlap {
                found += self.process(engine, false, limits, emit)?;
            }
        }
        Ok(found)
    }

    fn finish(
        &mut self,
        engine: &Engine,
        limits: Limits,
        emit: &mut dyn FnMut(Event<'_>) -> io::Result<()>,
    ) -> io::Result<u64> {
        self.process(engine, true, limits, emit)
    }

    /// Scans the buffer, reports findings that start in the settled part
    /// (everything but the held-back overlap, unless `last`), then drops what
    /// the next scan no longer needs.
    fn process(
        &mut self,
        engine: &Engine,
        last: bool,
        limits: Limits,
        emit: &mut dyn FnMut(Event<'_>) -> io::Result<()>,
    ) -> io::Result<u64> {
        let cutoff = if last {
            self.buf.len()
        } else {
            self.buf.len().saturating_sub(limits.overlap)
        };
        let mut found = 0;
        for mut f in engine.scan(&self.buf) {
            let start = self.base + f.start;
            if start < self.committed || f.start >= cutoff {
                continue;
            }
            let before = &self.buf[..f.start];
            let newlines = before.iter().filter(|b| **b == b'\n').count() as u64;
            let line_start = match before.iter().rposition(|b| *b == b'\n') {
                Some(i) => self.base + i + 1,
                None => self.line_start,
            };
            f.start += self.base;
            f.end += self.base;
            emit(Event::Finding {
                doc: self.number,
                line: self.lines_before + newlines + 1,
                col: (f.start - line_start) as u64 + 1,
                finding: &f,
            })?;
            found += 1;
        }
        self.committed = self.base + cutoff;
        let drop = if last {
            self.buf.len()
        } else {
            cutoff.saturating_sub(limits.left)
        };
        let dropped = &self.buf[..drop];
        self.lines_before += dropped.iter().filter(|b| **b == b'\n').count() as u64;
        if let Some(i) = dropped.iter().rposition(|b| *b == b'\n') {
            self.line_start = self.base + i + 1;
        }
        self.buf.drain(..drop);
        self.base += drop;
        Ok(found)
    }
}

/// Writes events as text or JSON.
struct Printer<'a> {
    out: &'a mut dyn Write,
    format: ScanFormat,
    name: &'a str,
    lines: bool,
    in_doc: u64,
    first: bool,
}

impl Printer<'_> {
    fn event(&mut self, event: Event<'_>) -> io::Result<()> {
        match (self.format, event) {
            (ScanFormat::Json, Event::DocStart(doc)) => {
                self.in_doc = doc;
                self.first = true;
                write!(self.out, "{{\"doc\":{doc},\"findings\":[")
            }
            (ScanFormat::Json, Event::Finding { finding, .. }) => {
                if !std::mem::take(&mut self.first) {
                    self.out.write_all(b",")?;
                }
                serde_json::to_writer(&mut *self.out, finding).map_err(io::Error::other)
            }
            (ScanFormat::Json, Event::DocEnd(_)) => self.out.write_all(b"]}\n"),
            (
                ScanFormat::Text,
                Event::Finding {
                    doc,
                    finding,
                    line,
                    col,
                },
            ) => {
                let line = if self.lines { doc } else { line };
                writeln!(
                    self.out,
                    "{}:{line}:{col}: {} {} {}",
                    self.name, finding.severity, finding.detector, finding.preview
                )
            }
            (ScanFormat::Text, _) => Ok(()),
        }
    }
}
