//! Payload decoding: the codec enum, Asterisk's static payload-type table, dispatch.

pub mod g711;
pub mod g722;
pub mod g722_encoder;
pub mod l16;
pub mod opus;
pub mod plc;

/// What a payload type carries. Closed set: matched on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecKind {
    Pcmu,
    Pcma,
    /// Linear 16-bit PCM, big-endian (network order) over RTP, at `rate` Hz.
    L16 {
        rate: u32,
    },
    /// RTP clock 8000, audio 16 kHz.
    G722,
    /// RTP clock 48000; decoded at 48 kHz.
    Opus,
    /// RFC 4733 DTMF; never decoded to audio.
    TelephoneEvent,
}

/// Asterisk's `slinNN` format names and the rates they stand for (Hz).
const SLIN_NAMES: [(&str, u32); 9] = [
    ("slin", 8_000),
    ("slin12", 12_000),
    ("slin16", 16_000),
    ("slin24", 24_000),
    ("slin32", 32_000),
    ("slin44", 44_100),
    ("slin48", 48_000),
    ("slin96", 96_000),
    ("slin192", 192_000),
];

impl CodecKind {
    /// Config/event name: `pcmu`, `pcma`, `l16/16000`, `g722`, `opus`, `telephone-event`.
    pub fn name(&self) -> String {
        match self {
            CodecKind::Pcmu => "pcmu".to_owned(),
            CodecKind::Pcma => "pcma".to_owned(),
            CodecKind::L16 { rate } => format!("l16/{rate}"),
            CodecKind::G722 => "g722".to_owned(),
            CodecKind::Opus => "opus".to_owned(),
            CodecKind::TelephoneEvent => "telephone-event".to_owned(),
        }
    }

    /// Parse a name as written by `name()`, plus Asterisk's `ulaw`, `alaw`, `slin`, `slin16`, ... .
    ///
    /// Case-insensitive. Also accepts the RTP/SDP encoding names `pcmu/8000`, `pcma/8000`,
    /// `g722/8000`, `opus/48000` and `telephone-event/8000` when the rate is the right one.
    pub fn from_name(name: &str) -> Option<Self> {
        let lower = name.trim().to_ascii_lowercase();
        let (base, rate) = match lower.split_once('/') {
            Some((base, rate)) => (base, Some(rate.parse::<u32>().ok()?)),
            None => (lower.as_str(), None),
        };
        let kind = match base {
            "pcmu" | "ulaw" | "mulaw" => CodecKind::Pcmu,
            "pcma" | "alaw" => CodecKind::Pcma,
            "g722" => CodecKind::G722,
            "opus" => CodecKind::Opus,
            "telephone-event" => CodecKind::TelephoneEvent,
            // Bare `l16` has no agreed rate (RFC 3551 says 44.1 kHz stereo): require one.
            "l16" => CodecKind::L16 {
                rate: rate.filter(|r| *r > 0)?,
            },
            _ => {
                let (_, slin_rate) = SLIN_NAMES.iter().find(|(n, _)| *n == base)?;
                if rate.is_some() {
                    return None;
                }
                CodecKind::L16 { rate: *slin_rate }
            }
        };
        // A rate after `/` must be the codec's RTP clock (already consumed for L16).
        match (kind, rate) {
            (CodecKind::L16 { .. }, _) | (_, None) => Some(kind),
            (_, Some(r)) if r == kind.clock_rate() => Some(kind),
            _ => None,
        }
    }

    /// RTP timestamp clock, Hz.
    pub fn clock_rate(&self) -> u32 {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma | CodecKind::TelephoneEvent => 8_000,
            CodecKind::L16 { rate } => *rate,
            // RFC 3551 keeps G.722's clock at 8000 for historical reasons.
            CodecKind::G722 => 8_000,
            CodecKind::Opus => 48_000,
        }
    }

    /// Rate of the decoded PCM, Hz.
    pub fn sample_rate(&self) -> u32 {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma | CodecKind::TelephoneEvent => 8_000,
            CodecKind::L16 { rate } => *rate,
            CodecKind::G722 => 16_000,
            CodecKind::Opus => 48_000,
        }
    }

    /// Whether the payload decodes to audio (everything but telephone-event).
    pub fn is_audio(&self) -> bool {
        !matches!(self, CodecKind::TelephoneEvent)
    }
}

/// Payload type → codec. `Default` is Asterisk's static table (ASTERISK-NOTES.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadTypeMap {
    entries: [Option<CodecKind>; 128],
}

impl Default for PayloadTypeMap {
    /// Asterisk's static RTP payload types (chan_rtp sends these without SDP).
    fn default() -> Self {
        let mut map = PayloadTypeMap {
            entries: [None; 128],
        };
        let l16 = |rate| Some(CodecKind::L16 { rate });
        map.set(0, Some(CodecKind::Pcmu));
        map.set(8, Some(CodecKind::Pcma));
        map.set(9, Some(CodecKind::G722));
        map.set(10, l16(8_000));
        map.set(11, l16(8_000));
        map.set(96, l16(192_000));
        map.set(101, Some(CodecKind::TelephoneEvent));
        map.set(107, Some(CodecKind::Opus));
        map.set(118, l16(16_000));
        map.set(122, l16(12_000));
        map.set(123, l16(24_000));
        map.set(124, l16(32_000));
        map.set(125, l16(44_100));
        map.set(126, l16(48_000));
        map.set(127, l16(96_000));
        map
    }
}

impl PayloadTypeMap {
    /// A map with no entries.
    pub fn empty() -> Self {
        PayloadTypeMap {
            entries: [None; 128],
        }
    }
    pub fn get(&self, payload_type: u8) -> Option<CodecKind> {
        self.entries.get(payload_type as usize).copied().flatten()
    }
    pub fn set(&mut self, payload_type: u8, kind: Option<CodecKind>) {
        if let Some(slot) = self.entries.get_mut(payload_type as usize) {
            *slot = kind;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("L16 payload of {len} bytes is not a whole number of 16-bit samples")]
    OddL16Length { len: usize },
    #[error("opus decoder: {0}")]
    Opus(#[from] audiopus::Error),
    #[error("{0:?} carries no audio")]
    NotAudio(CodecKind),
}

/// A decoder per stream, with loss concealment; enum dispatch, no allocation per frame.
pub struct Decoder {
    codec: Codec,
    /// Waveform-repetition concealment for codecs without their own (all but Opus).
    plc: Option<Box<plc::Concealer>>,
}

enum Codec {
    Pcmu,
    Pcma,
    L16 { rate: u32 },
    G722(Box<g722::G722Decoder>),
    Opus(Box<opus::OpusDecoder>),
}

impl Decoder {
    pub fn new(kind: CodecKind) -> Result<Self, CodecError> {
        let codec = match kind {
            CodecKind::Pcmu => Codec::Pcmu,
            CodecKind::Pcma => Codec::Pcma,
            CodecKind::L16 { rate } => Codec::L16 { rate },
            CodecKind::G722 => Codec::G722(Box::default()),
            CodecKind::Opus => Codec::Opus(Box::new(opus::OpusDecoder::new()?)),
            CodecKind::TelephoneEvent => return Err(CodecError::NotAudio(kind)),
        };
        let plc = (!matches!(codec, Codec::Opus(_)))
            .then(|| Box::new(plc::Concealer::new(kind.sample_rate())));
        Ok(Self { codec, plc })
    }

    /// What this decoder decodes.
    pub fn kind(&self) -> CodecKind {
        match &self.codec {
            Codec::Pcmu => CodecKind::Pcmu,
            Codec::Pcma => CodecKind::Pcma,
            Codec::L16 { rate } => CodecKind::L16 { rate: *rate },
            Codec::G722(_) => CodecKind::G722,
            Codec::Opus(_) => CodecKind::Opus,
        }
    }

    /// Decoded sample rate, Hz.
    pub fn sample_rate(&self) -> u32 {
        self.kind().sample_rate()
    }

    /// Decode one payload, appending PCM (mono, at `sample_rate()`) to `out`.
    ///
    /// Allocates only when `out` must grow; on error nothing is appended.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        let start = out.len();
        match &mut self.codec {
            Codec::Pcmu => g711::decode_ulaw(payload, out),
            Codec::Pcma => g711::decode_alaw(payload, out),
            Codec::L16 { .. } => l16::decode(payload, out)?,
            Codec::G722(dec) => dec.decode(payload, out),
            Codec::Opus(dec) => dec.decode(payload, out)?,
        }
        if let Some(plc) = self.plc.as_mut() {
            plc.handle_good(&mut out[start..]);
        }
        Ok(())
    }

    /// Append `samples` (counted at `sample_rate()`) of concealment for lost packets:
    /// Opus runs libopus packet-loss concealment, the others repeat the last pitch period
    /// fading to silence (`plc`).
    pub fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        match (&mut self.codec, self.plc.as_mut()) {
            (Codec::Opus(dec), _) => dec.conceal(samples, out),
            (_, Some(plc)) => plc.conceal(samples, out),
            (_, None) => out.resize(out.len() + samples, 0),
        }
    }

    /// Like `conceal`, for a loss right before the packet `next`: Opus takes the last lost
    /// frame from the in-band FEC `next` carries; the others conceal as usual.
    pub fn conceal_before(&mut self, samples: usize, next: &[u8], out: &mut Vec<i16>) {
        match &mut self.codec {
            Codec::Opus(dec) => dec.recover(samples, next, out),
            _ => self.conceal(samples, out),
        }
    }

    /// The sender paused: the next audio does not continue the last, so a loss right after
    /// it is not filled from before the pause.
    pub fn handle_pause(&mut self) {
        if let Some(plc) = self.plc.as_mut() {
            plc.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table_is_asterisks() {
        let map = PayloadTypeMap::default();
        let l16 = |rate| Some(CodecKind::L16 { rate });
        let expected = [
            (0, Some(CodecKind::Pcmu)),
            (8, Some(CodecKind::Pcma)),
            (9, Some(CodecKind::G722)),
            (10, l16(8_000)),
            (11, l16(8_000)),
            (118, l16(16_000)),
            (107, Some(CodecKind::Opus)),
            (122, l16(12_000)),
            (123, l16(24_000)),
            (124, l16(32_000)),
            (125, l16(44_100)),
            (126, l16(48_000)),
            (127, l16(96_000)),
            (96, l16(192_000)),
            (101, Some(CodecKind::TelephoneEvent)),
        ];
        for (pt, kind) in expected {
            assert_eq!(map.get(pt), kind, "PT {pt}");
        }
        let mapped = (0..=255u8).filter(|pt| map.get(*pt).is_some()).count();
        assert_eq!(mapped, expected.len());
        assert_eq!(map.get(200), None);
    }

    #[test]
    fn set_overrides_and_clears() {
        let mut map = PayloadTypeMap::default();
        map.set(97, Some(CodecKind::L16 { rate: 16_000 }));
        map.set(0, None);
        map.set(200, Some(CodecKind::Pcmu)); // out of range: ignored
        assert_eq!(map.get(97), Some(CodecKind::L16 { rate: 16_000 }));
        assert_eq!(map.get(0), None);
        assert_eq!(PayloadTypeMap::empty().get(8), None);
    }

    #[test]
    fn names_round_trip() {
        let kinds = [
            CodecKind::Pcmu,
            CodecKind::Pcma,
            CodecKind::L16 { rate: 8_000 },
            CodecKind::L16 { rate: 16_000 },
            CodecKind::L16 { rate: 44_100 },
            CodecKind::G722,
            CodecKind::Opus,
            CodecKind::TelephoneEvent,
        ];
        for kind in kinds {
            assert_eq!(CodecKind::from_name(&kind.name()), Some(kind));
        }
        assert_eq!(CodecKind::L16 { rate: 16_000 }.name(), "l16/16000");
    }

    #[test]
    fn asterisk_names() {
        let l16 = |rate| Some(CodecKind::L16 { rate });
        assert_eq!(CodecKind::from_name("ulaw"), Some(CodecKind::Pcmu));
        assert_eq!(CodecKind::from_name("ALAW"), Some(CodecKind::Pcma));
        assert_eq!(CodecKind::from_name("slin"), l16(8_000));
        assert_eq!(CodecKind::from_name("slin16"), l16(16_000));
        assert_eq!(CodecKind::from_name("slin44"), l16(44_100));
        assert_eq!(CodecKind::from_name("slin48"), l16(48_000));
        assert_eq!(CodecKind::from_name("slin192"), l16(192_000));
        assert_eq!(CodecKind::from_name("PCMU/8000"), Some(CodecKind::Pcmu));
        assert_eq!(CodecKind::from_name("opus/48000"), Some(CodecKind::Opus));
        assert_eq!(CodecKind::from_name("g722/8000"), Some(CodecKind::G722));
        for bad in [
            "",
            "l16",
            "l16/0",
            "l16/x",
            "slin17",
            "slin16/16000",
            "pcmu/16000",
            "gsm",
        ] {
            assert_eq!(CodecKind::from_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(CodecKind::G722.clock_rate(), 8_000);
        assert_eq!(CodecKind::G722.sample_rate(), 16_000);
        assert_eq!(CodecKind::Opus.clock_rate(), 48_000);
        assert_eq!(CodecKind::Opus.sample_rate(), 48_000);
        assert_eq!(CodecKind::Pcma.sample_rate(), 8_000);
        assert_eq!(CodecKind::L16 { rate: 24_000 }.clock_rate(), 24_000);
        assert!(!CodecKind::TelephoneEvent.is_audio());
    }

    #[test]
    fn decoder_dispatch() {
        assert!(matches!(
            Decoder::new(CodecKind::TelephoneEvent),
            Err(CodecError::NotAudio(_))
        ));
        let mut out = Vec::new();
        let mut pcmu = Decoder::new(CodecKind::Pcmu).unwrap();
        pcmu.decode(&[0xFF; 160], &mut out).unwrap();
        assert_eq!(out, vec![0; 160]);
        let mut l16 = Decoder::new(CodecKind::L16 { rate: 16_000 }).unwrap();
        assert_eq!(l16.sample_rate(), 16_000);
        l16.decode(&[0x12, 0x34], &mut out).unwrap();
        assert_eq!(out.last(), Some(&0x1234));
        assert!(matches!(
            l16.decode(&[1, 2, 3], &mut out),
            Err(CodecError::OddL16Length { len: 3 })
        ));
        assert_eq!(out.len(), 161);
        let mut g722 = Decoder::new(CodecKind::G722).unwrap();
        assert_eq!(g722.sample_rate(), 16_000);
        g722.decode(&[0xFF; 160], &mut out).unwrap();
        assert_eq!(out.len(), 161 + 320);
        g722.conceal(320, &mut out);
        assert_eq!(out.len(), 161 + 640);
        assert!(out[out.len() - 320..].iter().all(|s| *s == 0));
    }

    #[test]
    fn opus_through_the_enum() {
        let mut dec = Decoder::new(CodecKind::Opus).unwrap();
        assert_eq!(dec.sample_rate(), 48_000);
        let mut out = Vec::new();
        // Concealment before any packet: libopus emits silence, length is honoured.
        dec.conceal(960, &mut out);
        assert_eq!(out.len(), 960);
        assert!(matches!(
            dec.decode(&[], &mut out),
            Err(CodecError::Opus(_))
        ));
        assert_eq!(out.len(), 960);
    }

    #[test]
    fn g711_loss_is_concealed_not_silenced() {
        let mut dec = Decoder::new(CodecKind::Pcmu).unwrap();
        let tone: Vec<u8> = (0..800)
            .map(|n| {
                let x = 8000.0 * (2.0 * std::f64::consts::PI * 100.0 * f64::from(n) / 8000.0).sin();
                g711::encode_ulaw(x as i16)
            })
            .collect();
        let mut out = Vec::new();
        for packet in tone.chunks(160) {
            dec.decode(packet, &mut out).unwrap();
        }
        let mut concealed = Vec::new();
        dec.conceal(160, &mut concealed);
        assert!(concealed[..80].iter().any(|&s| s.abs() > 4000));
        // After a pause there is nothing to continue.
        dec.handle_pause();
        let mut after_pause = Vec::new();
        dec.conceal(160, &mut after_pause);
        assert!(after_pause.iter().all(|&s| s == 0));
    }

    #[test]
    fn decode_does_not_reallocate_with_capacity() {
        let mut decoders = [
            (Decoder::new(CodecKind::Pcmu).unwrap(), vec![0x55u8; 160]),
            (Decoder::new(CodecKind::Pcma).unwrap(), vec![0x55u8; 160]),
            (
                Decoder::new(CodecKind::L16 { rate: 8_000 }).unwrap(),
                vec![0x55u8; 320],
            ),
            (Decoder::new(CodecKind::G722).unwrap(), vec![0x55u8; 160]),
        ];
        for (dec, payload) in decoders.iter_mut() {
            let mut out = Vec::with_capacity(4 * 320);
            let ptr = out.as_ptr();
            for _ in 0..4 {
                dec.decode(payload, &mut out).unwrap();
            }
            assert_eq!(out.as_ptr(), ptr, "{:?} reallocated", dec.kind());
            assert_eq!(
                out.len(),
                4 * 320 / if dec.sample_rate() == 16_000 { 1 } else { 2 }
            );
        }
    }
}
