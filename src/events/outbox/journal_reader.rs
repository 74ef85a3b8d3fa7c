//! The journal's reading side (see `events::journal`): what a segment is, and the two
//! positions in the front segment, `head` (oldest line not yet acknowledged) and `read` (next
//! line to hand out), with a lazily opened file and a one-line lookahead.
//!
//! Invariant: `head <= read`, both in the same (front) segment; lines in between are handed
//! out (in flight) or skipped as garbage (`garbage`, already counted as dropped).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;

use crate::events::journal::{io_err, JournalError};

/// One segment file as the journal knows it.
pub(crate) struct Segment {
    pub path: PathBuf,
    /// File size in bytes (exact unless a write failed and could not be undone).
    pub bytes: u64,
    /// Lines, torn or garbage ones included.
    pub lines: u64,
    /// Largest seq of a parseable line, if any.
    pub last_seq: Option<u64>,
    /// Only the segment this process appends to; at most one, always the last.
    pub writable: bool,
}

/// A position in the front segment: byte offset and line index, both from its start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Pos {
    offset: u64,
    line: u64,
}

#[derive(Default)]
pub(crate) struct FrontReader {
    head: Pos,
    read: Pos,
    /// Open at `read` (plus `lookahead`).
    file: Option<BufReader<File>>,
    /// A line read past `read` and given back.
    lookahead: Option<Vec<u8>>,
    /// Reached the end of a sealed segment.
    eof: bool,
    /// Garbage lines between `head` and `read`.
    garbage: u64,
}

impl FrontReader {
    /// Back to the start of a (new) front segment.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Lines handed out or skipped since the last `settle`.
    pub fn in_flight(&self) -> bool {
        self.head != self.read
    }

    /// Everything between `head` and `read` is done with: `head = read`.
    pub fn settle(&mut self) {
        self.head = self.read;
        self.garbage = 0;
    }

    pub fn note_garbage(&mut self) {
        self.garbage += 1;
    }

    /// Line number (from 1) of the line read last, for logs.
    pub fn line_number(&self) -> u64 {
        self.read.line
    }

    /// Lines of the front segment that need no more delivery: before `head`, or garbage.
    pub fn behind(&self) -> u64 {
        self.head.line + self.garbage
    }

    /// Nothing more to read in `front` right now.
    pub fn at_end(&self, front: &Segment) -> bool {
        self.lookahead.is_none()
            && if front.writable {
                self.read.offset >= front.bytes
            } else {
                self.eof
            }
    }

    /// `front` is sealed and `head` is past its last line: it can be deleted.
    pub fn finished(&self, front: &Segment) -> bool {
        !front.writable && self.eof && self.lookahead.is_none() && !self.in_flight()
    }

    /// Forget the open file (after a read error); the next read reopens at `read`.
    pub fn close_file(&mut self) {
        self.file = None;
    }

    /// The next raw line of `front` (newline kept if present), or None at its end.
    pub fn next_line(&mut self, front: &Segment) -> Result<Option<Vec<u8>>, JournalError> {
        if let Some(line) = self.lookahead.take() {
            self.read.offset += line.len() as u64;
            self.read.line += 1;
            return Ok(Some(line));
        }
        // The writable tail holds whole lines up to `bytes`; never read past what we wrote.
        if front.writable && self.read.offset >= front.bytes {
            return Ok(None);
        }
        if self.file.is_none() {
            let mut file = File::open(&front.path).map_err(io_err("open", &front.path))?;
            file.seek(SeekFrom::Start(self.read.offset))
                .map_err(io_err("seek", &front.path))?;
            self.file = Some(BufReader::with_capacity(64 * 1024, file));
        }
        let file = self.file.as_mut().expect("opened above");
        let mut line = Vec::new();
        let n = file
            .read_until(b'\n', &mut line)
            .map_err(io_err("read", &front.path))?;
        if n == 0 {
            self.eof = !front.writable;
            return Ok(None);
        }
        self.read.offset += n as u64;
        self.read.line += 1;
        Ok(Some(line))
    }

    /// Give back the line just read; the next `next_line` returns it again.
    pub fn unread(&mut self, line: Vec<u8>) {
        self.read.offset -= line.len() as u64;
        self.read.line -= 1;
        self.lookahead = Some(line);
    }
}
