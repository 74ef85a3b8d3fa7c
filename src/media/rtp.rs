//! RFC 3550 RTP header parsing and writing, sequence/timestamp unwrapping, RFC 4733 events.

/// Length of the fixed RTP header, bytes.
pub const HEADER_LEN: usize = 12;

/// Why a datagram is not a usable RTP packet. Each variant is counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("datagram of {len} bytes is shorter than the 12-byte RTP header")]
    TooShort { len: usize },
    #[error("RTP version {version}, expected 2")]
    BadVersion { version: u8 },
    #[error("{csrc_count} CSRCs need {needed} bytes but the datagram has {len}")]
    CsrcOverrun {
        csrc_count: u8,
        needed: usize,
        len: usize,
    },
    #[error("header extension needs {needed} bytes but the datagram has {len}")]
    ExtensionOverrun { needed: usize, len: usize },
    #[error("padding of {padding} bytes is larger than the {available}-byte payload")]
    PaddingOverrun { padding: usize, available: usize },
    #[error("padding bit set with a padding count of zero")]
    ZeroPadding,
}

impl RtpError {
    /// Stable label for metrics (`reason` label of `asrgw_rtp_malformed_total`).
    pub fn reason(&self) -> &'static str {
        match self {
            RtpError::TooShort { .. } => "too_short",
            RtpError::BadVersion { .. } => "bad_version",
            RtpError::CsrcOverrun { .. } => "csrc_overrun",
            RtpError::ExtensionOverrun { .. } => "extension_overrun",
            RtpError::PaddingOverrun { .. } => "padding_overrun",
            RtpError::ZeroPadding => "zero_padding",
        }
    }
}

/// Parsed fixed header plus what CC/X/P told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// A parsed packet borrowing the datagram: `payload` excludes CSRCs, extension and padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub header: RtpHeader,
    pub payload: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parse one datagram (RFC 3550 section 5.1), honouring CC, X and P.
///
/// CSRCs and the extension are skipped, not returned (nothing downstream uses them).
/// The padding count is the datagram's last byte and includes itself.
pub fn parse(bytes: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    let len = bytes.len();
    if len < HEADER_LEN {
        return Err(RtpError::TooShort { len });
    }
    let b0 = bytes[0];
    let version = b0 >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion { version });
    }
    let has_padding = b0 & 0x20 != 0;
    let has_extension = b0 & 0x10 != 0;
    let csrc_count = b0 & 0x0f;

    // `start` is the offset of the first byte after everything that precedes the payload.
    let mut start = HEADER_LEN + 4 * csrc_count as usize;
    if start > len {
        return Err(RtpError::CsrcOverrun {
            csrc_count,
            needed: start,
            len,
        });
    }
    if has_extension {
        // 16-bit profile, 16-bit length in 32-bit words (excluding this 4-byte preamble).
        if start + 4 > len {
            return Err(RtpError::ExtensionOverrun {
                needed: start + 4,
                len,
            });
        }
        let words = be16(bytes, start + 2) as usize;
        let needed = start + 4 + 4 * words;
        if needed > len {
            return Err(RtpError::ExtensionOverrun { needed, len });
        }
        start = needed;
    }
    let mut end = len;
    if has_padding {
        let padding = bytes[len - 1] as usize;
        if padding == 0 {
            return Err(RtpError::ZeroPadding);
        }
        let available = len - start;
        if padding > available {
            return Err(RtpError::PaddingOverrun { padding, available });
        }
        end -= padding;
    }

    let b1 = bytes[1];
    Ok(RtpPacket {
        header: RtpHeader {
            marker: b1 & 0x80 != 0,
            payload_type: b1 & 0x7f,
            sequence: be16(bytes, 2),
            timestamp: be32(bytes, 4),
            ssrc: be32(bytes, 8),
        },
        payload: &bytes[start..end],
    })
}

impl RtpHeader {
    /// Append a 12-byte header (V=2, no padding, no extension, no CSRC) to `out`.
    /// `payload_type` is masked to 7 bits.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(0x80);
        out.push(((self.marker as u8) << 7) | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
    }
}

/// Extends 16-bit sequence numbers to 64 bits across wraps.
///
/// Each value is placed at the signed 16-bit distance from the highest value seen so far
/// (so at most 32767 ahead or 32768 behind). The first value lands in cycle 1
/// (`65536 + sequence`), which keeps a packet reordered from before the first one
/// representable. The low 16 bits of the result always equal the input.
#[derive(Debug, Clone, Default)]
pub struct SequenceUnwrapper {
    highest: Option<u64>,
}

impl SequenceUnwrapper {
    pub fn unwrap(&mut self, sequence: u16) -> u64 {
        unwrap_counter(&mut self.highest, sequence as u64, 16)
    }
}

/// Extends 32-bit RTP timestamps to 64 bits across wraps.
///
/// Same rule as [`SequenceUnwrapper`] on 32 bits: the first value lands in cycle 1
/// (`2^32 + timestamp`); later values are placed at the signed 32-bit distance from the
/// highest seen. The low 32 bits of the result always equal the input.
#[derive(Debug, Clone, Default)]
pub struct TimestampUnwrapper {
    highest: Option<u64>,
}

impl TimestampUnwrapper {
    pub fn unwrap(&mut self, timestamp: u32) -> u64 {
        unwrap_counter(&mut self.highest, timestamp as u64, 32)
    }
}

/// Extend a `bits`-wide wrapping counter: the first value lands in cycle 1; later values are
/// placed at their signed `bits`-wide distance from the highest seen, which only moves forward.
fn unwrap_counter(highest: &mut Option<u64>, value: u64, bits: u32) -> u64 {
    let cycle = 1u64 << bits;
    let Some(top) = *highest else {
        let ext = cycle | value;
        *highest = Some(ext);
        return ext;
    };
    let forward = value.wrapping_sub(top) & (cycle - 1);
    let delta = if forward >= cycle / 2 {
        forward as i64 - cycle as i64
    } else {
        forward as i64
    };
    let ext = top.saturating_add_signed(delta);
    if delta > 0 {
        *highest = Some(ext);
    }
    ext
}

/// RFC 4733 §2.3 telephone-event payload (the first 4 bytes; any more are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// 0-9 digits, 10 `*`, 11 `#`, 12-15 `A`-`D`; other values are other events.
    pub event: u8,
    /// E bit: the last packet(s) of this event (Asterisk repeats it 3 times).
    pub end: bool,
    /// Power level, -dBm0 (0..=63).
    pub volume: u8,
    /// Duration so far, in RTP clock units from the event's timestamp.
    pub duration: u16,
}

/// Why a payload is not an RFC 4733 event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TelephoneEventError {
    #[error("telephone-event payload of {len} bytes is shorter than 4")]
    TooShort { len: usize },
}

impl TelephoneEvent {
    pub fn parse(payload: &[u8]) -> Result<Self, TelephoneEventError> {
        if payload.len() < 4 {
            return Err(TelephoneEventError::TooShort { len: payload.len() });
        }
        Ok(Self {
            event: payload[0],
            end: payload[1] & 0x80 != 0,
            volume: payload[1] & 0x3f,
            duration: be16(payload, 2),
        })
    }

    /// The DTMF character for events 0-15, `None` for others.
    pub fn digit(&self) -> Option<char> {
        b"0123456789*#ABCD"
            .get(self.event as usize)
            .map(|&c| c as char)
    }
}

#[cfg(test)]
mod tests;
