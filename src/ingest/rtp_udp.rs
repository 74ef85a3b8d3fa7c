//! One tokio task per session: owns its media input (a UDP socket, or RTP-framed audio from a
//! stream transport) and the `Session`, feeds it, routes its outputs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::asr::types::{AsrControl, AsrFailure, AsrRequest, AsrUpdate, UtteranceId};
use crate::events::model::{EndCause, Event, EventBody, SessionEvent, StreamStats};
use crate::events::publisher::Publisher;
use crate::media::session::{Output, Session};
use crate::metrics::Metrics;

/// Largest datagram read; RTP from Asterisk is a few hundred bytes.
const MAX_DATAGRAM: usize = 2048;
/// Log at most one warning per cause this often per session.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Where a session's datagrams come from.
pub enum MediaInput {
    /// RTP over UDP (externalMedia's default).
    Udp(UdpSocket),
    /// Audio a stream transport (AudioSocket) has framed as RTP. The sender closing means
    /// the call hung up.
    Frames(mpsc::Receiver<Vec<u8>>),
}

/// One read from a [`MediaInput`].
enum Received {
    Datagram {
        len: usize,
        from: Option<SocketAddr>,
    },
    /// The stream transport's connection ended.
    Closed,
}

impl MediaInput {
    /// The session stopped taking media. A stream transport's connection closes at once
    /// (its reader watches for this), which hangs the Asterisk channel up; a UDP socket
    /// stays bound until the session ends.
    fn stop_taking_media(&mut self) {
        if let MediaInput::Frames(rx) = self {
            rx.close();
        }
    }

    async fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<Received> {
        match self {
            MediaInput::Udp(socket) => {
                socket
                    .recv_from(buf)
                    .await
                    .map(|(len, from)| Received::Datagram {
                        len,
                        from: Some(from),
                    })
            }
            MediaInput::Frames(rx) => Ok(match rx.recv().await {
                Some(frame) => {
                    let len = frame.len().min(buf.len());
                    buf[..len].copy_from_slice(&frame[..len]);
                    Received::Datagram { len, from: None }
                }
                None => Received::Closed,
            }),
        }
    }
}

/// What the manager can tell a running session.
#[derive(Debug, Clone)]
pub enum SessionCommand {
    Stop(EndCause),
    Update(OptionsUpdate),
    /// Accept RTP only from this address (Asterisk's `UNICASTRTP_LOCAL_ADDRESS:PORT`).
    LockSource(SocketAddr),
    /// A DTMF digit and how long it was held, ms.
    Dtmf(char, u32),
}

/// What a session tells the component that owns it (the ARI controller).
#[derive(Debug, Clone, PartialEq)]
pub enum OwnerNote {
    /// A final transcript, as published.
    Final { text: String, confidence: f32 },
    /// Recognition failed (`asr.error`): the engine was busy, unreachable, too slow, or
    /// its stream broke.
    Failed { code: &'static str },
}

/// Changed recognition options; `None` keeps the current value. Language and hints apply
/// to the next recognition stream, VAD settings at the next utterance boundary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptionsUpdate {
    pub language: Option<String>,
    pub interim_results: Option<bool>,
    pub hints: Option<Vec<String>>,
    pub vad: Option<crate::media::vad::VadConfig>,
}

/// Names and sinks shared by a session task.
pub struct SessionContext {
    pub session_id: Arc<str>,
    pub call_id: Arc<str>,
    pub source: Arc<str>,
    pub publisher: Publisher,
    pub metrics: Arc<Metrics>,
    /// Options of the session's recognition streams, as last configured.
    pub options: crate::asr::types::StreamOptions,
    /// The owner's copy of what it needs to hear (finals), if an owner asked.
    pub owner: Option<mpsc::Sender<OwnerNote>>,
}

impl SessionContext {
    fn publish(&self, event: SessionEvent) {
        if let EventBody::TranscriptFinal {
            latency_ms: Some(ms),
            ..
        } = &event.body
        {
            self.metrics.asr_final_latency.observe(*ms as f64 / 1000.0);
        }
        if let EventBody::Error { code, .. } = &event.body {
            self.metrics.asr_errors.inc(code);
        }
        if let Some(owner) = &self.owner {
            let note = match &event.body {
                EventBody::TranscriptFinal {
                    text, confidence, ..
                } => Some(OwnerNote::Final {
                    text: text.clone(),
                    confidence: *confidence,
                }),
                EventBody::Error { code, .. } => Some(OwnerNote::Failed { code }),
                _ => None,
            };
            if let Some(note) = note {
                // The owner reads promptly; if it does not, it loses a copy, never the event.
                let _ = owner.try_send(note);
            }
        }
        self.publisher.publish(Event::stamp(
            self.source.clone(),
            self.session_id.clone(),
            self.call_id.clone(),
            event,
            chrono::Utc::now(),
        ));
    }
}

/// Publish what a new session has to say before any media (`asr.session.started`), so that
/// it is the session's first event whatever the caller publishes next about it (a command's
/// `asr.command.accepted`). A new session has nothing else queued: the next output is its
/// first deadline, which `run` computes again.
pub fn publish_started(session: &mut Session, ctx: &SessionContext) {
    while let Output::Event(event) = session.poll_output() {
        ctx.publish(event);
    }
}

/// Run until the session has closed and emitted `asr.session.ended`.
pub async fn run(
    mut input: MediaInput,
    mut session: Session,
    ctx: SessionContext,
    asr_tx: mpsc::Sender<AsrRequest>,
    mut asr_rx: mpsc::Receiver<AsrUpdate>,
    mut commands: mpsc::Receiver<SessionCommand>,
) {
    let mut ctx = ctx;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut source: Option<SocketAddr> = None;
    let mut counted = StreamStats::default();
    let mut last_warning: Option<Instant> = None;
    let mut backpressured: Option<UtteranceId> = None;
    let mut asr_tx = Some(asr_tx);
    let mut commands_open = true;
    let mut asr_open = true;
    let mut input_open = true;

    loop {
        let deadline = loop {
            match session.poll_output() {
                Output::Timeout(at) => break at,
                Output::Event(event) => ctx.publish(event),
                Output::AsrAudio(audio) => {
                    let stream = audio.stream;
                    let Some(tx) = asr_tx.as_ref() else { continue };
                    if tx.try_send(AsrRequest::Audio(audio)).is_err() {
                        ctx.metrics.asr_audio_dropped.inc();
                        if backpressured != Some(stream) {
                            backpressured = Some(stream);
                            let failure = AsrFailure::Backpressure { stream };
                            session
                                .handle_asr(Instant::now(), AsrUpdate::Failed { stream, failure });
                        }
                    }
                }
                Output::AsrControl(control) => {
                    // Control is rare and must not be lost: wait for room.
                    if let Some(tx) = asr_tx.as_ref() {
                        if tx.send(AsrRequest::Control(control)).await.is_err() {
                            asr_tx = None;
                        }
                    }
                }
            }
        };
        sync_metrics(&ctx.metrics, &session.stats(), &mut counted);
        if session.is_closed() {
            break;
        }
        if !session.is_open() {
            input.stop_taking_media();
        }
        let sleep = tokio::time::sleep_until(deadline.into());
        tokio::select! {
            // Commands first: a LockSource sent before Asterisk is told to send media is in
            // force when the first packet is read. Then engine results and due timers, so a
            // flood of datagrams cannot starve them.
            biased;
            command = commands.recv(), if commands_open => match command {
                Some(SessionCommand::Stop(cause)) => session.handle_close(Instant::now(), cause),
                Some(SessionCommand::LockSource(addr)) => source = Some(addr),
                Some(SessionCommand::Dtmf(digit, ms)) => session.handle_dtmf(digit, ms),
                Some(SessionCommand::Update(update)) => {
                    // The dispatcher validated the VAD settings; a failure here changes nothing.
                    let _ = session.handle_update(update.vad, update.interim_results);
                    let options = &mut ctx.options;
                    options.language = update.language.unwrap_or_else(|| options.language.clone());
                    options.interim_results = update.interim_results.unwrap_or(options.interim_results);
                    options.hints = update.hints.unwrap_or_else(|| options.hints.clone());
                    if let Some(tx) = asr_tx.as_ref() {
                        let configure = AsrControl::Configure(ctx.options.clone());
                        if tx.send(AsrRequest::Control(configure)).await.is_err() {
                            asr_tx = None;
                        }
                    }
                }
                None => commands_open = false,
            },
            update = asr_rx.recv(), if asr_open => match update {
                Some(update) => session.handle_asr(Instant::now(), update),
                // The client task ended: nothing more will come. The close deadline decides.
                None => asr_open = false,
            },
            () = sleep => session.handle_timeout(Instant::now()),
            received = input.recv(&mut buf), if input_open => match received {
                Ok(Received::Closed) => {
                    input_open = false;
                    session.handle_close(Instant::now(), EndCause::Hangup);
                }
                Ok(Received::Datagram { len, from }) => {
                    if from.is_some_and(|from| source.is_some_and(|s| s != from)) {
                        session.note_foreign_source();
                        ctx.metrics.rtp_foreign_source.inc();
                        continue;
                    }
                    match session.handle_rtp(Instant::now(), &buf[..len]) {
                        Ok(()) => {
                            // The first source to send valid RTP owns the port.
                            if let Some(from) = from {
                                source.get_or_insert(from);
                            }
                            ctx.metrics.rtp_packets.inc();
                            ctx.metrics.rtp_bytes.add(len as u64);
                        }
                        Err(err) => {
                            let reason = err.reason();
                            if matches!(err, crate::media::session::InputError::Rtp(_)) {
                                ctx.metrics.rtp_malformed.inc(reason);
                            } else {
                                ctx.metrics.rtp_undecodable.inc();
                            }
                            if last_warning.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                                last_warning = Some(Instant::now());
                                tracing::warn!(session = %ctx.session_id, ?from, error = %err, "datagram not used");
                            }
                        }
                    }
                }
                Err(err) => tracing::warn!(session = %ctx.session_id, error = %err, "RTP socket receive failed"),
            },
        }
    }
}

/// Add what changed in a session's stats to the process counters.
fn sync_metrics(metrics: &Metrics, now: &StreamStats, counted: &mut StreamStats) {
    metrics.rtp_lost.add(now.lost.saturating_sub(counted.lost));
    metrics.rtp_late.add(now.late.saturating_sub(counted.late));
    metrics
        .rtp_duplicate
        .add(now.duplicate.saturating_sub(counted.duplicate));
    metrics
        .rtp_reordered
        .add(now.reordered.saturating_sub(counted.reordered));
    metrics.rtp_ssrc_probation.add(
        now.probation_dropped
            .saturating_sub(counted.probation_dropped),
    );
    *counted = *now;
}
