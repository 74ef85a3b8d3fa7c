//! The bench's view of the gateway's events (a child's stdout JSON lines): sessions
//! started and ended with their stream stats, partials, and finals timed against the
//! moment the speech in the clip ended.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::histogram::LatencyHistogram;
use super::streams::{self, Registry};

/// Where speech ends in the clip a stream loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipTiming {
    pub clip_ms: u64,
    /// End of the last speech in the clip, ms from its start; None if it has none.
    pub speech_end_ms: Option<u64>,
}

/// `stats` of `asr.session.ended`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, serde::Serialize)]
pub struct EndedStats {
    pub received: u64,
    pub lost: u64,
    pub late: u64,
    pub duplicate: u64,
    pub reordered: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FinalSeen {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
}

#[derive(Debug, Clone, Default)]
pub struct StreamEvents {
    pub started: bool,
    pub ended: Option<EndedStats>,
    pub partials: u64,
    pub finals: Vec<FinalSeen>,
    pub errors: Vec<String>,
    /// Speech end → final, ms, one per clip pass that had a final covering its end.
    pub final_latency_ms: Vec<f64>,
}

#[derive(Default)]
pub struct EventLog {
    streams: Mutex<HashMap<usize, StreamEvents>>,
    timing: Mutex<HashMap<usize, ClipTiming>>,
    /// (stream, clip pass) already timed.
    timed: Mutex<HashSet<(usize, u64)>>,
    /// (stream, clip pass) whose `asr.speech.ended` was already timed.
    endpointed: Mutex<HashSet<(usize, u64)>>,
    /// Speech end → final over all streams.
    pub final_latency: LatencyHistogram,
    /// Speech end → `asr.speech.ended` (the gateway's endpointing) over all streams.
    pub endpoint_latency: LatencyHistogram,
    /// Sum of utterance audio and of speech-end→final time, ms (real-time factor).
    pub utterance_audio_ms: AtomicU64,
    pub utterance_wait_ms: AtomicU64,
    pub sessions_ended: AtomicU64,
    /// Lines that were not event JSON.
    pub malformed: AtomicU64,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    subject: String,
    data: serde_json::Value,
}

impl EventLog {
    pub fn expect_stream(&self, index: usize, timing: ClipTiming) {
        lock(&self.timing).insert(index, timing);
    }

    /// Take one stdout line of the gateway, received at `received_us` (registry clock).
    pub fn handle_line(&self, line: &str, registry: &Registry, received_us: u64) {
        let Ok(event) = serde_json::from_str::<Envelope>(line) else {
            self.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(index) = streams::index_of(&event.subject) else {
            return;
        };
        let data = &event.data;
        let u = |key: &str| data[key].as_u64().unwrap_or(0);
        let mut all = lock(&self.streams);
        let stream = all.entry(index).or_default();
        match event.kind.as_str() {
            "asr.session.started" => stream.started = true,
            "asr.transcript.partial" => stream.partials += 1,
            "asr.transcript.final" => {
                let seen = FinalSeen {
                    start_ms: u("start_ms"),
                    end_ms: u("end_ms"),
                    text: data["text"].as_str().unwrap_or_default().to_owned(),
                };
                if let Some(ms) = self.time_final(index, &seen, registry, received_us) {
                    stream.final_latency_ms.push(ms);
                }
                stream.finals.push(seen);
            }
            "asr.speech.ended" => {
                self.time_speech_end(index, u("start_ms"), u("end_ms"), registry, received_us);
            }
            "asr.error" => stream
                .errors
                .push(data["message"].as_str().unwrap_or_default().to_owned()),
            "asr.session.ended" => {
                stream.ended =
                    Some(serde_json::from_value(data["stats"].clone()).unwrap_or_default());
                self.sessions_ended.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Speech end → this final, ms, when the final covers the end of speech of a clip pass
    /// not yet timed. The speech end is when the packet holding the clip's last speech left.
    fn time_final(
        &self,
        index: usize,
        seen: &FinalSeen,
        registry: &Registry,
        received_us: u64,
    ) -> Option<f64> {
        let timing = *lock(&self.timing).get(&index)?;
        let speech_end = timing.speech_end_ms?;
        let pass = pass_of(seen.end_ms, timing.clip_ms);
        let speech_end_abs = pass * timing.clip_ms + speech_end;
        // The final must reach (near) the end of the pass's speech, not an earlier phrase.
        if seen.end_ms + 300 < speech_end_abs || !lock(&self.timed).insert((index, pass)) {
            return None;
        }
        let packet = speech_end_abs.saturating_sub(1) / registry.ptime_ms;
        let sent = registry.stream(index).sent_at_us(packet)?;
        let wait_us = received_us.checked_sub(sent)?;
        self.final_latency.record_us(wait_us);
        let audio_ms = seen.end_ms.saturating_sub(seen.start_ms);
        self.utterance_audio_ms
            .fetch_add(audio_ms, Ordering::Relaxed);
        self.utterance_wait_ms
            .fetch_add(wait_us / 1000, Ordering::Relaxed);
        Some(wait_us as f64 / 1000.0)
    }

    /// Speech end → `asr.speech.ended`, when the utterance reaches the clip pass's end of
    /// speech. The pass is the one the utterance started in: its end may lie a hangover
    /// past the clip's end when the packets stopped.
    fn time_speech_end(
        &self,
        index: usize,
        start_ms: u64,
        end_ms: u64,
        registry: &Registry,
        received_us: u64,
    ) {
        let Some(timing) = lock(&self.timing).get(&index).copied() else {
            return;
        };
        let Some(speech_end) = timing.speech_end_ms else {
            return;
        };
        let pass = start_ms / timing.clip_ms.max(1);
        let speech_end_abs = pass * timing.clip_ms + speech_end;
        if end_ms < speech_end_abs || !lock(&self.endpointed).insert((index, pass)) {
            return;
        }
        let packet = speech_end_abs.saturating_sub(1) / registry.ptime_ms;
        let Some(sent) = registry.stream(index).sent_at_us(packet) else {
            return;
        };
        if let Some(wait_us) = received_us.checked_sub(sent) {
            self.endpoint_latency.record_us(wait_us);
        }
    }

    /// A copy of every stream's events so far.
    pub fn streams(&self) -> HashMap<usize, StreamEvents> {
        lock(&self.streams).clone()
    }

    pub fn ended(&self) -> u64 {
        self.sessions_ended.load(Ordering::Relaxed)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Read a child gateway's stdout into `log` until it closes.
pub fn spawn_reader(
    mut lines: super::gateway::EventLines,
    log: Arc<EventLog>,
    registry: Arc<Registry>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            log.handle_line(&line, &registry, registry.now_us());
        }
    })
}

/// A final ending this far into the next pass of a clip still belongs to the pass before:
/// an utterance cut by the clip's end ends a little after it (the resampler's tail and the
/// last partial frame, flushed when the stream stops or ends).
const PASS_TAIL_MS: u64 = 100;

/// Which pass of a looping clip (`clip_ms` long) a final ending at `end_ms` belongs to.
pub fn pass_of(end_ms: u64, clip_ms: u64) -> u64 {
    end_ms.saturating_sub(1 + PASS_TAIL_MS) / clip_ms.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kind: &str, call: &str, data: serde_json::Value) -> String {
        serde_json::json!({"specversion": "1.0", "type": kind, "subject": call, "data": data})
            .to_string()
    }

    #[test]
    fn finals_are_timed_once_per_pass_from_the_speech_end_packet() {
        let registry = Registry::new(20);
        let log = EventLog::default();
        log.expect_stream(
            2,
            ClipTiming {
                clip_ms: 2_000,
                speech_end_ms: Some(1_500),
            },
        );
        // Pass 1 speech ends at 3,500 ms: packet 174 left at t = 10 s.
        registry.stream(2).note_sent(174, 10_000_000);
        let fin = |start, end| {
            line(
                "asr.transcript.final",
                "bench-2",
                serde_json::json!({"start_ms": start, "end_ms": end, "text": "hi"}),
            )
        };
        // An earlier phrase of the pass is not the end of speech.
        log.handle_line(&fin(2_100, 2_600), &registry, 10_100_000);
        log.handle_line(&fin(2_700, 3_900), &registry, 10_400_000);
        log.handle_line(&fin(2_700, 3_900), &registry, 10_900_000);
        let s = &log.streams()[&2];
        assert_eq!(s.finals.len(), 3);
        assert_eq!(s.final_latency_ms, vec![400.0]);
        assert_eq!(log.final_latency.snapshot().count(), 1);
        assert_eq!(log.utterance_audio_ms.load(Ordering::Relaxed), 1_200);
    }

    #[test]
    fn speech_end_is_timed_for_the_utterance_reaching_the_clip_end() {
        let registry = Registry::new(20);
        let log = EventLog::default();
        log.expect_stream(
            1,
            ClipTiming {
                clip_ms: 2_000,
                speech_end_ms: Some(1_900),
            },
        );
        // Pass 0 speech ends at 1,900 ms: packet 94 left at t = 5 s.
        registry.stream(1).note_sent(94, 5_000_000);
        let ended = |start, end| {
            line(
                "asr.speech.ended",
                "bench-1",
                serde_json::json!({"start_ms": start, "end_ms": end}),
            )
        };
        // An earlier phrase does not count; the last one ends a hangover past the clip
        // (the packets stopped) and still belongs to pass 0.
        log.handle_line(&ended(300, 900), &registry, 5_100_000);
        log.handle_line(&ended(1_000, 2_500), &registry, 5_620_000);
        log.handle_line(&ended(1_000, 2_500), &registry, 5_900_000);
        let latency = log.endpoint_latency.snapshot();
        assert_eq!(latency.count(), 1);
        assert_eq!(latency.summary().unwrap().max_ms.round(), 620.0);
    }

    #[test]
    fn session_end_stats_and_bad_lines() {
        let registry = Registry::new(20);
        let log = EventLog::default();
        log.handle_line("not json", &registry, 0);
        log.handle_line(
            &line("asr.session.ended", "bench-0", serde_json::json!({"stats": {"received": 9, "lost": 1, "late": 0, "duplicate": 2, "reordered": 0, "jitter_ms": 0.1}})),
            &registry,
            0,
        );
        log.handle_line(
            &line("asr.session.started", "other-call", serde_json::json!({})),
            &registry,
            0,
        );
        assert_eq!(log.malformed.load(Ordering::Relaxed), 1);
        assert_eq!(log.ended(), 1);
        let s = &log.streams()[&0];
        assert_eq!(s.ended.unwrap().received, 9);
        assert_eq!(s.ended.unwrap().duplicate, 2);
        assert_eq!(log.streams().len(), 1);
    }
}
