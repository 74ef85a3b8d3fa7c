//! Media of the fake's externalMedia channels: the caller's voice as 20 ms frames, and
//! the RTP, AudioSocket and WebSocket transports that carry it, paced in real time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asr_gateway::media::codec::{g711, CodecKind};
use asr_gateway::media::resample::Resampler;
use asr_gateway::media::rtp::RtpHeader;
use asr_gateway::sender;
use axum::extract::ws::{Message, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::events::close_gracefully;
use super::model::LinkCmd;
use super::{lock, FakeAsterisk};

/// 20 ms, Asterisk's frame length here.
pub(super) const PTIME: Duration = Duration::from_millis(20);

#[derive(Default)]
pub(super) struct Counters {
    pub rtp_packets: AtomicU64,
    pub frames: AtomicU64,
}

/// The `format` of an externalMedia channel (the ones the fake can produce).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Ulaw,
    Alaw,
    Slin,
    Slin16,
}

impl Format {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "ulaw" => Self::Ulaw,
            "alaw" => Self::Alaw,
            "slin" => Self::Slin,
            "slin16" => Self::Slin16,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ulaw => "ulaw",
            Self::Alaw => "alaw",
            Self::Slin => "slin",
            Self::Slin16 => "slin16",
        }
    }

    pub fn rate(self) -> u32 {
        match self {
            Self::Slin16 => 16_000,
            _ => 8_000,
        }
    }

    /// Samples per 20 ms frame (also the RTP timestamp step).
    pub fn samples(self) -> usize {
        self.rate() as usize / 50
    }

    /// Asterisk's static payload type (ASTERISK-NOTES.md).
    pub fn payload_type(self) -> u8 {
        match self {
            Self::Ulaw => 0,
            Self::Alaw => 8,
            Self::Slin => 10,
            Self::Slin16 => 118,
        }
    }

    pub fn codec(self) -> CodecKind {
        match self {
            Self::Ulaw => CodecKind::Pcmu,
            Self::Alaw => CodecKind::Pcma,
            Self::Slin => CodecKind::L16 { rate: 8_000 },
            Self::Slin16 => CodecKind::L16 { rate: 16_000 },
        }
    }

    /// `MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE`: bytes per 20 ms.
    pub fn optimal_frame_size(self) -> usize {
        match self {
            Self::Ulaw | Self::Alaw => 160,
            Self::Slin => 320,
            Self::Slin16 => 640,
        }
    }

    /// One frame as WebSocket / AudioSocket carry it: G.711 bytes, or slin little-endian.
    fn encode_le(self, pcm: &[i16]) -> Vec<u8> {
        match self {
            Self::Ulaw => pcm.iter().map(|&s| g711::encode_ulaw(s)).collect(),
            Self::Alaw => pcm.iter().map(|&s| g711::encode_alaw(s)).collect(),
            Self::Slin | Self::Slin16 => pcm.iter().flat_map(|s| s.to_le_bytes()).collect(),
        }
    }

    /// AudioSocket frame type: 0x12 for slin16, 0x10 for everything else (Asterisk
    /// labels u-law bytes 0x10 too).
    fn audiosocket_kind(self) -> u8 {
        match self {
            Self::Slin16 => 0x12,
            _ => 0x10,
        }
    }
}

/// A caller's voice, resampled on demand to the rates media asks for.
pub(super) struct Voice {
    samples: Vec<i16>,
    rate: u32,
    by_rate: Mutex<HashMap<u32, Arc<Vec<i16>>>>,
}

impl Voice {
    /// Reads a mono WAV (panics with the reason if it cannot).
    pub fn load(path: &Path) -> Arc<Voice> {
        let (samples, rate) = sender::read_wav(path)
            .unwrap_or_else(|e| panic!("fake Asterisk: voice {}: {e}", path.display()));
        Arc::new(Voice {
            samples,
            rate,
            by_rate: Mutex::new(HashMap::new()),
        })
    }

    /// The whole voice at `rate`, resampled exactly as `sender::packetize` does.
    pub fn pcm(&self, rate: u32) -> Arc<Vec<i16>> {
        let mut cache = lock(&self.by_rate);
        cache
            .entry(rate)
            .or_insert_with(|| {
                let mut out = Vec::with_capacity(
                    self.samples.len() * rate as usize / self.rate as usize + 1024,
                );
                let mut resampler =
                    Resampler::new(self.rate, rate).expect("fake Asterisk: resampler");
                resampler.process(&self.samples, &mut out);
                resampler.flush(&mut out);
                Arc::new(out)
            })
            .clone()
    }
}

/// What one bridge member contributes to a flow: a voice from a frame on, or silence.
pub(super) struct Source {
    pub pcm: Option<Arc<Vec<i16>>>,
    pub first_frame: u64,
}

impl Source {
    pub fn silence() -> Self {
        Source {
            pcm: None,
            first_frame: 0,
        }
    }

    /// Adds frame `n` (of `len` samples) of this source into `out`.
    fn mix_into(&self, n: u64, out: &mut [i16]) {
        let Some(pcm) = &self.pcm else {
            return;
        };
        let start = (self.first_frame + n) as usize * out.len();
        if start >= pcm.len() {
            return;
        }
        let end = (start + out.len()).min(pcm.len());
        for (o, s) in out.iter_mut().zip(&pcm[start..end]) {
            *o = o.saturating_add(*s);
        }
    }
}

/// RTP numbering of one externalMedia channel, kept across bridge changes.
pub(super) struct RtpStream {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    last_sent: Option<Instant>,
}

impl RtpStream {
    /// Random SSRC and first sequence; the first timestamp is one frame.
    pub fn new(format: Format) -> Self {
        RtpStream {
            ssrc: rand::random(),
            sequence: rand::random(),
            timestamp: format.samples() as u32,
            last_sent: None,
        }
    }

    /// Header + payload of the next packet. `resume`: first packet of a new flow.
    fn packet(&mut self, format: Format, pcm: &[i16], resume: bool) -> Vec<u8> {
        let step = format.samples() as u32;
        let mut marker = false;
        if let (true, Some(last)) = (resume, self.last_sent) {
            // Resuming after a pause: marker set, timestamp follows real time.
            let gap = (last.elapsed().as_millis() / PTIME.as_millis()) as u32;
            if gap > 1 {
                marker = true;
                self.timestamp = self.timestamp.wrapping_add(step * (gap - 1));
            }
        }
        let header = RtpHeader {
            marker,
            payload_type: format.payload_type(),
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
        };
        let mut packet = Vec::with_capacity(12 + format.optimal_frame_size());
        header.write_to(&mut packet);
        // The fake's formats are G.711 and L16, which keep no state: a fresh encoder
        // per packet is exact, and neither construction nor encoding can fail.
        sender::encode::Encoder::new(format.codec())
            .and_then(|mut encoder| encoder.encode(pcm, &mut packet))
            .expect("G.711/L16 encoding cannot fail");
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(step);
        self.last_sent = Some(Instant::now());
        packet
    }
}

/// Where a flow's frames go.
pub(super) enum Sink {
    Rtp {
        socket: Arc<UdpSocket>,
        remote: SocketAddr,
        stream: Arc<Mutex<RtpStream>>,
    },
    AudioSocket(UnboundedSender<LinkCmd>),
    WebSocket(UnboundedSender<LinkCmd>),
}

/// One AudioSocket frame: type, 16-bit big-endian length, payload.
pub(super) fn audiosocket_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(3 + payload.len());
    frame.push(kind);
    frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Sends one frame of the mixed sources every 20 ms until aborted (bridge change,
/// hangup, restart) or the transport is gone.
pub(super) async fn run_flow(
    sink: Sink,
    format: Format,
    sources: Vec<Source>,
    counters: Arc<Counters>,
) {
    let mut ticker = tokio::time::interval(PTIME);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut pcm = vec![0i16; format.samples()];
    for n in 0u64.. {
        ticker.tick().await;
        pcm.iter_mut().for_each(|s| *s = 0);
        for source in &sources {
            source.mix_into(n, &mut pcm);
        }
        match &sink {
            Sink::Rtp {
                socket,
                remote,
                stream,
            } => {
                let packet = lock(stream).packet(format, &pcm, n == 0);
                // A refused datagram (nobody listening yet) is not the end of the stream.
                let _ = socket.send_to(&packet, remote).await;
                counters.rtp_packets.fetch_add(1, Ordering::Relaxed);
            }
            Sink::AudioSocket(tx) => {
                let frame = audiosocket_frame(format.audiosocket_kind(), &format.encode_le(&pcm));
                if tx.send(LinkCmd::Audio(frame)).is_err() {
                    return;
                }
            }
            Sink::WebSocket(tx) => {
                if tx.send(LinkCmd::Audio(format.encode_le(&pcm))).is_err() {
                    return;
                }
            }
        }
        counters.frames.fetch_add(1, Ordering::Relaxed);
    }
}

/// Owns an AudioSocket TCP connection: writes what the fake sends, reads what the app
/// sends. The app's hangup frame, its close, or anything but audio destroys the channel.
pub(super) async fn run_audiosocket(
    fake: FakeAsterisk,
    id: String,
    stream: TcpStream,
    mut rx: UnboundedReceiver<LinkCmd>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(LinkCmd::Audio(frame)) => {
                    if writer.write_all(&frame).await.is_err() {
                        break;
                    }
                }
                Some(LinkCmd::Dtmf(digit)) => {
                    let mut b = [0u8; 4];
                    let frame = audiosocket_frame(0x03, digit.encode_utf8(&mut b).as_bytes());
                    if writer.write_all(&frame).await.is_err() {
                        break;
                    }
                }
                Some(LinkCmd::Close) => {
                    let _ = writer.shutdown().await;
                    return;
                }
                Some(LinkCmd::Kill) | None => return,
            },
            read = reader.read(&mut chunk) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if !app_frames_are_audio(&mut buf) {
                        break;
                    }
                }
            },
        }
    }
    fake.state().destroy(&id, false);
}

/// Consumes the complete frames in `buf`; false on a hangup or non-audio frame.
fn app_frames_are_audio(buf: &mut Vec<u8>) -> bool {
    loop {
        if buf.len() < 3 {
            return true;
        }
        let len = u16::from_be_bytes([buf[1], buf[2]]) as usize;
        if buf.len() < 3 + len {
            return true;
        }
        let kind = buf[0];
        buf.drain(..3 + len);
        if !(0x10..=0x18).contains(&kind) {
            return false;
        }
    }
}

/// Owns a media WebSocket (server mode) once the app connected: MEDIA_START, then
/// StasisStart, then binary frames; the app closing hangs the channel up.
pub(super) async fn run_media_ws(
    fake: FakeAsterisk,
    id: String,
    mut ws: WebSocket,
    mut rx: UnboundedReceiver<LinkCmd>,
    media_start: String,
) {
    if ws.send(Message::Text(media_start.into())).await.is_err() {
        fake.state().destroy(&id, true);
        return;
    }
    fake.state().media_ws_started(&id);
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(LinkCmd::Audio(frame)) => {
                    if ws.send(Message::Binary(frame.into())).await.is_err() {
                        break;
                    }
                }
                Some(LinkCmd::Dtmf(digit)) => {
                    let text = format!("DTMF_END digit:{digit} channel_id:{id}");
                    if ws.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(LinkCmd::Close) => {
                    close_gracefully(&mut ws, 1000).await;
                    return;
                }
                Some(LinkCmd::Kill) | None => return,
            },
            msg = ws.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(Message::Text(t))) if t.as_str().trim() == "HANGUP" => break,
                Some(Ok(_)) => {}
            },
        }
    }
    // The app went away: ChannelHangupRequest (cause 16), StasisEnd, ChannelDestroyed.
    fake.state().destroy(&id, true);
}
