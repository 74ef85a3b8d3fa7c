//! Which sessions are live, kept on disk, so that after a crash each one is ended in the event
//! stream (`asr.session.ended`, cause `gateway_restart`) and no consumer waits forever.
//!
//! The file `<outbox.journal_dir>/live-sessions` is a log of `+ <session id> <call id>` and
//! `- <session id>` lines, appended as sessions start and end (no fsync: a killed process
//! loses nothing, a power cut may lose the last lines). It is rewritten from the live set once
//! it grows past `COMPACT_BYTES`, and emptied at startup once the orphans have been read.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const FILE_NAME: &str = "live-sessions";
/// Rewrite the log from the live set when it has grown by this much.
const COMPACT_BYTES: u64 = 1 << 20;
/// A log longer than this at startup is read only this far (it cannot be ours).
const READ_LIMIT: u64 = 64 << 20;

/// A session that was live when the previous process stopped without ending it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub session_id: String,
    pub call_id: String,
}

#[derive(Debug)]
struct State {
    file: File,
    live: HashMap<String, String>,
    written: u64,
}

/// The live-session log of one gateway process.
#[derive(Debug)]
pub struct LiveSessions {
    path: PathBuf,
    state: Mutex<State>,
}

impl LiveSessions {
    /// Read what the previous process left live, then start an empty log.
    pub fn open(dir: &Path) -> io::Result<(Self, Vec<Orphan>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let orphans = match File::open(&path) {
            Ok(file) => read_orphans(file)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let file = File::create(&path)?;
        let state = State {
            file,
            live: HashMap::new(),
            written: 0,
        };
        Ok((
            Self {
                path,
                state: Mutex::new(state),
            },
            orphans,
        ))
    }

    pub fn started(&self, session_id: &str, call_id: &str) {
        let mut state = self.lock();
        state.live.insert(session_id.to_owned(), call_id.to_owned());
        let line = format!("+ {session_id} {call_id}\n");
        self.append(&mut state, &line);
    }

    pub fn ended(&self, session_id: &str) {
        let mut state = self.lock();
        if state.live.remove(session_id).is_none() {
            return;
        }
        let line = format!("- {session_id}\n");
        self.append(&mut state, &line);
        if state.written >= COMPACT_BYTES {
            if let Err(err) = self.compact(&mut state) {
                tracing::warn!(path = %self.path.display(), error = %err, "cannot compact the live-session log");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn append(&self, state: &mut State, line: &str) {
        match state.file.write_all(line.as_bytes()) {
            Ok(()) => state.written += line.len() as u64,
            Err(err) => {
                tracing::warn!(path = %self.path.display(), error = %err, "cannot write the live-session log")
            }
        }
    }

    /// Replace the log with one `+` line per live session.
    fn compact(&self, state: &mut State) -> io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut out = File::create(&tmp)?;
        let mut written = 0;
        for (session, call) in &state.live {
            let line = format!("+ {session} {call}\n");
            out.write_all(line.as_bytes())?;
            written += line.len() as u64;
        }
        std::fs::rename(&tmp, &self.path)?;
        state.file = OpenOptions::new().append(true).open(&self.path)?;
        state.written = written;
        Ok(())
    }
}

/// Sessions started and not ended, in start order. Lines that do not parse are skipped.
fn read_orphans(file: File) -> io::Result<Vec<Orphan>> {
    use std::io::{BufRead, BufReader, Read};
    let mut order: Vec<String> = Vec::new();
    let mut live: HashMap<String, String> = HashMap::new();
    for line in BufReader::new(file.take(READ_LIMIT)).lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => continue,
            Err(e) => return Err(e),
        };
        let mut words = line.split(' ');
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("+"), Some(session), Some(call), None)
                if safe(session)
                    && safe(call)
                    && live.insert(session.to_owned(), call.to_owned()).is_none() =>
            {
                order.push(session.to_owned());
            }
            (Some("-"), Some(session), None, None) => {
                live.remove(session);
            }
            _ => {}
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|session_id| {
            let call_id = live.remove(&session_id)?;
            Some(Orphan {
                session_id,
                call_id,
            })
        })
        .collect())
}

fn safe(id: &str) -> bool {
    crate::ids::is_safe_id(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("asrgw-live-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn sessions_left_live_by_a_dead_process_are_found_once() {
        let d = dir("orphans");
        let (live, orphans) = LiveSessions::open(&d).unwrap();
        assert!(orphans.is_empty());
        live.started("s1", "call-1");
        live.started("s2", "call-2");
        live.started("s3", "call-3");
        live.ended("s2");
        drop(live); // as if killed: nothing more is written
        let (live, orphans) = LiveSessions::open(&d).unwrap();
        let ids: Vec<_> = orphans
            .iter()
            .map(|o| (o.session_id.as_str(), o.call_id.as_str()))
            .collect();
        assert_eq!(ids, [("s1", "call-1"), ("s3", "call-3")]);
        drop(live);
        let (_, again) = LiveSessions::open(&d).unwrap();
        assert!(again.is_empty(), "reported once, not at every start");
    }

    #[test]
    fn garbage_lines_are_skipped_and_compaction_keeps_the_live_set() {
        let d = dir("compact");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join(FILE_NAME),
            b"+ a b\n+ bad id here\n\xff\xfe\n+ c d\n- a\n+ e/../x y\n",
        )
        .unwrap();
        let (live, orphans) = LiveSessions::open(&d).unwrap();
        assert_eq!(
            orphans,
            [Orphan {
                session_id: "c".into(),
                call_id: "d".into()
            }]
        );
        live.started("keep", "call");
        for i in 0..40_000 {
            let id = format!("s{i}");
            live.started(&id, "c");
            live.ended(&id);
        }
        let size = std::fs::metadata(d.join(FILE_NAME)).unwrap().len();
        assert!(size < COMPACT_BYTES + 1024, "log compacted: {size} bytes");
        drop(live);
        let (_, orphans) = LiveSessions::open(&d).unwrap();
        assert_eq!(
            orphans,
            [Orphan {
                session_id: "keep".into(),
                call_id: "call".into()
            }]
        );
    }
}
