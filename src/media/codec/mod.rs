//! Payload decoding: the codec enum, Asterisk's static payload-type table, dispatch.

pub mod g711;
pub mod g722;
pub mod l16;
pub mod opus;

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

impl CodecKind {
    /// Config/event name: `pcmu`, `pcma`, `l16/16000`, `g722`, `opus`, `telephone-event`.
    pub fn name(&self) -> String {
        todo!()
    }
    /// Parse a name as written by `name()`, plus Asterisk's `ulaw`, `alaw`, `slin`, `slin16`, ... .
    pub fn from_name(name: &str) -> Option<Self> {
        let _ = name;
        todo!()
    }
    /// RTP timestamp clock, Hz.
    pub fn clock_rate(&self) -> u32 {
        todo!()
    }
    /// Rate of the decoded PCM, Hz.
    pub fn sample_rate(&self) -> u32 {
        todo!()
    }
}

/// Payload type → codec. `Default` is Asterisk's static table (ASTERISK-NOTES.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadTypeMap {
    entries: [Option<CodecKind>; 128],
}

impl Default for PayloadTypeMap {
    fn default() -> Self {
        todo!()
    }
}

impl PayloadTypeMap {
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

/// A decoder per stream; enum dispatch, no allocation per frame.
pub enum Decoder {
    Pcmu,
    Pcma,
    L16 { rate: u32 },
    G722(Box<g722::G722Decoder>),
    Opus(Box<opus::OpusDecoder>),
}

impl Decoder {
    pub fn new(kind: CodecKind) -> Result<Self, CodecError> {
        let _ = kind;
        todo!()
    }
    /// Decoded sample rate, Hz.
    pub fn sample_rate(&self) -> u32 {
        todo!()
    }
    /// Decode one payload, appending PCM to `out`.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        let _ = (payload, out);
        todo!()
    }
    /// Append `samples` of concealment (silence; Opus may use its PLC) for lost packets.
    pub fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) {
        let _ = (samples, out);
        todo!()
    }
}
