//! Append-only on-disk journal of outgoing events, one directory per sink, in segments.
//!
//! Directory `<journal_dir>/<sink>/`:
//! - `<first seq, 20 digits>.jsonl`: segments, oldest first by name. Each line is
//!   `<seq> <CloudEvents JSON>\n`, the JSON byte for byte as `OutgoingEvent::json`. `seq` is
//!   the outbox's sequence number: strictly increasing through the whole journal, across
//!   segments and restarts, so order is the file order and "delivered" is one number.
//! - `cursor`: decimal `done_below`: every seq below it was delivered (or dropped). Replaced by
//!   rename from `cursor.tmp`; a stale or lost cursor only causes redelivery, never loss.
//! - `lock`: an advisory lock (flock) held while one outbox owns the directory.
//!
//! Invariants: only the last segment is ever appended to, and only by the process that created
//! it (a restart always starts a new segment), so a torn line can only be the last line of a
//! segment. `head` (oldest undelivered line) and `read` (next line to hand out) both lie in the
//! front segment, `head <= read`; a segment is deleted once `head` passed its end. Lines that
//! do not parse are skipped with a warning and counted in `SinkMetrics::dropped` and `skipped`.
//! Everything here is blocking file IO: callers run it off the async threads or keep it short.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::events::outbox::journal_format::{self as format, Chunk};
use crate::events::outbox::journal_reader::{FrontReader, Segment};
use crate::events::outgoing::OutgoingEvent;
use crate::metrics::SinkMetrics;

/// Upper bound of a segment's size in bytes (a segment may exceed it by one line).
/// Segments are also at most 1/16 of the journal bound, so dropping the oldest segment at the
/// bound removes a small slice of the journal, not most of it.
const SEGMENT_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Warn for the first this many skipped lines, then once per `SKIP_LOG_EVERY`.
const SKIP_LOG_FIRST: u64 = 10;
const SKIP_LOG_EVERY: u64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{dir} is in use by another outbox (lock held)")]
    Locked { dir: PathBuf },
    #[error("journal {dir} is closed")]
    Closed { dir: PathBuf },
}

impl JournalError {
    /// As an `io::Error` that keeps this error (and its message) as its inner error.
    pub fn into_io(self) -> io::Error {
        let kind = match &self {
            JournalError::Io { source, .. } => source.kind(),
            JournalError::Locked { .. } => io::ErrorKind::WouldBlock,
            JournalError::Closed { .. } => io::ErrorKind::BrokenPipe,
        };
        io::Error::new(kind, self)
    }
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// What `append` did with a run of events, which it takes strictly in order.
#[derive(Debug, Default)]
pub struct Appended {
    /// Leading events the journal took care of: written, or dropped and counted.
    pub taken: usize,
    /// Of those, events written.
    pub written: usize,
    /// Why it stopped before the end, if it did; the events after `taken` were not touched.
    pub error: Option<JournalError>,
}

/// Files to fsync, taken out of the journal so the (slow) syncing runs without its lock.
#[derive(Debug, Default)]
pub struct SyncWork {
    files: Vec<File>,
    dir: Option<PathBuf>,
}

impl SyncWork {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dir.is_none()
    }

    /// fsync the sealed segments, then the directory (new and deleted names).
    pub fn run(self) -> Result<(), JournalError> {
        let mut first_err = None;
        for file in &self.files {
            if let Err(source) = file.sync_all() {
                first_err.get_or_insert(JournalError::Io {
                    op: "fsync segment in",
                    path: self.dir.clone().unwrap_or_default(),
                    source,
                });
            }
        }
        if let Some(dir) = &self.dir {
            if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
                first_err.get_or_insert(io_err("fsync", dir)(e));
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

pub struct Journal {
    dir: PathBuf,
    sink: &'static str,
    metrics: Arc<SinkMetrics>,
    max_bytes: u64,
    segment_max: u64,
    segments: VecDeque<Segment>,
    /// Append handle of the last segment while it is `writable`.
    writer: Option<File>,
    /// `head` and `read` in the front segment.
    front: FrontReader,
    done_below: u64,
    next_seq: u64,
    total_bytes: u64,
    total_lines: u64,
    skipped: u64,
    cursor_on_disk: Option<u64>,
    unsynced: Vec<File>,
    dir_dirty: bool,
    lock: Option<File>,
    closed: bool,
}

impl Journal {
    /// Open (creating) `dir`, take its lock, read the cursor and index the segments. The first
    /// undelivered line is positioned for reading; nothing is delivered or changed yet except
    /// that empty segments and fully delivered ones are removed.
    pub fn open(
        dir: PathBuf,
        max_bytes: u64,
        sink: &'static str,
        metrics: Arc<SinkMetrics>,
    ) -> Result<Self, JournalError> {
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        let lock_path = dir.join(format::LOCK);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io_err("create", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(JournalError::Locked { dir }),
            Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &lock_path)(e)),
        }
        let done_below = format::read_cursor(&dir, sink)?;
        let mut segments = VecDeque::new();
        let mut next_seq = done_below;
        let (mut total_bytes, mut total_lines) = (0, 0);
        for (first_seq, path) in format::list_segments(&dir)? {
            let scanned = format::scan_segment(&path)?;
            let seg = Segment {
                path,
                bytes: scanned.bytes,
                lines: scanned.lines,
                last_seq: scanned.last_seq,
                writable: false,
            };
            if seg.bytes == 0 {
                let _ = fs::remove_file(&seg.path);
                continue;
            }
            next_seq = next_seq.max(first_seq + 1);
            if let Some(last) = seg.last_seq {
                next_seq = next_seq.max(last + 1);
            }
            total_bytes += seg.bytes;
            total_lines += seg.lines;
            segments.push_back(seg);
        }
        let mut journal = Self {
            dir,
            sink,
            metrics,
            max_bytes: max_bytes.max(1),
            segment_max: (max_bytes / 16).clamp(1, SEGMENT_MAX_BYTES),
            segments,
            writer: None,
            front: FrontReader::default(),
            done_below,
            next_seq,
            total_bytes,
            total_lines,
            skipped: 0,
            cursor_on_disk: Some(done_below),
            unsynced: Vec::new(),
            dir_dirty: false,
            lock: Some(lock),
            closed: false,
        };
        journal.consume_below(done_below);
        Ok(journal)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The next sequence number; every later call returns a larger one.
    pub fn alloc_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Every seq below this was delivered or dropped.
    pub fn done_below(&self) -> u64 {
        self.done_below
    }

    /// Lines not yet delivered (events, plus garbage lines not reached yet).
    pub fn pending(&self) -> u64 {
        self.total_lines.saturating_sub(self.front.behind())
    }

    pub fn bytes(&self) -> u64 {
        self.total_bytes
    }

    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    /// Garbage or torn lines skipped since open.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Nothing left to read (lines may still await `ack`). Cheap: no IO.
    pub fn is_drained(&self) -> bool {
        match (self.segments.len(), self.segments.front()) {
            (1, Some(front)) => self.front.at_end(front),
            (n, _) => n == 0,
        }
    }

    /// Append events (seqs increasing, above everything journaled) in as few writes as the
    /// segment size allows. Makes room at the size bound by dropping the oldest segments;
    /// an event larger than the whole bound, or whose JSON has a newline, is dropped itself.
    pub fn append<'a>(
        &mut self,
        events: impl IntoIterator<Item = (u64, &'a OutgoingEvent)>,
    ) -> Appended {
        let mut out = Appended::default();
        if self.closed {
            out.error = Some(JournalError::Closed {
                dir: self.dir.clone(),
            });
            return out;
        }
        let mut chunk = Chunk::default();
        let mut lost_oldest = 0;
        for (seq, event) in events {
            let line_len = format::decimal_len(seq) + 1 + event.json.len() as u64 + 1;
            let has_newline = event.json.contains(&b'\n');
            if has_newline || line_len > self.max_bytes {
                if let Err(e) = self.flush(&mut chunk, &mut out) {
                    out.error = Some(e);
                    break;
                }
                self.metrics.dropped.inc();
                out.taken += 1;
                tracing::error!(sink = self.sink, event_id = %event.id, bytes = line_len,
                    journal_max_bytes = self.max_bytes, has_newline,
                    "event cannot be journaled (larger than the journal bound, or not one line): dropped");
                continue;
            }
            if let Err(e) = self.make_room(line_len, &mut chunk, &mut out, &mut lost_oldest) {
                out.error = Some(e);
                break;
            }
            let tail_full = self.segments.back().is_some_and(|tail| {
                let used = tail.bytes + chunk.buf.len() as u64;
                tail.writable && used > 0 && used + line_len > self.segment_max
            });
            if tail_full {
                if let Err(e) = self.flush(&mut chunk, &mut out) {
                    out.error = Some(e);
                    break;
                }
                self.seal_tail();
            }
            if self.writer.is_none() {
                if let Err(e) = self.create_segment(seq) {
                    out.error = Some(e);
                    break;
                }
            }
            chunk.push(seq, &event.json);
        }
        if out.error.is_none() {
            if let Err(e) = self.flush(&mut chunk, &mut out) {
                out.error = Some(e);
            }
        }
        if lost_oldest > 0 {
            tracing::error!(sink = self.sink, dropped = lost_oldest, journal_max_bytes = self.max_bytes,
                dir = %self.dir.display(), "journal size bound reached: oldest events dropped");
        }
        out
    }

    /// Drop the oldest segments until `line_len` more bytes (after `chunk`) fit the bound.
    fn make_room(
        &mut self,
        line_len: u64,
        chunk: &mut Chunk,
        out: &mut Appended,
        lost: &mut u64,
    ) -> Result<(), JournalError> {
        while self.total_bytes + chunk.buf.len() as u64 + line_len > self.max_bytes {
            self.flush(chunk, out)?;
            if self.segments.is_empty() {
                break;
            }
            if self.segments.len() == 1 {
                self.seal_tail();
            }
            *lost += self.drop_front();
        }
        Ok(())
    }

    fn flush(&mut self, chunk: &mut Chunk, out: &mut Appended) -> Result<(), JournalError> {
        if chunk.lines == 0 {
            return Ok(());
        }
        let (Some(writer), Some(tail)) = (self.writer.as_mut(), self.segments.back_mut()) else {
            unreachable!("a chunk is only filled after a writable tail exists");
        };
        let len = chunk.buf.len() as u64;
        match writer.write_all(&chunk.buf) {
            Ok(()) => {
                tail.bytes += len;
                tail.lines += chunk.lines;
                tail.last_seq = Some(chunk.last_seq);
                self.total_bytes += len;
                self.total_lines += chunk.lines;
                out.taken += chunk.lines as usize;
                out.written += chunk.lines as usize;
                chunk.clear();
                Ok(())
            }
            Err(source) => {
                // Keep whole lines only: cut a partial write off, else account what is there
                // (the reader then skips the torn tail). The segment is sealed either way.
                if writer.set_len(tail.bytes).is_err() {
                    let actual = writer.metadata().map_or(tail.bytes + len, |m| m.len());
                    self.total_bytes += actual.saturating_sub(tail.bytes);
                    tail.bytes = actual.max(tail.bytes);
                }
                let err = io_err("write", &tail.path)(source);
                chunk.clear();
                self.seal_tail();
                Err(err)
            }
        }
    }

    fn create_segment(&mut self, first_seq: u64) -> Result<(), JournalError> {
        let path = format::segment_path(&self.dir, first_seq);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err("create", &path))?;
        if self.segments.is_empty() {
            self.front.reset();
        }
        self.segments.push_back(Segment {
            path,
            bytes: 0,
            lines: 0,
            last_seq: None,
            writable: true,
        });
        self.writer = Some(file);
        self.dir_dirty = true;
        Ok(())
    }

    /// Stop appending to the last segment; it is fsynced with the next `SyncWork`.
    fn seal_tail(&mut self) {
        if let Some(file) = self.writer.take() {
            self.unsynced.push(file);
        }
        if let Some(tail) = self.segments.back_mut() {
            tail.writable = false;
        }
    }

    /// Delete the front segment with whatever it still held; returns the events lost.
    fn drop_front(&mut self) -> u64 {
        let Some(seg) = self.segments.pop_front() else {
            return 0;
        };
        let lost = seg.lines.saturating_sub(self.front.behind());
        if seg.writable {
            self.writer = None;
        }
        self.remove_segment_file(&seg);
        if let Some(last) = seg.last_seq {
            self.done_below = self.done_below.max(last + 1);
        }
        self.front.reset();
        self.metrics.dropped.add(lost);
        lost
    }

    fn remove_segment_file(&mut self, seg: &Segment) {
        if let Err(e) = fs::remove_file(&seg.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(sink = self.sink, path = %seg.path.display(), error = %e,
                    "cannot delete journal segment");
            }
        }
        self.total_bytes = self.total_bytes.saturating_sub(seg.bytes);
        self.total_lines = self.total_lines.saturating_sub(seg.lines);
        self.dir_dirty = true;
    }

    /// Delete front segments that are sealed and completely behind `head`. True if any.
    fn gc(&mut self) -> bool {
        let mut removed = false;
        while let Some(front) = self.segments.front() {
            if !self.front.finished(front) {
                break;
            }
            if let Some(seg) = self.segments.pop_front() {
                self.remove_segment_file(&seg);
            }
            self.front.reset();
            removed = true;
        }
        removed
    }

    /// The next raw line of the front segment (newline kept if present), or None at its end.
    fn next_line(&mut self) -> Result<Option<Vec<u8>>, JournalError> {
        match self.segments.front() {
            Some(front) => self.front.next_line(front),
            None => Ok(None),
        }
    }

    /// The front segment cannot be read: give up on what it still holds (counted, logged).
    fn lose_front(&mut self, err: &JournalError) {
        self.front.settle();
        let lost = self.drop_front();
        tracing::error!(sink = self.sink, error = %err, dropped = lost,
            "journal segment unreadable: its remaining events dropped");
    }

    fn skip_garbage(&mut self, line: &[u8], why: &'static str) {
        self.skipped += 1;
        self.front.note_garbage();
        self.metrics.dropped.inc();
        if self.skipped <= SKIP_LOG_FIRST || self.skipped.is_multiple_of(SKIP_LOG_EVERY) {
            let path = self.segments.front().map(|s| s.path.display().to_string());
            tracing::warn!(
                sink = self.sink,
                segment = path.unwrap_or_default(),
                line = self.front.line_number(),
                why,
                torn = !line.ends_with(b"\n"),
                skipped_total = self.skipped,
                "journal line skipped"
            );
        }
    }

    /// Up to `max` undelivered events in order, from the front segment only (a batch never
    /// spans segments). Empty only when the journal is drained. Must not be called while
    /// events it returned earlier are still unacknowledged.
    pub fn read_batch(&mut self, max: usize) -> Vec<(u64, OutgoingEvent)> {
        self.front.settle();
        let mut out = Vec::with_capacity(max.min(1024));
        while out.len() < max {
            let line = match self.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => {
                    if out.is_empty() {
                        self.front.settle();
                        if self.gc() {
                            continue;
                        }
                    }
                    break;
                }
                Err(e) => {
                    if out.is_empty() {
                        self.lose_front(&e);
                        continue;
                    }
                    self.front.close_file();
                    break;
                }
            };
            match format::parse_line(&line) {
                Ok((seq, _)) if seq < self.done_below => {}
                Ok((seq, event)) => out.push((seq, event)),
                Err(why) => self.skip_garbage(&line, why),
            }
        }
        out
    }

    /// Every seq up to `upto` was delivered: advance past those lines, delete finished
    /// segments, record progress in the cursor file.
    pub fn ack(&mut self, upto: u64) {
        self.done_below = self.done_below.max(upto + 1);
        if self.consume_below(self.done_below) {
            if let Err(e) = self.write_cursor(false) {
                tracing::warn!(sink = self.sink, error = %e, "cannot record journal progress");
            }
        }
    }

    /// Move `head` and `read` past every line with seq below `limit` (and garbage among
    /// them). True if `head` moved.
    fn consume_below(&mut self, limit: u64) -> bool {
        // Lines handed out by `read_batch` lie between `head` and `read` already.
        let mut changed = self.front.in_flight();
        loop {
            match self.next_line() {
                Ok(Some(line)) => match format::parse_seq(&line) {
                    Some(seq) if seq >= limit => {
                        self.front.unread(line);
                        break;
                    }
                    Some(_) => changed = true,
                    None => {
                        self.skip_garbage(&line, "no sequence number");
                        changed = true;
                    }
                },
                Ok(None) => {
                    self.front.settle();
                    if !self.gc() {
                        break;
                    }
                    changed = true;
                }
                Err(e) => {
                    self.lose_front(&e);
                    changed = true;
                }
            }
        }
        self.front.settle();
        changed
    }

    fn write_cursor(&mut self, sync: bool) -> Result<(), JournalError> {
        if self.cursor_on_disk == Some(self.done_below) && !sync {
            return Ok(());
        }
        format::write_cursor(&self.dir, self.done_below, sync)?;
        self.cursor_on_disk = Some(self.done_below);
        Ok(())
    }

    /// Sealed segments (and the directory, if names changed) waiting for fsync.
    pub fn take_sync_work(&mut self) -> SyncWork {
        let dir = std::mem::take(&mut self.dir_dirty).then(|| self.dir.clone());
        SyncWork {
            files: std::mem::take(&mut self.unsynced),
            dir,
        }
    }

    pub fn has_sync_work(&self) -> bool {
        !self.unsynced.is_empty() || self.dir_dirty
    }

    /// Seal, fsync everything, record progress durably, release the lock. Later appends fail.
    pub fn close(&mut self) -> Result<(), JournalError> {
        self.seal_tail();
        self.dir_dirty = true;
        let synced = self.write_cursor(true);
        let work = self.take_sync_work();
        let flushed = work.run();
        self.lock = None;
        self.closed = true;
        synced.and(flushed)
    }
}
