//! RTP sender: packetizes WAV audio as Asterisk would and sends it at real-time pace.
//!
//! Asterisk's externalMedia sends 20 ms packets from one socket with a random SSRC and
//! starting sequence, the first timestamp equal to the frame size, and no marker on the
//! first packet (ASTERISK-NOTES.md). The demo, the tests and the load generator use this.

pub mod encode;
pub mod impair;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::media::codec::CodecKind;
use crate::media::resample::{ResampleError, Resampler};
use crate::media::rtp::RtpHeader;
pub use impair::{Impairments, Injected};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot read {path}: {detail}")]
    Wav { path: String, detail: String },
    #[error("{path} has {channels} channels; sample calls must be mono")]
    NotMono { path: String, channels: u16 },
    #[error("sending {0:?} is not supported (pcmu, pcma and l16 are)")]
    UnsupportedCodec(CodecKind),
    #[error(transparent)]
    Resample(#[from] ResampleError),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SendOptions {
    pub codec: CodecKind,
    pub payload_type: u8,
    /// Audio per packet, ms (Asterisk: 20).
    pub ptime_ms: u32,
    pub impairments: Impairments,
}

impl SendOptions {
    /// What Asterisk sends for `format=ulaw`.
    pub fn pcmu() -> Self {
        Self {
            codec: CodecKind::Pcmu,
            payload_type: 0,
            ptime_ms: 20,
            impairments: Impairments::default(),
        }
    }
    /// What Asterisk sends for `format=alaw`.
    pub fn pcma() -> Self {
        Self {
            codec: CodecKind::Pcma,
            payload_type: 8,
            ptime_ms: 20,
            impairments: Impairments::default(),
        }
    }
    /// What Asterisk sends for `format=slin16` (PT 118).
    pub fn slin16() -> Self {
        Self {
            codec: CodecKind::L16 { rate: 16000 },
            payload_type: 118,
            ptime_ms: 20,
            impairments: Impairments::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Distinct RTP packets the audio made.
    pub packets: u64,
    /// Datagrams put on the wire (duplicates included, dropped excluded).
    pub datagrams: u64,
    pub injected: Injected,
    /// Audio duration, ms.
    pub duration_ms: u64,
}

/// Mono i16 samples and their rate, from a WAV file.
pub fn read_wav(path: &Path) -> Result<(Vec<i16>, u32), SendError> {
    let name = path.display().to_string();
    let reader = hound::WavReader::open(path).map_err(|e| SendError::Wav {
        path: name.clone(),
        detail: e.to_string(),
    })?;
    let spec = reader.spec();
    if spec.channels != 1 {
        return Err(SendError::NotMono {
            path: name,
            channels: spec.channels,
        });
    }
    let samples = reader
        .into_samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SendError::Wav {
            path: name,
            detail: e.to_string(),
        })?;
    Ok((samples, spec.sample_rate))
}

/// Encode audio into complete RTP packets (header + payload), in sequence order.
pub fn packetize(
    samples: &[i16],
    rate: u32,
    options: &SendOptions,
    ssrc: u32,
    first_sequence: u16,
) -> Result<Vec<Vec<u8>>, SendError> {
    let codec_rate = match options.codec {
        CodecKind::Pcmu | CodecKind::Pcma => 8000,
        CodecKind::L16 { rate } => rate,
        other => return Err(SendError::UnsupportedCodec(other)),
    };
    let mut pcm = Vec::with_capacity(samples.len() * codec_rate as usize / rate as usize + 1024);
    let mut resampler = Resampler::new(rate, codec_rate)?;
    resampler.process(samples, &mut pcm);
    resampler.flush(&mut pcm);
    let frame = (codec_rate * options.ptime_ms / 1000) as usize;
    let mut packets = Vec::with_capacity(pcm.len() / frame + 1);
    for (i, chunk) in pcm.chunks(frame).enumerate() {
        let mut padded;
        let chunk = if chunk.len() < frame {
            padded = chunk.to_vec();
            padded.resize(frame, 0);
            &padded[..]
        } else {
            chunk
        };
        let header = RtpHeader {
            marker: false,
            payload_type: options.payload_type,
            sequence: first_sequence.wrapping_add(i as u16),
            // Asterisk's first timestamp is one frame.
            timestamp: ((i as u32 + 1) * frame as u32),
            ssrc,
        };
        let mut packet = Vec::with_capacity(12 + frame * 2);
        header.write_to(&mut packet);
        encode::encode(options.codec, chunk, &mut packet);
        packets.push(packet);
    }
    Ok(packets)
}

/// Send `packets` to `target` from `socket`, one slot every `ptime_ms`, with impairments.
pub async fn send_packets(
    socket: &UdpSocket,
    target: SocketAddr,
    packets: &[Vec<u8>],
    options: &SendOptions,
) -> Result<SendReport, SendError> {
    let plan = impair::plan(packets.len(), &options.impairments);
    let mut ticker = tokio::time::interval(Duration::from_millis(options.ptime_ms as u64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut datagrams = 0;
    for slot in &plan.slots {
        ticker.tick().await;
        for &index in slot {
            socket.send_to(&packets[index], target).await?;
            datagrams += 1;
        }
    }
    Ok(SendReport {
        packets: packets.len() as u64,
        datagrams,
        injected: plan.injected,
        duration_ms: packets.len() as u64 * options.ptime_ms as u64,
    })
}

/// Read a WAV and send it as RTP from a fresh socket, as one call.
pub async fn send_wav(
    path: &Path,
    target: SocketAddr,
    options: &SendOptions,
) -> Result<SendReport, SendError> {
    let (samples, rate) = read_wav(path)?;
    let socket = UdpSocket::bind(if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .await?;
    let ssrc = rand::random::<u32>();
    let first_sequence = rand::random::<u16>();
    let packets = packetize(&samples, rate, options, ssrc, first_sequence)?;
    send_packets(&socket, target, &packets, options).await
}
