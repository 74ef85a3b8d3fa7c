//! The engine driver: one task per session, one stream per utterance or call, each stream on an engine the router picks, failing over with replay.
//!
//! The session task reads `AsrRequest`s in order and never waits on the network or on the
//! session: each open stream has its own sub-task fed by a bounded channel, so utterance N's
//! final may still be pending while N+1 streams. A full channel fails that stream with
//! `Backpressure`. A stream whose engine fails (error, unreachable, busy, timeout, invalid
//! results) moves to the next engine of its profile: the sub-task replays what the stream
//! sent since the engine's last final (`replay.rs`), tells the session
//! (`AsrUpdate::EngineSwitched`) and goes on. Only when no engine is left does the
//! failure reach the session, and it ends only its stream.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::asr::engine::{EngineResult, StreamInput};
use crate::asr::replay::Replay;
use crate::asr::router::{Lease, Router, DEFAULT_PROFILE};
use crate::asr::types::{
    AsrControl, AsrFailure, AsrRequest, AsrUpdate, Hypothesis, StreamOptions, UtteranceId,
};
use crate::asr::wire::asr_v1::AsrV1Engine;
pub use crate::asr::wire::asr_v1::{ClientConfig, ClientError};

/// Requests queued per open stream: about 5 s of 20 ms frames.
const STREAM_BUFFER: usize = 256;
/// Results queued from an engine stream to its sub-task.
const RESULT_BUFFER: usize = 16;

/// How streams are driven, whatever the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverConfig {
    /// After the request side closes, how long an engine has to close the stream.
    pub final_timeout: Duration,
    /// Audio kept per stream for a failover, seconds of audio at the stream's rate.
    pub replay_seconds: u32,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            final_timeout: Duration::from_secs(15),
            replay_seconds: 60,
        }
    }
}

/// Cheap to clone: every session shares the router and its engines.
#[derive(Clone)]
pub struct AsrClient {
    router: Arc<Router>,
    driver: DriverConfig,
}

impl AsrClient {
    /// One engine speaking the gateway's own protocol. Must be called inside a Tokio
    /// runtime; nothing connects until the first stream opens.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let engine = AsrV1Engine::new(DEFAULT_PROFILE, &config)?;
        Ok(Self::with_router(
            Arc::new(Router::single(Arc::new(engine))),
            DriverConfig {
                final_timeout: config.final_timeout,
                ..DriverConfig::default()
            },
        ))
    }

    pub fn with_router(router: Arc<Router>, driver: DriverConfig) -> Self {
        Self { router, driver }
    }

    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Serve one session: read requests in order, open/close streams as told, send every
    /// result or failure to `updates`. Ends when `requests` closes and streams are done.
    pub fn spawn_session(
        &self,
        options: StreamOptions,
        requests: mpsc::Receiver<AsrRequest>,
        updates: mpsc::Sender<AsrUpdate>,
    ) -> JoinHandle<()> {
        tokio::spawn(run_session(self.clone(), options, requests, updates))
    }
}

/// The session's handle on one open stream. Dropping it closes the request side.
struct OpenStream {
    requests: mpsc::Sender<StreamInput>,
    /// Dropped unsent = the request side was closed normally (starts the final timeout);
    /// sent = fail the stream with this failure now.
    abort: oneshot::Sender<AsrFailure>,
}

async fn run_session(
    client: AsrClient,
    mut options: StreamOptions,
    mut requests: mpsc::Receiver<AsrRequest>,
    updates: mpsc::Sender<AsrUpdate>,
) {
    let mut open: HashMap<UtteranceId, OpenStream> = HashMap::new();
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            // Reap finished stream tasks so a long call does not accumulate them.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            request = requests.recv() => match request {
                None => break,
                Some(AsrRequest::Control(AsrControl::Begin { stream, .. })) => {
                    // A stream still open under the same id is closed first.
                    open.remove(&stream);
                    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
                    let (abort, aborted) = oneshot::channel();
                    let task = StreamTask {
                        client: client.clone(),
                        options: options.clone(),
                        stream,
                        updates: updates.clone(),
                    };
                    tasks.spawn(task.run(rx, aborted));
                    open.insert(stream, OpenStream { requests: tx, abort });
                }
                Some(AsrRequest::Audio(audio)) => {
                    let input = StreamInput::Audio { offset_ms: audio.offset_ms, samples: audio.samples };
                    forward(&mut open, audio.stream, input);
                }
                Some(AsrRequest::Control(AsrControl::EndOfSpeech { stream, utterance, offset_ms })) => {
                    forward(&mut open, stream, StreamInput::EndOfSpeech { utterance, offset_ms });
                }
                Some(AsrRequest::Control(AsrControl::End { stream })) => {
                    open.remove(&stream);
                }
                Some(AsrRequest::Control(AsrControl::Configure(new_options))) => {
                    options = new_options;
                }
            },
        }
    }
    // The session is done sending: close every request side and let the finals arrive.
    drop(open);
    while tasks.join_next().await.is_some() {}
}

/// Hand an input to its stream without waiting. Inputs for streams that are not open
/// (never begun, or already failed and reported) are dropped.
fn forward(open: &mut HashMap<UtteranceId, OpenStream>, stream: UtteranceId, input: StreamInput) {
    let Some(s) = open.get(&stream) else { return };
    match s.requests.try_send(input) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            if let Some(s) = open.remove(&stream) {
                let _ = s.abort.send(AsrFailure::Backpressure { stream });
            }
        }
        // The stream already ended; its task reported how.
        Err(TrySendError::Closed(_)) => {
            open.remove(&stream);
        }
    }
}

/// How one engine's run of a stream ended.
enum Attempt {
    /// The engine closed the stream after its last result.
    Closed,
    /// `updates` is closed: nobody wants the results any more.
    SessionGone,
    /// The session failed the stream (backpressure): no other engine would help.
    Aborted(AsrFailure),
    /// The engine failed; another engine may take over.
    EngineFailed(AsrFailure),
}

/// Room for one input in the engine's channel; owned, so the sender may be dropped meanwhile.
async fn reserve(
    tx: Option<mpsc::Sender<StreamInput>>,
) -> Result<mpsc::OwnedPermit<StreamInput>, mpsc::error::SendError<()>> {
    tx.expect("only polled with a sender").reserve_owned().await
}

/// One stream's sub-task: drives the stream on one engine after another until it ends,
/// and reports its end (`Closed` or `Failed`) once.
struct StreamTask {
    client: AsrClient,
    options: StreamOptions,
    stream: UtteranceId,
    updates: mpsc::Sender<AsrUpdate>,
}

/// Where the sub-task is between engines.
struct StreamState {
    requests: mpsc::Receiver<StreamInput>,
    aborted: Option<oneshot::Receiver<AsrFailure>>,
    /// The session closed the request side.
    closing: bool,
    /// When the request side closed: the final timeout runs from here.
    closed_at: Option<Instant>,
    replay: Replay,
    /// Call mode without engine utterance ids: finals delivered so far, on any engine.
    finals: u32,
    /// A final has reached the session (utterance mode: the stream's words are in).
    delivered_final: bool,
}

impl StreamTask {
    async fn run(
        self,
        requests: mpsc::Receiver<StreamInput>,
        aborted: oneshot::Receiver<AsrFailure>,
    ) {
        let call_mode = self.stream == 0;
        let replay_samples =
            self.client.driver.replay_seconds as usize * self.options.sample_rate as usize;
        let mut state = StreamState {
            requests,
            aborted: Some(aborted),
            closing: false,
            closed_at: None,
            replay: Replay::new(replay_samples, call_mode, self.options.sample_rate),
            finals: 0,
            delivered_final: false,
        };
        let router = &self.client.router;
        let profile = if self.options.engine_profile.is_empty() {
            DEFAULT_PROFILE
        } else {
            self.options.engine_profile.as_str()
        };
        let mut tried = Vec::new();
        let Some(mut lease) = router.pick(profile, &tried, std::time::Instant::now()) else {
            let failure = AsrFailure::Busy {
                detail: format!("every engine of profile {profile:?} is at its stream cap"),
            };
            self.report(AsrUpdate::Failed {
                stream: self.stream,
                failure,
            })
            .await;
            return;
        };
        loop {
            tried.push(lease.index());
            let update = match self.attempt(&lease, &mut state).await {
                Attempt::SessionGone => return,
                Attempt::Closed => {
                    router.succeeded(&lease);
                    AsrUpdate::Closed {
                        stream: self.stream,
                    }
                }
                Attempt::Aborted(failure) => AsrUpdate::Failed {
                    stream: self.stream,
                    failure,
                },
                // Utterance mode after its final: the words are in, nothing to move.
                Attempt::EngineFailed(_) if !call_mode && state.delivered_final => {
                    AsrUpdate::Closed {
                        stream: self.stream,
                    }
                }
                Attempt::EngineFailed(failure) => {
                    router.failed(&lease, std::time::Instant::now());
                    tracing::debug!(stream = self.stream, engine = lease.name(), %failure, "recognition stream failed");
                    let Some(next) = router.pick(profile, &tried, std::time::Instant::now()) else {
                        self.report(AsrUpdate::Failed {
                            stream: self.stream,
                            failure,
                        })
                        .await;
                        return;
                    };
                    lease
                        .counters()
                        .switched_away
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(stream = self.stream, from = lease.name(), to = next.name(), %failure, "engine failover");
                    let switched = AsrUpdate::EngineSwitched {
                        stream: self.stream,
                        from: lease.name().to_string(),
                        to: next.name().to_string(),
                        failure,
                        replayed_ms: (state.replay.samples() as u64 * 1000)
                            / u64::from(self.options.sample_rate.max(1)),
                    };
                    if self.updates.send(switched).await.is_err() {
                        return;
                    }
                    lease = next;
                    // The new engine gets the whole final timeout.
                    if state.closing {
                        state.closed_at = Some(Instant::now());
                    }
                    continue;
                }
            };
            self.report(update).await;
            return;
        }
    }

    async fn report(&self, update: AsrUpdate) {
        let _ = self.updates.send(update).await;
    }

    /// Run the stream on `lease`'s engine: replay first, then new input, until it ends.
    async fn attempt(&self, lease: &Lease, state: &mut StreamState) -> Attempt {
        let (input_tx, input_rx) = mpsc::channel(STREAM_BUFFER);
        let (results_tx, mut results_rx) = mpsc::channel(RESULT_BUFFER);
        let run = lease
            .engine()
            .run_stream(self.options.clone(), input_rx, results_tx);
        tokio::pin!(run);
        let mut pending: VecDeque<StreamInput> = state.replay.inputs().cloned().collect();
        let mut input_tx = Some(input_tx);
        let final_timeout = self.client.driver.final_timeout;
        loop {
            // The request side of the engine closes once the session's has and all is sent.
            if state.closing && pending.is_empty() {
                input_tx = None;
            }
            let deadline = state.closed_at.map(|at| at + final_timeout);
            tokio::select! {
                biased;
                outcome = &mut run => {
                    // Results the engine sent before it returned are still queued.
                    while let Ok(result) = results_rx.try_recv() {
                        if !self.deliver(result, state).await {
                            return Attempt::SessionGone;
                        }
                    }
                    return match outcome {
                        Ok(()) => Attempt::Closed,
                        Err(failure) => Attempt::EngineFailed(failure),
                    };
                }
                Some(result) = results_rx.recv() => {
                    if !self.deliver(result, state).await {
                        return Attempt::SessionGone;
                    }
                }
                abort = async { state.aborted.as_mut().expect("guarded").await }, if state.aborted.is_some() => {
                    state.aborted = None;
                    if let Ok(failure) = abort {
                        return Attempt::Aborted(failure);
                    }
                }
                permit = reserve(input_tx.clone()), if input_tx.is_some() && !pending.is_empty() => {
                    match permit {
                        Ok(permit) => {
                            permit.send(pending.pop_front().expect("guarded"));
                        }
                        // The engine stopped reading; its run's outcome says why.
                        Err(_) => { input_tx = None; pending.clear(); }
                    }
                }
                input = state.requests.recv(), if !state.closing && pending.len() < STREAM_BUFFER => match input {
                    Some(input) => {
                        state.replay.push(&input);
                        pending.push_back(input);
                    }
                    None => {
                        state.closing = true;
                        state.closed_at = Some(Instant::now());
                    }
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    return Attempt::EngineFailed(AsrFailure::Timeout { after: final_timeout });
                }
            }
        }
    }

    /// Number and hand one result to the session. False when the session is gone.
    async fn deliver(&self, r: EngineResult, state: &mut StreamState) -> bool {
        let utterance = match (self.stream, r.utterance) {
            (0, 0) => state.finals + 1,
            (0, id) => id,
            (stream, _) => stream,
        };
        if r.is_final {
            state.finals += 1;
            state.delivered_final = true;
            state.replay.handle_final(r.utterance, r.end_ms);
        }
        let hypothesis = Hypothesis {
            stream: self.stream,
            utterance,
            is_final: r.is_final,
            text: r.text,
            confidence: r.confidence,
            words: r.words,
            start_ms: r.start_ms,
            end_ms: r.end_ms,
        };
        self.updates
            .send(AsrUpdate::Result(hypothesis))
            .await
            .is_ok()
    }
}
