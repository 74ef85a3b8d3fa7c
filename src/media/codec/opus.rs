//! Opus through libopus (audiopus), mono, 48 kHz: the decoder, and the encoder the sender uses.
//!
//! RTP Opus (RFC 7587) always uses a 48 kHz clock; we decode at 48 kHz mono
//! (a stereo packet is downmixed by libopus). One packet holds 2.5 to 120 ms.

use audiopus::coder::{Decoder as LibopusDecoder, Encoder as LibopusEncoder};
use audiopus::packet::Packet;
use audiopus::{Application, Channels, MutSignals, SampleRate};

/// Decoded rate, Hz.
pub const SAMPLE_RATE: u32 = 48_000;
/// Longest Opus packet: 120 ms at 48 kHz.
pub const MAX_FRAME_SAMPLES: usize = 5_760;
/// Payload room per encoded packet, bytes: libopus's recommended `max_data_bytes`.
const MAX_PACKET_BYTES: usize = 4_000;
/// libopus conceals in multiples of 2.5 ms: 120 samples at 48 kHz.
const PLC_GRANULE: usize = 120;

/// One stream's libopus decoder state (mono, 48 kHz).
pub struct OpusDecoder {
    inner: LibopusDecoder,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").finish_non_exhaustive()
    }
}

impl OpusDecoder {
    pub fn new() -> Result<Self, audiopus::Error> {
        Ok(OpusDecoder {
            inner: LibopusDecoder::new(SampleRate::Hz48000, Channels::Mono)?,
        })
    }

    /// Decode one packet, appending its samples (48 kHz) to `out`.
    ///
    /// Decodes straight into `out`'s tail: no scratch buffer, no copy. On error
    /// nothing is appended (an empty or malformed packet is an error).
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), audiopus::Error> {
        let packet = Packet::try_from(payload)?;
        let samples = self.inner.nb_samples(Packet::try_from(payload)?)?;
        if samples > MAX_FRAME_SAMPLES {
            return Err(audiopus::Error::Opus(audiopus::ErrorCode::InvalidPacket));
        }
        let start = out.len();
        out.resize(start + samples, 0);
        let result = MutSignals::try_from(&mut out[start..])
            .and_then(|signals| self.inner.decode(Some(packet), signals, false));
        match result {
            Ok(n) => {
                out.truncate(start + n);
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// Append `samples` (48 kHz) of packet-loss concealment.
    ///
    /// libopus extrapolates from the last decoded audio, in multiples of 2.5 ms;
    /// a remainder below 2.5 ms (or a libopus failure) is filled with silence.
    pub fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        let target = out.len() + samples;
        let mut remaining = samples - samples % PLC_GRANULE;
        while remaining > 0 {
            let chunk = remaining.min(MAX_FRAME_SAMPLES);
            let start = out.len();
            out.resize(start + chunk, 0);
            let result = MutSignals::try_from(&mut out[start..])
                .and_then(|signals| self.inner.decode(None, signals, false));
            match result {
                Ok(n) if n > 0 => {
                    out.truncate(start + n.min(chunk));
                    remaining -= n.min(chunk);
                }
                _ => {
                    out.truncate(start);
                    break;
                }
            }
        }
        out.resize(target, 0);
    }

    /// Fill `samples` lost just before `next`: libopus concealment for all but the last
    /// frame, then the last frame from the in-band FEC (a low-bitrate copy of the previous
    /// frame) that `next` carries. A packet without FEC data decodes as concealment, and an
    /// unusable `next` falls back to concealment for the whole gap.
    pub fn recover(&mut self, samples: usize, next: &[u8], out: &mut Vec<i16>) {
        let frame = Packet::try_from(next)
            .and_then(|p| self.inner.nb_samples(p))
            .ok()
            .filter(|&n| n > 0 && n <= samples && n <= MAX_FRAME_SAMPLES);
        let Some(frame) = frame else {
            return self.conceal(samples, out);
        };
        self.conceal(samples - frame, out);
        let start = out.len();
        out.resize(start + frame, 0);
        let result = Packet::try_from(next).and_then(|packet| {
            MutSignals::try_from(&mut out[start..])
                .and_then(|signals| self.inner.decode(Some(packet), signals, true))
        });
        if !matches!(result, Ok(n) if n == frame) {
            out.truncate(start);
            self.conceal(frame, out);
        }
    }

    /// Back to the initial state (e.g. on an SSRC change).
    pub fn reset(&mut self) {
        // Recreating cannot fail for a valid rate/channel pair; keep the old state if it does.
        if let Ok(fresh) = LibopusDecoder::new(SampleRate::Hz48000, Channels::Mono) {
            self.inner = fresh;
        }
    }
}

/// One stream's libopus encoder: mono 48 kHz, `Application::Voip`, libopus's default
/// bitrate and complexity.
pub struct OpusEncoder {
    inner: LibopusEncoder,
    /// libopus writes a packet here first; only its actual length is appended to `out`.
    scratch: [u8; MAX_PACKET_BYTES],
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder").finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// With in-band FEC on (expecting 10 % loss), as a telephone endpoint would send it.
    pub fn new() -> Result<Self, audiopus::Error> {
        let mut inner =
            LibopusEncoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip)?;
        inner.set_inband_fec(true)?;
        inner.set_packet_loss_perc(10)?;
        Ok(OpusEncoder {
            inner,
            scratch: [0; MAX_PACKET_BYTES],
        })
    }

    /// Encode one frame (48 kHz; 2.5, 5, 10, 20, 40 or 60 ms, e.g. 960 samples for 20 ms)
    /// as one packet, appended to `out`. Other lengths are libopus errors; on error
    /// nothing is appended. No allocation besides `out`'s growth.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), audiopus::Error> {
        let n = self.inner.encode(pcm, &mut self.scratch)?;
        out.extend_from_slice(&self.scratch[..n]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audiopus::coder::Encoder;
    use audiopus::{Application, Bitrate};

    /// 20 ms frames of a 440 Hz tone at 48 kHz, amplitude 10000.
    fn tone_frames(frames: usize) -> Vec<Vec<i16>> {
        (0..frames)
            .map(|f| {
                (0..960)
                    .map(|i| {
                        let t = (f * 960 + i) as f64 / 48_000.0;
                        (10_000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
                    })
                    .collect()
            })
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    fn encode(frames: &[Vec<i16>]) -> Vec<Vec<u8>> {
        let mut enc = Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip).unwrap();
        enc.set_bitrate(Bitrate::BitsPerSecond(32_000)).unwrap();
        let mut buf = [0u8; 1500];
        frames
            .iter()
            .map(|f| {
                let n = enc.encode(f, &mut buf).unwrap();
                buf[..n].to_vec()
            })
            .collect()
    }

    #[test]
    fn decodes_encoded_tone() {
        let frames = tone_frames(25);
        let packets = encode(&frames);
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        for p in &packets {
            dec.decode(p, &mut out).unwrap();
        }
        assert_eq!(out.len(), 25 * 960);
        // Skip the first 100 ms (encoder start-up); energy within 2 dB of the source.
        let src_rms = rms(&frames[5..].concat());
        let out_rms = rms(&out[5 * 960..]);
        let db = 20.0 * (out_rms / src_rms).log10();
        assert!(db.abs() < 2.0, "level off by {db:.2} dB");
    }

    #[test]
    fn in_band_fec_recovers_a_lost_frame_better_than_concealment() {
        // Speech-like audio: a 220 Hz tone whose pitch jumps to 330 Hz in the lost frame,
        // which concealment cannot foresee.
        let pcm: Vec<i16> = (0..960 * 20)
            .map(|n| {
                let hz = if n < 960 * 10 { 220.0 } else { 330.0 };
                let t = n as f64 / 48_000.0;
                (8_000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
            })
            .collect();
        let mut enc = OpusEncoder::new().unwrap();
        let packets: Vec<Vec<u8>> = pcm
            .chunks(960)
            .map(|frame| {
                let mut p = Vec::new();
                enc.encode(frame, &mut p).unwrap();
                p
            })
            .collect();
        let lost = 10;
        let decode_with = |fec: bool| {
            let mut dec = OpusDecoder::new().unwrap();
            let mut out = Vec::new();
            for (i, p) in packets.iter().enumerate() {
                if i == lost {
                    continue;
                }
                if i == lost + 1 {
                    if fec {
                        dec.recover(960, p, &mut out);
                    } else {
                        dec.conceal(960, &mut out);
                    }
                }
                dec.decode(p, &mut out).unwrap();
            }
            out
        };
        let mut reference = Vec::new();
        let mut dec = OpusDecoder::new().unwrap();
        for p in &packets {
            dec.decode(p, &mut reference).unwrap();
        }
        let error = |out: &[i16]| {
            let frame = lost * 960..(lost + 1) * 960;
            assert_eq!(out.len(), reference.len());
            (out[frame.clone()].iter().zip(&reference[frame]))
                .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let (with_fec, without) = (error(&decode_with(true)), error(&decode_with(false)));
        assert!(
            with_fec < without / 2.0,
            "FEC error {with_fec:.0}, concealment error {without:.0}"
        );
    }

    #[test]
    fn recover_without_a_usable_next_packet_conceals() {
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        dec.recover(960, &[], &mut out);
        assert_eq!(out.len(), 960);
        // A next packet longer than the gap: concealment for the gap, nothing more.
        let mut enc = OpusEncoder::new().unwrap();
        let mut p = Vec::new();
        enc.encode(&[0i16; 1920], &mut p).unwrap();
        dec.recover(960, &p, &mut out);
        assert_eq!(out.len(), 1920);
    }

    #[test]
    fn conceal_extrapolates_then_fades() {
        let frames = tone_frames(10);
        let packets = encode(&frames);
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        for p in &packets {
            dec.decode(p, &mut out).unwrap();
        }
        let before = out.len();
        dec.conceal(960, &mut out);
        assert_eq!(out.len(), before + 960);
        // PLC continues the tone rather than dropping to silence.
        assert!(
            rms(&out[before..]) > 1_000.0,
            "PLC rms {}",
            rms(&out[before..])
        );
        // Odd lengths are honoured (remainder is silence).
        dec.conceal(1000, &mut out);
        assert_eq!(out.len(), before + 1960);
        // Decoding resumes after concealment.
        dec.decode(&packets[0], &mut out).unwrap();
        assert_eq!(out.len(), before + 1960 + 960);
    }

    #[test]
    fn bad_packets_are_errors_and_append_nothing() {
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = vec![3];
        assert!(dec.decode(&[], &mut out).is_err());
        // TOC code 3 (arbitrary frame count) with a truncated frame-count byte.
        assert!(dec.decode(&[0x03], &mut out).is_err());
        assert_eq!(out, vec![3]);
    }
}
