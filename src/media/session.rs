//! The per-call state machine gluing RTP, jitter, decode, resample and VAD; time is an argument.
//!
//! Inputs: `handle_rtp`, `handle_asr`, `handle_timeout`, `handle_close`. Outputs: drain
//! `poll_output` until it returns `Output::Timeout`, then call `handle_timeout` at that instant.
//! All audio after decoding is mono i16 at the engine rate; media time (every `*_ms`) counts
//! engine-rate samples since the first packet, plus pauses the sender signalled.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::asr::types::{AsrAudio, AsrControl, AsrUpdate, UtteranceId};
use crate::config::AsrMode;
use crate::events::model::{
    EndCause, EventBody, SessionEvent, SpeechEndCause, StreamStats, WordTiming,
};
use crate::media::codec::{CodecError, CodecKind, Decoder, PayloadTypeMap};
use crate::media::jitter::{JitterBuffer, JitterConfig, JitterOutput, MediaPacket};
use crate::media::resample::{ResampleError, Resampler};
use crate::media::rtp::{self, RtpError};
use crate::media::vad::{EndReason, FrameVerdict, Segmenter, VadConfig, VadError};

mod call_retry;
use call_retry::CallRetry;
pub use call_retry::{Recovery, RetryPolicy};

/// Call mode streams the whole call as stream 0.
const CALL_STREAM: UtteranceId = 0;
/// When nothing is scheduled, wake at least this often.
const IDLE_WAKE: Duration = Duration::from_secs(3600);
/// Longest loss filled with concealed audio; beyond it a loss passes as a pause.
const MAX_CONCEALMENT: Duration = Duration::from_secs(1);
/// Endpointing on the clock waits this much beyond the hangover: one packet time, so a
/// packet that is merely a little late still ends the utterance the ordinary way.
const STALL_GRACE: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub mode: AsrMode,
    /// Rate the engine receives, Hz.
    pub engine_rate: u32,
    /// Audio per `AsrAudio`, ms.
    pub chunk_ms: u32,
    pub interim_results: bool,
    pub vad: VadConfig,
    pub payload_types: PayloadTypeMap,
    pub jitter_holdback: Duration,
    pub jitter_max_packets: usize,
    /// End after this long without a packet; None = only when the owner says so.
    pub idle_timeout: Option<Duration>,
    /// Before the first packet, end after this long instead (if shorter); None = idle_timeout.
    pub first_media_timeout: Option<Duration>,
    /// After closing, how long to wait for outstanding finals before `asr.session.ended`.
    pub final_timeout: Duration,
    /// For `asr.session.started`.
    pub transport: &'static str,
    pub local_addr: String,
    /// `in` or `out` when the call is recognized as one stream per direction.
    pub speaker: Option<&'static str>,
    /// Call mode: how a failed engine stream is retried.
    pub call_retry: RetryPolicy,
}

impl Default for SessionConfig {
    /// The gateway's configured defaults (see `config`), for an RTP session on 127.0.0.1:40000.
    fn default() -> Self {
        Self {
            mode: AsrMode::Utterance,
            engine_rate: 16000,
            chunk_ms: 100,
            interim_results: false,
            vad: VadConfig::default(),
            payload_types: PayloadTypeMap::default(),
            jitter_holdback: Duration::from_millis(60),
            jitter_max_packets: 64,
            idle_timeout: Some(Duration::from_secs(30)),
            first_media_timeout: Some(Duration::from_secs(10)),
            final_timeout: Duration::from_secs(5),
            transport: "rtp",
            local_addr: "127.0.0.1:40000".into(),
            speaker: None,
            call_retry: RetryPolicy::default(),
        }
    }
}

/// Why an input was not used. The session carries on after every one of these.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("malformed RTP: {0}")]
    Rtp(#[from] RtpError),
    #[error("payload type {0} is not in the payload-type map")]
    UnknownPayloadType(u8),
    #[error("undecodable payload: {0}")]
    Codec(#[from] CodecError),
    #[error("cannot set up the media pipeline: {0}")]
    Resample(#[from] ResampleError),
    #[error("cannot set up VAD: {0}")]
    Vad(#[from] VadError),
    #[error("session already closed")]
    Closed,
}

impl InputError {
    /// Stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            InputError::Rtp(e) => e.reason(),
            InputError::UnknownPayloadType(_) => "unknown_payload_type",
            InputError::Codec(_) => "undecodable",
            InputError::Resample(_) => "resampler",
            InputError::Vad(_) => "vad",
            InputError::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    AsrAudio(AsrAudio),
    AsrControl(AsrControl),
    Event(SessionEvent),
    /// Nothing more to do until this instant: call `handle_timeout` then.
    Timeout(Instant),
}

/// Decoding state, set up by the first packet of a known payload type.
struct Pipeline {
    payload_type: u8,
    codec: CodecKind,
    decoder: Decoder,
    resampler: Resampler,
}

#[derive(Debug, Clone, Copy)]
struct Utterance {
    id: UtteranceId,
    start_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    Closing { deadline: Instant, cause: EndCause },
    Closed,
}

pub struct Session {
    config: SessionConfig,
    phase: Phase,
    outputs: VecDeque<Output>,
    last_packet_at: Instant,
    /// When decoded audio last reached the segmenter: the clock an open utterance's
    /// hangover runs on once packets stop.
    last_audio_at: Instant,
    jitter: Option<JitterBuffer>,
    pipeline: Option<Pipeline>,
    segmenter: Segmenter,
    /// Media sample where the current segmenter started counting (it is rebuilt on updates).
    segmenter_base: u64,
    /// New VAD settings waiting for the current utterance to end.
    pending_vad: Option<VadConfig>,
    /// Engine-rate samples that passed through the segmenter, plus signalled pauses.
    media_samples: u64,
    /// Scratch buffers reused for every packet.
    decoded: Vec<i16>,
    resampled: Vec<i16>,
    held: Vec<i16>,
    chunk: Vec<i16>,
    chunk_offset_ms: u64,
    chunk_samples: usize,
    next_utterance: UtteranceId,
    current: Option<Utterance>,
    call_stream_open: bool,
    /// Call mode: backoff and kept audio after the engine stream failed.
    retry: CallRetry,
    /// Streams begun and not yet closed or failed by the engine.
    open_streams: BTreeMap<UtteranceId, ()>,
    /// When each utterance's speech ended, for final latency.
    speech_ended_at: BTreeMap<UtteranceId, Instant>,
    stats: StreamStats,
    utterances: u32,
}

impl Session {
    pub fn new(config: SessionConfig, now: Instant) -> Result<Self, InputError> {
        let segmenter = Segmenter::new(config.vad, config.engine_rate)?;
        let chunk_samples = (config.engine_rate as usize * config.chunk_ms as usize / 1000).max(1);
        let mut outputs = VecDeque::new();
        outputs.push_back(Output::Event(SessionEvent {
            offset_ms: 0,
            body: EventBody::SessionStarted {
                transport: config.transport,
                local_addr: config.local_addr.clone(),
                engine_sample_rate: config.engine_rate,
                mode: config.mode.name(),
                speaker: config.speaker,
            },
        }));
        Ok(Self {
            phase: Phase::Open,
            outputs,
            last_packet_at: now,
            last_audio_at: now,
            jitter: None,
            pipeline: None,
            segmenter,
            segmenter_base: 0,
            pending_vad: None,
            media_samples: 0,
            decoded: Vec::with_capacity(1920),
            resampled: Vec::with_capacity(1920),
            held: Vec::new(),
            chunk: Vec::with_capacity(chunk_samples),
            chunk_offset_ms: 0,
            chunk_samples,
            next_utterance: 1,
            current: None,
            call_stream_open: false,
            retry: CallRetry::new(config.call_retry, config.engine_rate),
            open_streams: BTreeMap::new(),
            speech_ended_at: BTreeMap::new(),
            stats: StreamStats::default(),
            utterances: 0,
            config,
        })
    }

    /// Still taking media: not closing (waiting for final results) or closed.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Receive statistics so far.
    pub fn stats(&self) -> StreamStats {
        let mut stats = self.stats;
        if let Some(jitter) = &self.jitter {
            let j = jitter.stats();
            stats.received = j.received;
            stats.lost = j.lost;
            stats.late = j.late;
            stats.duplicate = j.duplicate;
            stats.reordered = j.reordered;
            stats.probation_dropped = j.probation_dropped;
            stats.jitter_ms = jitter.jitter_ms();
        }
        stats
    }

    /// A datagram from a source other than the session's was ignored by the shell.
    pub fn note_foreign_source(&mut self) {
        self.stats.foreign_source += 1;
    }

    /// One datagram as received. Errors are counted in `stats()`; the session carries on.
    pub fn handle_rtp(&mut self, now: Instant, datagram: &[u8]) -> Result<(), InputError> {
        if self.phase != Phase::Open {
            return Err(InputError::Closed);
        }
        let packet = match rtp::parse(datagram) {
            Ok(p) => p,
            Err(e) => {
                self.stats.malformed += 1;
                return Err(e.into());
            }
        };
        let pt = packet.header.payload_type;
        let Some(codec) = self.config.payload_types.get(pt) else {
            self.stats.undecodable += 1;
            return Err(InputError::UnknownPayloadType(pt));
        };
        self.last_packet_at = now;
        if self.jitter.is_none() {
            self.jitter = Some(JitterBuffer::new(JitterConfig {
                holdback: self.config.jitter_holdback,
                clock_rate: codec.clock_rate(),
                max_packets: self.config.jitter_max_packets,
            }));
        }
        let jitter = self.jitter.as_mut().expect("set above");
        jitter.push(now, &packet.header, packet.payload);
        self.drain_jitter(now, false)
    }

    pub fn handle_asr(&mut self, now: Instant, update: AsrUpdate) {
        if self.phase == Phase::Closed {
            return;
        }
        match update {
            AsrUpdate::Result(h) => {
                if self.config.mode == AsrMode::Call {
                    if let Some(recovery) = self.retry.handle_result(now) {
                        self.emit_recovered(recovery);
                    }
                }
                let known = (1..self.next_utterance).contains(&h.utterance);
                if h.is_final && h.text.trim().is_empty() && !known {
                    // Call mode: the engine finalized audio after the last utterance; nothing was said.
                    return;
                }
                let body = if h.is_final {
                    let latency_ms = self
                        .speech_ended_at
                        .remove(&h.utterance)
                        .map(|at| now.saturating_duration_since(at).as_millis() as u64);
                    EventBody::TranscriptFinal {
                        utterance: h.utterance,
                        text: h.text,
                        confidence: h.confidence,
                        words: h.words.iter().map(WordTiming::from).collect(),
                        start_ms: h.start_ms,
                        end_ms: h.end_ms,
                        latency_ms,
                    }
                } else if self.config.interim_results {
                    EventBody::TranscriptPartial {
                        utterance: h.utterance,
                        text: h.text,
                        confidence: h.confidence,
                        start_ms: h.start_ms,
                        end_ms: h.end_ms,
                    }
                } else {
                    return;
                };
                self.emit(body);
            }
            AsrUpdate::Failed { stream, failure } => {
                self.stream_done(stream);
                let call_stream = stream == CALL_STREAM && self.config.mode == AsrMode::Call;
                let starts_episode = call_stream && self.retry.handle_failure(now);
                if call_stream && self.call_stream_open {
                    self.call_stream_open = false;
                    // Audio not yet sent waits for the retry; within an episode it is kept
                    // already (see call_retry).
                    let unsent = std::mem::take(&mut self.chunk);
                    if starts_episode {
                        self.retry.keep(self.chunk_offset_ms, &unsent);
                    }
                }
                // Call mode reports a failure episode once, not each retry.
                if !call_stream || starts_episode {
                    self.emit(EventBody::Error {
                        code: failure.code(),
                        message: failure.to_string(),
                        utterance: (stream != CALL_STREAM).then_some(stream),
                    });
                }
            }
            AsrUpdate::Closed { stream } => self.stream_done(stream),
            AsrUpdate::EngineSwitched {
                stream,
                from,
                to,
                failure,
                replayed_ms,
            } => self.emit(EventBody::EngineSwitched {
                utterance: (stream != CALL_STREAM).then_some(stream),
                from,
                to,
                code: failure.code(),
                reason: failure.to_string(),
                replayed_ms,
            }),
        }
        self.maybe_finish(now);
    }

    /// Timers: jitter holdback, idle timeout, final wait.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Open => {
                let _ = self.drain_jitter(now, false);
                if self.stall_deadline().is_some_and(|at| now >= at) {
                    self.end_on_clock(now);
                }
                if let Some(recovery) = self.retry.handle_timeout(now) {
                    self.emit_recovered(recovery);
                }
                if let Some(idle) = self.idle_limit() {
                    if now >= self.last_packet_at + idle {
                        self.handle_close(now, EndCause::IdleTimeout);
                    }
                }
            }
            Phase::Closing { deadline, .. } if now >= deadline => {
                let pending: Vec<_> = self.open_streams.keys().copied().collect();
                for stream in pending {
                    self.emit(EventBody::Error {
                        code: "asr_timeout",
                        message: format!(
                            "no final result within {:?} of the session ending",
                            self.config.final_timeout
                        ),
                        utterance: (stream != CALL_STREAM).then_some(stream),
                    });
                }
                self.open_streams.clear();
                self.maybe_finish(now);
            }
            _ => {}
        }
    }

    /// The owner ends the session: flush media, end any utterance, wait for finals.
    pub fn handle_close(&mut self, now: Instant, cause: EndCause) {
        if self.phase != Phase::Open {
            return;
        }
        let _ = self.drain_jitter(now, true);
        self.flush_pipeline(now);
        if let Some(end_sample) = self.segmenter.finish() {
            self.end_utterance(
                now,
                self.segmenter_base + end_sample,
                SpeechEndCause::SessionEnd,
            );
        }
        if self.config.mode == AsrMode::Call
            && !self.call_stream_open
            && self.retry.has_kept_audio()
        {
            // The audio of the last wait gets one more try, whatever the backoff.
            self.open_call_stream(now, self.ms(self.media_samples));
        }
        if self.call_stream_open {
            self.flush_chunk(CALL_STREAM);
            self.push(Output::AsrControl(AsrControl::End {
                stream: CALL_STREAM,
            }));
            self.call_stream_open = false;
        }
        self.phase = Phase::Closing {
            deadline: now + self.config.final_timeout,
            cause,
        };
        self.maybe_finish(now);
    }

    /// A DTMF digit heard on the call (ARI `ChannelDtmfReceived`, AudioSocket 0x03,
    /// WebSocket `DTMF_END`): emitted as `asr.dtmf` at the current media time.
    pub fn handle_dtmf(&mut self, digit: char, duration_ms: u32) {
        if self.phase != Phase::Open {
            return;
        }
        self.emit(EventBody::Dtmf {
            digit: digit.to_string(),
            duration_ms,
        });
    }

    /// New options from an `update` command. VAD settings apply now when no utterance is
    /// open, else when the current one ends; `interim_results` applies at once.
    pub fn handle_update(
        &mut self,
        vad: Option<VadConfig>,
        interim_results: Option<bool>,
    ) -> Result<(), InputError> {
        if let Some(vad) = vad {
            // Validate now, so a bad update is refused rather than failing later.
            Segmenter::new(vad, self.config.engine_rate)?;
            if self.current.is_some() {
                self.pending_vad = Some(vad);
            } else {
                self.apply_vad(vad);
            }
        }
        if let Some(interim) = interim_results {
            self.config.interim_results = interim;
        }
        Ok(())
    }

    /// Current VAD settings, including any waiting for the utterance to end.
    pub fn vad_config(&self) -> VadConfig {
        self.pending_vad.unwrap_or(self.config.vad)
    }

    fn apply_vad(&mut self, vad: VadConfig) {
        if let Ok(segmenter) = Segmenter::new(vad, self.config.engine_rate) {
            self.segmenter = segmenter;
            self.segmenter_base = self.media_samples;
            self.config.vad = vad;
        }
    }

    pub fn poll_output(&mut self) -> Output {
        if let Some(out) = self.outputs.pop_front() {
            return out;
        }
        Output::Timeout(self.next_deadline())
    }

    /// How long without media ends the session: until the first packet, the (shorter) wait
    /// for first media, so a reservation nobody uses gives its port back soon.
    fn idle_limit(&self) -> Option<Duration> {
        match (self.jitter.is_none(), self.config.first_media_timeout) {
            (true, Some(first)) => Some(self.config.idle_timeout.map_or(first, |i| i.min(first))),
            _ => self.config.idle_timeout,
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut deadline = self.last_packet_at + IDLE_WAKE;
        match self.phase {
            Phase::Open => {
                if let Some(idle) = self.idle_limit() {
                    deadline = deadline.min(self.last_packet_at + idle);
                }
                if let Some(t) = self.jitter.as_ref().and_then(|j| j.poll_timeout()) {
                    deadline = deadline.min(t);
                }
                if let Some(t) = self.retry.poll_timeout() {
                    deadline = deadline.min(t);
                }
                if let Some(t) = self.stall_deadline() {
                    deadline = deadline.min(t);
                }
            }
            Phase::Closing { deadline: d, .. } => deadline = d,
            Phase::Closed => {}
        }
        deadline
    }

    /// With an utterance open and no packet waiting in the jitter buffer: when the rest of
    /// the hangover, and one packet time for the next packet due, will have passed on the
    /// clock since the last audio. Packets may stop after speech (Asterisk sends nothing
    /// on a silent bridge), so silence is assumed rather than waited for.
    fn stall_deadline(&self) -> Option<Instant> {
        let remaining = self.segmenter.silence_to_end()?;
        if self
            .jitter
            .as_ref()
            .and_then(|j| j.poll_timeout())
            .is_some()
        {
            return None;
        }
        let nanos = remaining * 1_000_000_000 / u64::from(self.config.engine_rate);
        Some(self.last_audio_at + Duration::from_nanos(nanos) + STALL_GRACE)
    }

    /// Packets stopped mid utterance and the hangover passed on the clock: the utterance
    /// ends where that much silence would have ended it. The audio still inside the
    /// pipeline goes first. Media time does not move: if packets resume without a gap in
    /// their timestamps, their audio follows on from the last.
    fn end_on_clock(&mut self, now: Instant) {
        self.flush_pipeline(now);
        let Some(remaining) = self.segmenter.silence_to_end() else {
            return;
        };
        let end_sample = self.segmenter.position() + remaining;
        self.segmenter.finish();
        self.end_utterance(
            now,
            self.segmenter_base + end_sample,
            SpeechEndCause::Silence,
        );
    }

    /// Push out the audio still inside the resampler, and the part of a VAD frame left
    /// over, so the end of a call or of a stalled stream reaches the engine.
    fn flush_pipeline(&mut self, now: Instant) {
        let Some(p) = self.pipeline.as_mut() else {
            return;
        };
        p.resampler.flush(&mut self.resampled);
        self.run_frames(now);
        // Too short for the VAD; it belongs to whatever the last frame belonged to.
        let rest = std::mem::take(&mut self.resampled);
        if rest.is_empty() {
            self.resampled = rest;
            return;
        }
        let offset_ms = self.ms(self.media_samples);
        match (self.config.mode, self.current) {
            (AsrMode::Call, _) if self.call_stream_open => {
                self.forward(CALL_STREAM, offset_ms, &rest)
            }
            (AsrMode::Utterance, Some(utterance)) => self.forward(utterance.id, offset_ms, &rest),
            _ => {}
        }
        self.media_samples += rest.len() as u64;
        if let Some(FrameVerdict::Ended { end_sample, reason }) =
            self.segmenter.skip(rest.len() as u64)
        {
            self.end_utterance(now, self.segmenter_base + end_sample, end_cause(reason));
        }
        self.resampled = rest;
        self.resampled.clear();
    }

    fn next_jitter_output(&mut self, now: Instant, flush: bool) -> Option<JitterOutput> {
        let jitter = self.jitter.as_mut()?;
        if flush {
            jitter.flush()
        } else {
            jitter.poll(now)
        }
    }

    fn drain_jitter(&mut self, now: Instant, flush: bool) -> Result<(), InputError> {
        let mut result = Ok(());
        let mut held = None;
        loop {
            let Some(out) = held.take().or_else(|| self.next_jitter_output(now, flush)) else {
                return result;
            };
            let step = match out {
                JitterOutput::Packet(packet) => self.handle_packet(now, packet),
                JitterOutput::Lost { duration_ts, .. } => {
                    // The packet after a loss comes right behind it; Opus may carry the
                    // lost audio in it (in-band FEC).
                    held = self.next_jitter_output(now, flush);
                    let next = match &held {
                        Some(JitterOutput::Packet(p)) => Some(p),
                        _ => None,
                    };
                    self.conceal(now, duration_ts, next);
                    Ok(())
                }
                JitterOutput::Talkspurt { skipped_ts } => {
                    self.skip(now, skipped_ts);
                    Ok(())
                }
                JitterOutput::NewStream { .. } => {
                    // A new SSRC has fresh codec state; keep the resampler's history.
                    if let Some(p) = self.pipeline.as_mut() {
                        p.decoder = Decoder::new(p.codec)?;
                    }
                    Ok(())
                }
            };
            if let Err(e) = step {
                result = Err(e);
            }
        }
    }

    fn handle_packet(&mut self, now: Instant, packet: MediaPacket) -> Result<(), InputError> {
        let pt = packet.payload_type;
        let Some(codec) = self.config.payload_types.get(pt) else {
            self.stats.undecodable += 1;
            return Err(InputError::UnknownPayloadType(pt));
        };
        if codec == CodecKind::TelephoneEvent {
            return Ok(());
        }
        if self.pipeline.as_ref().map(|p| p.payload_type) != Some(pt) {
            self.pipeline = Some(self.build_pipeline(pt, codec)?);
        }
        let pipeline = self.pipeline.as_mut().expect("set above");
        self.decoded.clear();
        if let Err(e) = pipeline.decoder.decode(&packet.payload, &mut self.decoded) {
            self.stats.undecodable += 1;
            return Err(e.into());
        }
        pipeline
            .resampler
            .process(&self.decoded, &mut self.resampled);
        self.last_audio_at = now;
        self.run_frames(now);
        Ok(())
    }

    fn build_pipeline(
        &mut self,
        payload_type: u8,
        codec: CodecKind,
    ) -> Result<Pipeline, InputError> {
        let decoder = Decoder::new(codec)?;
        let resampler = Resampler::new(decoder.sample_rate(), self.config.engine_rate)?;
        Ok(Pipeline {
            payload_type,
            codec,
            decoder,
            resampler,
        })
    }

    /// Lost packets: concealment keeps media time aligned.
    ///
    /// At most [`MAX_CONCEALMENT`] of audio is synthesized; a longer gap (the sender's
    /// timestamps say hours passed, e.g. after a jump backwards) passes the rest as a pause,
    /// so one packet can never make the session decode, resample and VAD hours of audio.
    fn conceal(&mut self, now: Instant, duration_ts: u64, next: Option<&MediaPacket>) {
        let Some(p) = self.pipeline.as_mut() else {
            return;
        };
        let clock_rate = p.codec.clock_rate() as u64;
        let max_ts = MAX_CONCEALMENT.as_millis() as u64 * clock_rate / 1000;
        let concealed_ts = duration_ts.min(max_ts);
        let samples = concealed_ts * p.decoder.sample_rate() as u64 / clock_rate;
        self.decoded.clear();
        match next.filter(|n| n.payload_type == p.payload_type && concealed_ts == duration_ts) {
            Some(next) => {
                p.decoder
                    .conceal_before(samples as usize, &next.payload, &mut self.decoded)
            }
            None => p.decoder.conceal(samples as usize, &mut self.decoded),
        }
        p.resampler.process(&self.decoded, &mut self.resampled);
        self.last_audio_at = now;
        self.run_frames(now);
        self.skip(now, duration_ts - concealed_ts);
    }

    /// The sender paused (marker + timestamp jump): silence passed without packets.
    fn skip(&mut self, now: Instant, skipped_ts: u64) {
        let Some(p) = self.pipeline.as_mut() else {
            return;
        };
        if skipped_ts == 0 {
            return;
        }
        p.decoder.handle_pause();
        let samples = skipped_ts * self.config.engine_rate as u64 / p.codec.clock_rate() as u64;
        self.media_samples += samples;
        if let Some(FrameVerdict::Ended { end_sample, reason }) = self.segmenter.skip(samples) {
            self.end_utterance(now, self.segmenter_base + end_sample, end_cause(reason));
        }
    }

    /// Cut engine-rate audio into VAD frames and act on each verdict.
    fn run_frames(&mut self, now: Instant) {
        let frame_len = self.segmenter.frame_len();
        let pcm = std::mem::take(&mut self.resampled);
        let mut consumed = 0;
        while pcm.len() - consumed >= frame_len {
            let frame = &pcm[consumed..consumed + frame_len];
            consumed += frame_len;
            self.run_frame(now, frame);
        }
        self.resampled = pcm;
        self.resampled.drain(..consumed);
    }

    fn run_frame(&mut self, now: Instant, frame: &[i16]) {
        let frame_start_ms = self.ms(self.media_samples);
        self.media_samples += frame.len() as u64;
        if self.config.mode == AsrMode::Call && !self.call_stream_open && self.retry.may_open(now) {
            self.open_call_stream(now, frame_start_ms);
        }
        let verdict = match self.segmenter.push_frame(frame) {
            Ok(v) => v,
            Err(e) => {
                // Frame length is ours to get right; this is a bug, not bad input.
                debug_assert!(false, "segmenter rejected a frame: {e}");
                return;
            }
        };
        let stream = match self.config.mode {
            AsrMode::Call => CALL_STREAM,
            AsrMode::Utterance => self.current.map(|u| u.id).unwrap_or(CALL_STREAM),
        };
        match verdict {
            FrameVerdict::Idle | FrameVerdict::Pending => {
                if self.config.mode == AsrMode::Call {
                    self.forward(CALL_STREAM, frame_start_ms, frame);
                }
            }
            FrameVerdict::Started { start_sample } => {
                let id = self.next_utterance;
                self.next_utterance += 1;
                self.utterances += 1;
                let start_ms = self.ms(self.segmenter_base + start_sample);
                self.current = Some(Utterance { id, start_ms });
                self.emit(EventBody::SpeechStarted {
                    utterance: id,
                    start_ms,
                });
                self.held.clear();
                self.segmenter.drain_held(&mut self.held);
                match self.config.mode {
                    AsrMode::Utterance => {
                        self.open_streams.insert(id, ());
                        self.push(Output::AsrControl(AsrControl::Begin {
                            stream: id,
                            offset_ms: start_ms,
                        }));
                        let held = std::mem::take(&mut self.held);
                        self.forward(id, start_ms, &held);
                        self.held = held;
                    }
                    // Call mode already forwarded the held frames as they came.
                    AsrMode::Call => self.forward(CALL_STREAM, frame_start_ms, frame),
                }
            }
            FrameVerdict::InSpeech => self.forward(stream, frame_start_ms, frame),
            FrameVerdict::Ended { end_sample, reason } => {
                self.forward(stream, frame_start_ms, frame);
                self.end_utterance(now, self.segmenter_base + end_sample, end_cause(reason));
            }
        }
    }

    fn end_utterance(&mut self, now: Instant, end_sample: u64, cause: SpeechEndCause) {
        let Some(utterance) = self.current.take() else {
            return;
        };
        if let Some(vad) = self.pending_vad.take() {
            self.apply_vad(vad);
        }
        let end_ms = self.ms(end_sample);
        self.speech_ended_at.insert(utterance.id, now);
        match self.config.mode {
            AsrMode::Utterance => {
                self.flush_chunk(utterance.id);
                self.push(Output::AsrControl(AsrControl::End {
                    stream: utterance.id,
                }));
            }
            AsrMode::Call => {
                self.flush_chunk(CALL_STREAM);
                self.push(Output::AsrControl(AsrControl::EndOfSpeech {
                    stream: CALL_STREAM,
                    utterance: utterance.id,
                    offset_ms: end_ms,
                }));
            }
        }
        self.emit(EventBody::SpeechEnded {
            utterance: utterance.id,
            start_ms: utterance.start_ms,
            end_ms,
            cause,
        });
    }

    /// Begin the call stream (again), sending first any audio kept while it was down.
    fn open_call_stream(&mut self, now: Instant, offset_ms: u64) {
        let kept = self.retry.handle_reopen(now);
        let begin_ms = kept.as_ref().map_or(offset_ms, |(at, _)| *at);
        self.call_stream_open = true;
        self.open_streams.insert(CALL_STREAM, ());
        self.push(Output::AsrControl(AsrControl::Begin {
            stream: CALL_STREAM,
            offset_ms: begin_ms,
        }));
        if let Some((at, audio)) = kept {
            self.send_audio(CALL_STREAM, at, &audio);
        }
    }

    fn emit_recovered(&mut self, recovery: Recovery) {
        self.emit(EventBody::Recovered {
            failures: recovery.failures,
            down_ms: recovery.down.as_millis() as u64,
        });
    }

    /// Append audio for `stream`, emitting full chunks. During a call-mode failure episode
    /// the audio is kept for the retries too, and only kept while the stream is down.
    fn forward(&mut self, stream: UtteranceId, offset_ms: u64, samples: &[i16]) {
        if self.config.mode == AsrMode::Call && stream == CALL_STREAM && self.retry.is_keeping() {
            self.retry.keep(offset_ms, samples);
            if !self.call_stream_open {
                return;
            }
        }
        self.send_audio(stream, offset_ms, samples);
    }

    fn send_audio(&mut self, stream: UtteranceId, offset_ms: u64, mut samples: &[i16]) {
        if self.chunk.is_empty() {
            self.chunk_offset_ms = offset_ms;
        }
        while !samples.is_empty() {
            let room = self.chunk_samples - self.chunk.len();
            let take = room.min(samples.len());
            self.chunk.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.chunk.len() == self.chunk_samples {
                self.flush_chunk(stream);
                self.chunk_offset_ms = offset_ms;
            }
        }
    }

    fn flush_chunk(&mut self, stream: UtteranceId) {
        if self.chunk.is_empty() {
            return;
        }
        let samples = std::mem::replace(&mut self.chunk, Vec::with_capacity(self.chunk_samples));
        let offset_ms = self.chunk_offset_ms;
        self.chunk_offset_ms += samples.len() as u64 * 1000 / self.config.engine_rate as u64;
        self.push(Output::AsrAudio(AsrAudio {
            stream,
            offset_ms,
            samples,
        }));
    }

    fn stream_done(&mut self, stream: UtteranceId) {
        self.open_streams.remove(&stream);
    }

    /// In Closing, emit `asr.session.ended` once every stream is done.
    fn maybe_finish(&mut self, _now: Instant) {
        let Phase::Closing { cause, .. } = self.phase else {
            return;
        };
        if !self.open_streams.is_empty() {
            return;
        }
        let body = EventBody::SessionEnded {
            cause,
            duration_ms: self.ms(self.media_samples),
            codec: self.pipeline.as_ref().map(|p| p.codec.name()),
            payload_type: self.pipeline.as_ref().map(|p| p.payload_type),
            utterances: self.utterances,
            stats: self.stats(),
        };
        self.emit(body);
        self.phase = Phase::Closed;
    }

    fn emit(&mut self, body: EventBody) {
        let offset_ms = self.ms(self.media_samples);
        self.push(Output::Event(SessionEvent { offset_ms, body }));
    }

    fn push(&mut self, out: Output) {
        self.outputs.push_back(out);
    }

    fn ms(&self, samples: u64) -> u64 {
        samples * 1000 / self.config.engine_rate as u64
    }
}

fn end_cause(reason: EndReason) -> SpeechEndCause {
    match reason {
        EndReason::Silence => SpeechEndCause::Silence,
        EndReason::MaxLength => SpeechEndCause::MaxLength,
    }
}

#[cfg(test)]
mod tests;
