//! The journal's on-disk format (see `events::journal`): `<seq> <json>\n` lines, segment
//! files named by their first seq, the cursor file. Encoding, decoding and the few reads
//! `Journal::open` needs; the journal's state machine lives in `events::journal`.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::events::journal::{io_err, JournalError};
use crate::events::outgoing::OutgoingEvent;

pub(crate) const SEGMENT_EXT: &str = "jsonl";
pub(crate) const CURSOR: &str = "cursor";
pub(crate) const CURSOR_TMP: &str = "cursor.tmp";
pub(crate) const LOCK: &str = "lock";

/// Lines encoded for one `write` to the tail segment.
#[derive(Default)]
pub(crate) struct Chunk {
    pub buf: Vec<u8>,
    pub lines: u64,
    /// Seq of the last line pushed.
    pub last_seq: u64,
}

impl Chunk {
    pub fn push(&mut self, seq: u64, json: &[u8]) {
        // Writing into a Vec cannot fail.
        let _ = write!(self.buf, "{seq} ");
        self.buf.extend_from_slice(json);
        self.buf.push(b'\n');
        self.lines += 1;
        self.last_seq = seq;
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.lines = 0;
    }
}

/// Digits of `n` in decimal.
pub(crate) fn decimal_len(mut n: u64) -> u64 {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// The `<seq>` of a `<seq> <json>` line.
pub(crate) fn parse_seq(line: &[u8]) -> Option<u64> {
    split_seq(line).map(|(seq, _)| seq)
}

/// `(seq, json)` of a `<seq> <json>` line (the JSON with whatever follows it).
fn split_seq(line: &[u8]) -> Option<(u64, &[u8])> {
    let space = line.iter().take(21).position(|&b| b == b' ')?;
    let digits = &line[..space];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let seq = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((seq, &line[space + 1..]))
}

/// A whole line back to its event. A line without its newline (torn by a crash) is accepted
/// only if its JSON is complete, which a JSON object cannot be when cut short.
pub(crate) fn parse_line(line: &[u8]) -> Result<(u64, OutgoingEvent), &'static str> {
    let (seq, rest) = split_seq(line).ok_or("no sequence number")?;
    let json = rest.strip_suffix(b"\n").unwrap_or(rest);
    let event = OutgoingEvent::from_json(Bytes::copy_from_slice(json))
        .map_err(|_| "not a complete CloudEvents JSON object")?;
    Ok((seq, event))
}

/// `done_below` from the cursor file; 0 (replay everything) if missing or unreadable.
pub(crate) fn read_cursor(dir: &Path, sink: &'static str) -> Result<u64, JournalError> {
    let path = dir.join(CURSOR);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().parse().unwrap_or_else(|_| {
            tracing::warn!(sink, path = %path.display(),
                "journal cursor unreadable: replaying every journaled event");
            0
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err("read", &path)(e)),
    }
}

/// `(first seq, path)` of every segment file, oldest first.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let path = entry.map_err(io_err("list", dir))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(SEGMENT_EXT) {
            continue;
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if let Ok(first_seq) = stem.parse::<u64>() {
            found.push((first_seq, path));
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// What a segment file holds, read once at open.
pub(crate) struct Scanned {
    pub bytes: u64,
    /// Lines, a final one without newline included.
    pub lines: u64,
    /// Largest seq of a line that has one.
    pub last_seq: Option<u64>,
}

pub(crate) fn scan_segment(path: &Path) -> Result<Scanned, JournalError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut seg = Scanned {
        bytes: 0,
        lines: 0,
        last_seq: None,
    };
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        seg.bytes += n as u64;
        seg.lines += 1;
        if let Some(seq) = parse_seq(&line) {
            seg.last_seq = Some(seg.last_seq.map_or(seq, |last| last.max(seq)));
        }
    }
    Ok(seg)
}

/// Replace the cursor file by rename, so it is always whole; `sync` makes it durable.
pub(crate) fn write_cursor(dir: &Path, done_below: u64, sync: bool) -> Result<(), JournalError> {
    let tmp = dir.join(CURSOR_TMP);
    let mut file = File::create(&tmp).map_err(io_err("create", &tmp))?;
    file.write_all(format!("{done_below}\n").as_bytes())
        .map_err(io_err("write", &tmp))?;
    if sync {
        file.sync_all().map_err(io_err("fsync", &tmp))?;
    }
    let cursor = dir.join(CURSOR);
    fs::rename(&tmp, &cursor).map_err(io_err("rename", &cursor))
}

pub(crate) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.{SEGMENT_EXT}"))
}
