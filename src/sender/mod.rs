//! RTP sender: packetizes WAV audio as Asterisk would and sends it at real-time pace.
//!
//! Asterisk's externalMedia sends 20 ms packets from one socket with a random SSRC and
//! starting sequence, the first timestamp equal to the frame size, and no marker on the
//! first packet (ASTERISK-NOTES.md). The demo, the tests and the load generator use this.
//! Every codec the gateway decodes can be sent: pcmu, pcma, L16 at any rate, G.722, Opus.

pub mod encode;
pub mod impair;
pub mod netem;

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
    #[error("sending {0:?} as audio is not supported")]
    UnsupportedCodec(CodecKind),
    #[error("a {ptime_ms} ms packet holds no samples at {rate} Hz")]
    Ptime { ptime_ms: u32, rate: u32 },
    #[error("opus encoder: {0}")]
    Opus(#[from] audiopus::Error),
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
    /// What Asterisk sends for `format=slin` (PT 10, L16 at 8 kHz).
    pub fn slin8() -> Self {
        Self {
            codec: CodecKind::L16 { rate: 8000 },
            payload_type: 10,
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
    /// What Asterisk sends for `format=g722` (PT 9).
    pub fn g722() -> Self {
        Self {
            codec: CodecKind::G722,
            payload_type: 9,
            ptime_ms: 20,
            impairments: Impairments::default(),
        }
    }
    /// What Asterisk sends for `format=opus` (PT 107).
    pub fn opus() -> Self {
        Self {
            codec: CodecKind::Opus,
            payload_type: 107,
            ptime_ms: 20,
            impairments: Impairments::default(),
        }
    }

    /// Options for an Asterisk format name or ours (case-insensitive): `pcmu`/`ulaw`,
    /// `pcma`/`alaw`, `slin`/`l16`/`slin8`, `slin16`/`l16/16000`, `g722`, `opus`.
    pub fn for_codec(name: &str) -> Option<SendOptions> {
        match name.trim().to_ascii_lowercase().as_str() {
            "pcmu" | "ulaw" => Some(Self::pcmu()),
            "pcma" | "alaw" => Some(Self::pcma()),
            "slin" | "l16" | "slin8" => Some(Self::slin8()),
            "slin16" | "l16/16000" => Some(Self::slin16()),
            "g722" => Some(Self::g722()),
            "opus" => Some(Self::opus()),
            _ => None,
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
///
/// The audio is resampled to the encoder's rate and cut into `ptime_ms` frames, the
/// last one padded with silence. Timestamps count the codec's RTP clock, which for
/// G.722 (8000) is half its sample rate; the first one is one frame, as Asterisk's.
pub fn packetize(
    samples: &[i16],
    rate: u32,
    options: &SendOptions,
    ssrc: u32,
    first_sequence: u16,
) -> Result<Vec<Vec<u8>>, SendError> {
    let mut encoder = encode::Encoder::new(options.codec)?;
    let codec_rate = encoder.sample_rate();
    let mut pcm = Vec::with_capacity(
        (samples.len() as u64 * codec_rate as u64 / rate.max(1) as u64) as usize + 1024,
    );
    let mut resampler = Resampler::new(rate, codec_rate)?;
    resampler.process(samples, &mut pcm);
    resampler.flush(&mut pcm);
    // Samples per packet at the encoder's rate, and RTP clock ticks per packet.
    let frame = (codec_rate * options.ptime_ms / 1000) as usize;
    let step = options.codec.clock_rate() * options.ptime_ms / 1000;
    if frame == 0 || step == 0 {
        return Err(SendError::Ptime {
            ptime_ms: options.ptime_ms,
            rate: codec_rate,
        });
    }
    let mut packets = Vec::with_capacity(pcm.len() / frame + 1);
    let mut padded = vec![0i16; frame];
    let mut payload = Vec::with_capacity(frame * 2);
    for (i, chunk) in pcm.chunks(frame).enumerate() {
        let chunk = if chunk.len() < frame {
            padded[..chunk.len()].copy_from_slice(chunk);
            padded[chunk.len()..].fill(0);
            &padded[..]
        } else {
            chunk
        };
        let header = RtpHeader {
            marker: false,
            payload_type: options.payload_type,
            sequence: first_sequence.wrapping_add(i as u16),
            timestamp: (i as u32).wrapping_add(1).wrapping_mul(step),
            ssrc,
        };
        // Payload sizes differ by codec (Opus varies): encode first, then size the packet.
        payload.clear();
        encoder.encode(chunk, &mut payload)?;
        let mut packet = Vec::with_capacity(12 + payload.len());
        header.write_to(&mut packet);
        packet.extend_from_slice(&payload);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::g722::G722Decoder;
    use crate::media::codec::opus::OpusDecoder;
    use crate::media::rtp;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    /// `seconds` of a 440 Hz tone at `rate`, amplitude 8000.
    fn tone(rate: u32, seconds: f64) -> Vec<i16> {
        let n = (rate as f64 * seconds) as usize;
        let w = 2.0 * std::f64::consts::PI * 440.0 / rate as f64;
        (0..n)
            .map(|i| (8000.0 * (w * i as f64).sin()).round() as i16)
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    /// Samples `packetize` feeds the encoder: the input resampled to `to` Hz, flushed.
    fn resampled_len(samples: &[i16], from: u32, to: u32) -> usize {
        let mut r = Resampler::new(from, to).unwrap();
        let mut out = Vec::new();
        r.process(samples, &mut out);
        r.flush(&mut out);
        out.len()
    }

    #[test]
    fn headers_per_codec() {
        // (options, payload bytes per packet (None: variable), timestamp step, encoder rate)
        let cases = [
            (SendOptions::pcmu(), Some(160), 160, 8_000),
            (SendOptions::pcma(), Some(160), 160, 8_000),
            (SendOptions::slin8(), Some(320), 160, 8_000),
            (SendOptions::slin16(), Some(640), 320, 16_000),
            (SendOptions::g722(), Some(160), 160, 16_000),
            (SendOptions::opus(), None, 960, 48_000),
        ];
        let audio = tone(16_000, 0.5);
        for (options, payload_len, step, rate) in cases {
            let packets = packetize(&audio, 16_000, &options, 0xDEAD_BEEF, 65_530).unwrap();
            let frame = (rate / 50) as usize;
            let expected = resampled_len(&audio, 16_000, rate).div_ceil(frame);
            assert_eq!(packets.len(), expected, "{:?}", options.codec);
            assert!(packets.len() >= 25);
            for (i, bytes) in packets.iter().enumerate() {
                let packet = rtp::parse(bytes).unwrap();
                let h = packet.header;
                assert_eq!(h.payload_type, options.payload_type);
                assert_eq!(h.ssrc, 0xDEAD_BEEF);
                assert!(!h.marker);
                assert_eq!(h.sequence, 65_530u16.wrapping_add(i as u16));
                assert_eq!(h.timestamp, (i as u32 + 1) * step, "{:?}", options.codec);
                match payload_len {
                    Some(len) => assert_eq!(packet.payload.len(), len, "{:?}", options.codec),
                    None => assert!(!packet.payload.is_empty() && packet.payload.len() <= 1275),
                }
            }
        }
    }

    #[test]
    fn g722_packets_are_one_continuous_stream() {
        // The encoder keeps its state across packets: the payloads decode, in order,
        // to the input (delayed by the QMFs) with no per-packet restart.
        let audio = tone(16_000, 1.0);
        let packets = packetize(&audio, 16_000, &SendOptions::g722(), 1, 0).unwrap();
        let mut dec = G722Decoder::new();
        let mut out = Vec::new();
        for bytes in &packets {
            dec.decode(rtp::parse(bytes).unwrap().payload, &mut out);
        }
        assert_eq!(out.len(), packets.len() * 320);
        let (mut sig, mut err) = (0.0f64, 0.0f64);
        // G.722's end-to-end delay is 22 samples (media::codec::g722_encoder tests).
        for (s, o) in audio[400..].iter().zip(&out[400 + 22..]) {
            let s = *s as f64;
            sig += s * s;
            err += (*o as f64 - s).powi(2);
        }
        let snr = 10.0 * (sig / err).log10();
        eprintln!("packetized G.722, 440 Hz: SNR {snr:.1} dB");
        assert!(snr > 30.0, "SNR {snr:.1} dB");
    }

    #[test]
    fn opus_packets_decode_to_the_wav() {
        let (samples, rate) = read_wav(&fixture("balance.wav")).unwrap();
        let packets = packetize(&samples, rate, &SendOptions::opus(), 7, 100).unwrap();
        let expected = resampled_len(&samples, rate, 48_000).div_ceil(960);
        assert_eq!(packets.len(), expected);
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        for bytes in &packets {
            let payload = rtp::parse(bytes).unwrap().payload;
            sizes.push(payload.len());
            let before = out.len();
            dec.decode(payload, &mut out).unwrap();
            assert_eq!(out.len() - before, 960);
        }
        let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        eprintln!("opus payloads: {min}..{max} bytes, mean {mean:.0}");
        assert!(*min >= 1 && *max <= 1275);
        // Speech at 20 ms: tens to a few hundred bytes a packet, not a constant size.
        assert!((20.0..400.0).contains(&mean), "mean {mean:.0} bytes");
        assert!(max > min);
        // Level: the decode carries the WAV's energy (within 3 dB over the whole file).
        let src_rms = rms(&samples);
        let out_rms = rms(&out);
        let db = 20.0 * (out_rms / src_rms).log10();
        eprintln!("opus round trip level: {db:+.2} dB (source rms {src_rms:.0})");
        assert!(db.abs() < 3.0, "level off by {db:.2} dB");
    }

    #[test]
    fn for_codec_names() {
        let cases = [
            ("pcmu", SendOptions::pcmu()),
            ("ulaw", SendOptions::pcmu()),
            ("pcma", SendOptions::pcma()),
            ("alaw", SendOptions::pcma()),
            ("slin", SendOptions::slin8()),
            ("l16", SendOptions::slin8()),
            ("slin8", SendOptions::slin8()),
            ("slin16", SendOptions::slin16()),
            ("l16/16000", SendOptions::slin16()),
            ("g722", SendOptions::g722()),
            ("opus", SendOptions::opus()),
            ("OPUS", SendOptions::opus()),
        ];
        for (name, options) in cases {
            assert_eq!(SendOptions::for_codec(name), Some(options), "{name}");
        }
        for bad in ["", "gsm", "telephone-event", "slin24", "l16/8000x"] {
            assert_eq!(SendOptions::for_codec(bad), None, "{bad:?}");
        }
        assert_eq!(SendOptions::slin8().payload_type, 10);
        assert_eq!(SendOptions::g722().payload_type, 9);
        assert_eq!(SendOptions::opus().payload_type, 107);
    }

    #[test]
    fn unusable_options_are_errors() {
        let audio = tone(8_000, 0.1);
        let mut options = SendOptions::pcmu();
        options.codec = CodecKind::TelephoneEvent;
        assert!(matches!(
            packetize(&audio, 8_000, &options, 1, 1),
            Err(SendError::UnsupportedCodec(_))
        ));
        let mut options = SendOptions::pcmu();
        options.ptime_ms = 0;
        assert!(matches!(
            packetize(&audio, 8_000, &options, 1, 1),
            Err(SendError::Ptime { .. })
        ));
        // 25 ms is no Opus frame length: libopus refuses it.
        let mut options = SendOptions::opus();
        options.ptime_ms = 25;
        assert!(matches!(
            packetize(&audio, 8_000, &options, 1, 1),
            Err(SendError::Opus(_))
        ));
    }
}
