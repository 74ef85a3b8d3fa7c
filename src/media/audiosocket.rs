//! AudioSocket framing (Asterisk 18+), sans-IO: bytes in, typed frames out.
//!
//! Asterisk is the TCP client. Every frame is a 1-byte type, a 2-byte
//! big-endian payload length and the payload. Asterisk sends `0x01` with the
//! 16 raw UUID bytes first, then (once bridged) audio frames every 20 ms:
//! 16-bit mono slin, little-endian. It sends no `0x00` on hangup, it just
//! closes TCP; the app sending [`encode_hangup`] (or closing) destroys the
//! channel. Anything the app sends other than audio or hangup makes Asterisk
//! hang up. A non-slin externalMedia format is still tagged `0x10`: nothing in
//! the frame says so, the caller must know what it asked for.

use crate::media::codec::{l16, CodecError};

/// Payload bound used by [`Decoder::new`]: 20 ms at 192 kHz is 7 680 bytes,
/// so 16 KiB leaves room for longer frames while bounding the buffer.
pub const DEFAULT_MAX_PAYLOAD: usize = 16 * 1024;

/// Bytes in a frame header: type, then a big-endian `u16` length.
pub const HEADER_LEN: usize = 3;

/// slin sample rates in Hz for audio types `0x10..=0x18`, in type order.
const AUDIO_RATES: [u32; 9] = [
    8_000, 12_000, 16_000, 24_000, 32_000, 44_100, 48_000, 96_000, 192_000,
];

/// The type byte of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// `0x00`: terminate the call.
    Hangup,
    /// `0x01`: the 16 raw bytes of the call's UUID; sent first.
    Uuid,
    /// `0x03`: one ASCII DTMF digit (20.14 / 21.9 / 22.4 / 23.0).
    Dtmf,
    /// `0x10..=0x18`: 16-bit mono little-endian slin at `rate` Hz.
    Audio { rate: u32 },
    /// `0xFF`: an error reported by the peer.
    Error,
    /// Any other type byte, kept so the caller can decide.
    Unknown(u8),
}

impl FrameKind {
    /// Classify a type byte.
    pub fn from_byte(b: u8) -> Self {
        match b {
            0x00 => Self::Hangup,
            0x01 => Self::Uuid,
            0x03 => Self::Dtmf,
            0x10..=0x18 => Self::Audio {
                rate: AUDIO_RATES[usize::from(b - 0x10)],
            },
            0xFF => Self::Error,
            other => Self::Unknown(other),
        }
    }

    /// The type byte; `None` for an audio rate AudioSocket has no type for.
    pub fn to_byte(self) -> Option<u8> {
        match self {
            Self::Hangup => Some(0x00),
            Self::Uuid => Some(0x01),
            Self::Dtmf => Some(0x03),
            Self::Audio { rate } => AUDIO_RATES
                .iter()
                .position(|&r| r == rate)
                .map(|i| 0x10 + i as u8),
            Self::Error => Some(0xFF),
            Self::Unknown(b) => Some(b),
        }
    }
}

/// One validated frame, borrowing its payload from the [`Decoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: FrameKind,
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// The hyphenated UUID of a `0x01` frame; `None` for other kinds.
    pub fn uuid(&self) -> Option<String> {
        match self.kind {
            FrameKind::Uuid => <&[u8; 16]>::try_from(self.payload).ok().map(format_uuid),
            _ => None,
        }
    }

    /// The digit of a `0x03` frame; `None` for other kinds.
    pub fn dtmf(&self) -> Option<char> {
        match (self.kind, self.payload) {
            (FrameKind::Dtmf, [b]) => Some(char::from(*b)),
            _ => None,
        }
    }

    /// Append the little-endian samples of an audio frame to `out`; a
    /// non-audio frame appends nothing.
    pub fn decode_audio(&self, out: &mut Vec<i16>) -> Result<(), CodecError> {
        match self.kind {
            FrameKind::Audio { .. } => l16::decode_le(self.payload, out),
            _ => Ok(()),
        }
    }
}

/// Format 16 raw bytes as a lowercase hyphenated UUID (`8-4-4-4-12`).
pub fn format_uuid(bytes: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*bytes).hyphenated().to_string()
}

/// The hangup frame the app sends to end the call: `00 00 00`.
pub fn encode_hangup() -> [u8; 3] {
    [0x00, 0x00, 0x00]
}

/// An audio frame of `ms` milliseconds of silence at `rate` Hz (slin), or `None` for a
/// rate AudioSocket has no type for.
pub fn encode_silence(rate: u32, ms: u32) -> Option<Vec<u8>> {
    let kind = FrameKind::Audio { rate }.to_byte()?;
    let bytes = u16::try_from(rate as usize * ms as usize / 1000 * 2).ok()?;
    let mut frame = Vec::with_capacity(HEADER_LEN + usize::from(bytes));
    frame.push(kind);
    frame.extend(bytes.to_be_bytes());
    frame.resize(HEADER_LEN + usize::from(bytes), 0);
    Some(frame)
}

/// What went wrong decoding the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioSocketError {
    /// Fatal: the declared length exceeds the bound; the decoder stops.
    #[error("AudioSocket frame type {kind:#04x} declares {len} payload bytes, over the {max}-byte bound")]
    PayloadTooLarge { kind: u8, len: usize, max: usize },
    /// The frame is skipped; decoding continues.
    #[error("AudioSocket UUID frame has {len} bytes, expected 16")]
    BadUuidLength { len: usize },
    /// The frame is skipped; decoding continues.
    #[error("AudioSocket DTMF frame must be 1 ASCII byte, got {payload:02x?}")]
    BadDtmf { payload: Vec<u8> },
    /// The frame is skipped; decoding continues.
    #[error("AudioSocket audio frame of {len} bytes is not a whole number of 16-bit samples")]
    OddAudioLength { len: usize },
}

impl AudioSocketError {
    /// Whether the decoder has stopped (the stream can't be resynchronised).
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::PayloadTooLarge { .. })
    }
}

/// Streaming frame decoder: [`push`](Self::push) bytes as they arrive from
/// TCP, then call [`poll`](Self::poll) until it returns `None`.
///
/// Buffering is bounded by what is pushed between drains plus one frame:
/// a header declaring more than `max_payload` is rejected as soon as its 3
/// bytes are in, without waiting for (or storing) the payload. After that
/// fatal error the decoder discards everything pushed and `poll` returns
/// `None`; see [`is_failed`](Self::is_failed).
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already handed out, dropped lazily so a
    /// returned [`Frame`] can borrow from `buf`.
    consumed: usize,
    max_payload: usize,
    failed: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder bounded by [`DEFAULT_MAX_PAYLOAD`].
    pub fn new() -> Self {
        Self::with_max_payload(DEFAULT_MAX_PAYLOAD)
    }

    /// A decoder rejecting payloads longer than `max_payload` bytes.
    pub fn with_max_payload(max_payload: usize) -> Self {
        Self {
            buf: Vec::new(),
            consumed: 0,
            max_payload,
            failed: false,
        }
    }

    /// Whether a fatal error stopped the decoder.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Bytes held and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.consumed
    }

    /// Append bytes read from the socket (any split is fine).
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed {
            return;
        }
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, a per-frame error (the frame is skipped), a
    /// fatal error (once), or `None` when more bytes are needed.
    pub fn poll(&mut self) -> Option<Result<Frame<'_>, AudioSocketError>> {
        if self.failed {
            return None;
        }
        self.compact();
        let (&type_byte, rest) = self.buf.split_first()?;
        let len = match rest {
            [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
            _ => return None,
        };
        if len > self.max_payload {
            self.failed = true;
            self.buf = Vec::new();
            return Some(Err(AudioSocketError::PayloadTooLarge {
                kind: type_byte,
                len,
                max: self.max_payload,
            }));
        }
        let end = HEADER_LEN + len;
        if self.buf.len() < end {
            return None;
        }
        self.consumed = end;
        let frame = Frame {
            kind: FrameKind::from_byte(type_byte),
            payload: &self.buf[HEADER_LEN..end],
        };
        Some(validate(frame))
    }

    fn compact(&mut self) {
        if self.consumed > 0 {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
    }
}

fn validate(frame: Frame<'_>) -> Result<Frame<'_>, AudioSocketError> {
    let len = frame.payload.len();
    match frame.kind {
        FrameKind::Uuid if len != 16 => Err(AudioSocketError::BadUuidLength { len }),
        FrameKind::Dtmf if !matches!(frame.payload, [b] if b.is_ascii()) => {
            Err(AudioSocketError::BadDtmf {
                payload: frame.payload.to_vec(),
            })
        }
        FrameKind::Audio { .. } if !len.is_multiple_of(2) => {
            Err(AudioSocketError::OddAudioLength { len })
        }
        _ => Ok(frame),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: [u8; 16] = [
        0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x0f, 0xed, 0xcb, 0xa9, 0x87, 0x65, 0x43,
        0x21,
    ];

    /// Owned copy of a poll result, so frames can be collected.
    type Owned = Result<(FrameKind, Vec<u8>), AudioSocketError>;

    fn drain(d: &mut Decoder) -> Vec<Owned> {
        let mut out = Vec::new();
        while let Some(r) = d.poll() {
            out.push(r.map(|f| (f.kind, f.payload.to_vec())));
        }
        out
    }

    fn uuid_frame() -> Vec<u8> {
        let mut v = vec![0x01, 0x00, 0x10];
        v.extend_from_slice(&UUID);
        v
    }

    /// `10 01 40` + 320 bytes: 160 little-endian samples -8000, -7900, ...
    fn slin8_frame() -> Vec<u8> {
        let mut v = vec![0x10, 0x01, 0x40];
        for i in 0..160i16 {
            v.extend_from_slice(&(i * 100 - 8000).to_le_bytes());
        }
        v
    }

    fn slin16_frame() -> Vec<u8> {
        let mut v = vec![0x12, 0x02, 0x80];
        v.extend((0..640u32).map(|i| (i % 251) as u8));
        v
    }

    fn stream() -> Vec<u8> {
        let mut s = uuid_frame();
        s.extend(slin8_frame());
        s.extend([0x03, 0x00, 0x01, b'5']);
        s.extend(slin16_frame());
        s.extend(encode_hangup());
        s
    }

    fn expected() -> Vec<Owned> {
        vec![
            Ok((FrameKind::Uuid, UUID.to_vec())),
            Ok((
                FrameKind::Audio { rate: 8_000 },
                slin8_frame()[3..].to_vec(),
            )),
            Ok((FrameKind::Dtmf, vec![b'5'])),
            Ok((
                FrameKind::Audio { rate: 16_000 },
                slin16_frame()[3..].to_vec(),
            )),
            Ok((FrameKind::Hangup, vec![])),
        ]
    }

    #[test]
    fn uuid_frame_from_notes() {
        let mut d = Decoder::new();
        d.push(&uuid_frame());
        let f = d.poll().unwrap().unwrap();
        assert_eq!(f.kind, FrameKind::Uuid);
        assert_eq!(
            f.uuid().as_deref(),
            Some("12345678-9abc-def0-0fed-cba987654321")
        );
        assert!(d.poll().is_none());
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn slin8_frame_is_little_endian() {
        let mut d = Decoder::new();
        d.push(&slin8_frame());
        let f = d.poll().unwrap().unwrap();
        assert_eq!(f.kind, FrameKind::Audio { rate: 8_000 });
        assert_eq!(f.payload.len(), 320);
        let mut pcm = Vec::new();
        f.decode_audio(&mut pcm).unwrap();
        assert_eq!(pcm.len(), 160);
        assert_eq!(pcm[0], -8000);
        assert_eq!(pcm[1], -7900);
        assert_eq!(pcm[159], 159 * 100 - 8000);
    }

    #[test]
    fn slin16_frame_from_notes() {
        let mut d = Decoder::new();
        d.push(&slin16_frame());
        let f = d.poll().unwrap().unwrap();
        assert_eq!(f.kind, FrameKind::Audio { rate: 16_000 });
        assert_eq!(f.payload.len(), 640);
        let mut pcm = Vec::new();
        f.decode_audio(&mut pcm).unwrap();
        assert_eq!(pcm[0], i16::from_le_bytes([0, 1]));
    }

    #[test]
    fn dtmf_and_hangup_from_notes() {
        let mut d = Decoder::new();
        d.push(&[0x03, 0x00, 0x01, b'5', 0x00, 0x00, 0x00]);
        let f = d.poll().unwrap().unwrap();
        assert_eq!((f.kind, f.dtmf()), (FrameKind::Dtmf, Some('5')));
        let f = d.poll().unwrap().unwrap();
        assert_eq!(f.kind, FrameKind::Hangup);
        assert!(f.payload.is_empty());
        assert!(d.poll().is_none());
        assert_eq!(encode_hangup(), [0x00, 0x00, 0x00]);
    }

    #[test]
    fn silence_frames_decode_as_audio_of_their_rate() {
        for (rate, kind, len) in [(8_000, 0x10, 320), (16_000, 0x12, 640)] {
            let frame = encode_silence(rate, 20).unwrap();
            assert_eq!(frame[..3], [kind, (len >> 8) as u8, (len & 0xFF) as u8]);
            let mut d = Decoder::new();
            d.push(&frame);
            let f = d.poll().unwrap().unwrap();
            assert_eq!(f.kind, FrameKind::Audio { rate });
            assert!(f.payload.len() == len && f.payload.iter().all(|&b| b == 0));
        }
        assert_eq!(encode_silence(11_025, 20), None);
    }

    #[test]
    fn several_frames_in_one_push() {
        let mut d = Decoder::new();
        d.push(&stream());
        assert_eq!(drain(&mut d), expected());
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let s = stream();
        for cut in 0..=s.len() {
            let mut d = Decoder::new();
            d.push(&s[..cut]);
            let mut got = drain(&mut d);
            d.push(&s[cut..]);
            got.extend(drain(&mut d));
            assert_eq!(got, expected(), "split at {cut}");
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in stream() {
            d.push(&[b]);
            got.extend(drain(&mut d));
        }
        assert_eq!(got, expected());
    }

    #[test]
    fn oversized_length_rejected_from_header_alone() {
        let mut d = Decoder::new();
        d.push(&[0x10, 0xFF, 0xFF]);
        assert_eq!(
            d.poll(),
            Some(Err(AudioSocketError::PayloadTooLarge {
                kind: 0x10,
                len: 0xFFFF,
                max: DEFAULT_MAX_PAYLOAD
            }))
        );
        assert!(d.is_failed());
        d.push(&[0u8; 1000]);
        assert_eq!(d.buffered(), 0);
        assert!(d.poll().is_none());

        let mut d = Decoder::with_max_payload(320);
        d.push(&slin8_frame());
        assert!(d.poll().unwrap().is_ok());
        d.push(&[0x10, 0x01, 0x42]);
        assert!(d.poll().unwrap().unwrap_err().is_fatal());
    }

    #[test]
    fn malformed_uuid_and_dtmf_are_skipped() {
        let mut d = Decoder::new();
        d.push(&[0x01, 0x00, 0x04, 1, 2, 3, 4]);
        d.push(&[0x03, 0x00, 0x02, b'1', b'2']);
        d.push(&[0x03, 0x00, 0x01, 0xC3]);
        d.push(&[0x03, 0x00, 0x00]);
        d.push(&[0x10, 0x00, 0x03, 1, 2, 3]);
        d.push(&[0x03, 0x00, 0x01, b'#']);
        let got = drain(&mut d);
        assert_eq!(
            got,
            vec![
                Err(AudioSocketError::BadUuidLength { len: 4 }),
                Err(AudioSocketError::BadDtmf {
                    payload: vec![b'1', b'2']
                }),
                Err(AudioSocketError::BadDtmf {
                    payload: vec![0xC3]
                }),
                Err(AudioSocketError::BadDtmf { payload: vec![] }),
                Err(AudioSocketError::OddAudioLength { len: 3 }),
                Ok((FrameKind::Dtmf, vec![b'#'])),
            ]
        );
        assert!(got[..5].iter().all(|r| !r.as_ref().unwrap_err().is_fatal()));
    }

    #[test]
    fn unknown_type_kept() {
        let mut d = Decoder::new();
        d.push(&[0x42, 0x00, 0x02, 0xAB, 0xCD, 0xFF, 0x00, 0x01, 0x07]);
        assert_eq!(
            drain(&mut d),
            vec![
                Ok((FrameKind::Unknown(0x42), vec![0xAB, 0xCD])),
                Ok((FrameKind::Error, vec![0x07])),
            ]
        );
    }

    #[test]
    fn every_audio_type_and_rate() {
        let rates = [
            (0x10, 8_000),
            (0x11, 12_000),
            (0x12, 16_000),
            (0x13, 24_000),
            (0x14, 32_000),
            (0x15, 44_100),
            (0x16, 48_000),
            (0x17, 96_000),
            (0x18, 192_000),
        ];
        for (b, rate) in rates {
            assert_eq!(FrameKind::from_byte(b), FrameKind::Audio { rate });
            assert_eq!(FrameKind::Audio { rate }.to_byte(), Some(b));
        }
        assert_eq!(FrameKind::from_byte(0x19), FrameKind::Unknown(0x19));
        assert_eq!(FrameKind::from_byte(0x02), FrameKind::Unknown(0x02));
        assert_eq!(FrameKind::Audio { rate: 11_025 }.to_byte(), None);
    }
}
