//! Payload encoding for what the sender emits: G.711 mu-law/A-law, big-endian L16, G.722, Opus.

use crate::media::codec::g722_encoder::G722Encoder;
use crate::media::codec::opus::OpusEncoder;
use crate::media::codec::{g711, CodecKind};

use super::SendError;

/// An encoder per stream; G.722 and Opus keep state from frame to frame.
#[derive(Debug)]
pub enum Encoder {
    Pcmu,
    Pcma,
    /// Big-endian 16-bit PCM at `rate` Hz.
    L16 {
        rate: u32,
    },
    G722(Box<G722Encoder>),
    Opus(Box<OpusEncoder>),
}

impl Encoder {
    /// An encoder for `codec`; telephone-event is not audio and is refused.
    pub fn new(codec: CodecKind) -> Result<Encoder, SendError> {
        Ok(match codec {
            CodecKind::Pcmu => Encoder::Pcmu,
            CodecKind::Pcma => Encoder::Pcma,
            CodecKind::L16 { rate } => Encoder::L16 { rate },
            CodecKind::G722 => Encoder::G722(Box::default()),
            CodecKind::Opus => Encoder::Opus(Box::new(OpusEncoder::new()?)),
            CodecKind::TelephoneEvent => return Err(SendError::UnsupportedCodec(codec)),
        })
    }

    /// What this encoder produces.
    pub fn kind(&self) -> CodecKind {
        match self {
            Encoder::Pcmu => CodecKind::Pcmu,
            Encoder::Pcma => CodecKind::Pcma,
            Encoder::L16 { rate } => CodecKind::L16 { rate: *rate },
            Encoder::G722(_) => CodecKind::G722,
            Encoder::Opus(_) => CodecKind::Opus,
        }
    }

    /// Rate the PCM given to `encode` must be at, Hz: 8000 for G.711, the L16 rate,
    /// 16000 for G.722 (whose RTP clock is nonetheless 8000), 48000 for Opus.
    pub fn sample_rate(&self) -> u32 {
        self.kind().sample_rate()
    }

    /// Append one frame's payload for `pcm` (mono, at `sample_rate()`) to `out`.
    ///
    /// G.711 and L16 take any length; G.722 emits one octet per sample pair; Opus
    /// needs a frame libopus accepts (960 samples for 20 ms). On error nothing is appended.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), SendError> {
        match self {
            Encoder::Pcmu => out.extend(pcm.iter().map(|&s| g711::encode_ulaw(s))),
            Encoder::Pcma => out.extend(pcm.iter().map(|&s| g711::encode_alaw(s))),
            Encoder::L16 { .. } => out.extend(pcm.iter().flat_map(|s| s.to_be_bytes())),
            Encoder::G722(enc) => enc.encode(pcm, out),
            Encoder::Opus(enc) => enc.encode(pcm, out)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::Decoder;

    fn encode(codec: CodecKind, pcm: &[i16], out: &mut Vec<u8>) {
        Encoder::new(codec).unwrap().encode(pcm, out).unwrap();
    }

    #[test]
    fn encoded_payloads_decode_back_within_g711_steps() {
        let pcm: Vec<i16> = (-32768..=32767).step_by(97).map(|s| s as i16).collect();
        for codec in [CodecKind::Pcmu, CodecKind::Pcma] {
            let mut payload = Vec::new();
            encode(codec, &pcm, &mut payload);
            assert_eq!(payload.len(), pcm.len());
            let mut decoded = Vec::new();
            Decoder::new(codec)
                .unwrap()
                .decode(&payload, &mut decoded)
                .unwrap();
            for (orig, back) in pcm.iter().zip(&decoded) {
                let err = (*orig as i32 - *back as i32).abs();
                assert!(
                    err <= (*orig as i32).abs() / 16 + 16,
                    "{codec:?}: {orig} -> {back}"
                );
            }
        }
    }

    #[test]
    fn l16_is_big_endian() {
        let mut out = Vec::new();
        encode(CodecKind::L16 { rate: 16000 }, &[0x0102, -2], &mut out);
        assert_eq!(out, vec![0x01, 0x02, 0xFF, 0xFE]);
    }

    #[test]
    fn rates_and_kinds() {
        let kinds = [
            (CodecKind::Pcmu, 8_000),
            (CodecKind::Pcma, 8_000),
            (CodecKind::L16 { rate: 8_000 }, 8_000),
            (CodecKind::L16 { rate: 44_100 }, 44_100),
            (CodecKind::G722, 16_000),
            (CodecKind::Opus, 48_000),
        ];
        for (kind, rate) in kinds {
            let enc = Encoder::new(kind).unwrap();
            assert_eq!(enc.kind(), kind);
            assert_eq!(enc.sample_rate(), rate, "{kind:?}");
        }
        assert!(matches!(
            Encoder::new(CodecKind::TelephoneEvent),
            Err(SendError::UnsupportedCodec(CodecKind::TelephoneEvent))
        ));
    }

    #[test]
    fn g722_frame_is_half_the_samples() {
        let mut out = vec![0xAA];
        encode(CodecKind::G722, &[0; 320], &mut out);
        assert_eq!(out.len(), 1 + 160);
        assert_eq!(out[0], 0xAA);
    }

    #[test]
    fn opus_rejects_a_bad_frame_length_and_appends_nothing() {
        let mut enc = Encoder::new(CodecKind::Opus).unwrap();
        let mut out = vec![7];
        assert!(matches!(
            enc.encode(&[0; 1000], &mut out),
            Err(SendError::Opus(_))
        ));
        assert_eq!(out, vec![7]);
        enc.encode(&[0; 960], &mut out).unwrap();
        assert!(out.len() > 1);
    }
}
