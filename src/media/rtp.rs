//! RFC 3550 RTP header parsing and writing, sequence/timestamp unwrapping, RFC 4733 events.

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
        todo!()
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

/// Parse one datagram (RFC 3550 section 5.1), honouring CC, X and P.
pub fn parse(bytes: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    let _ = bytes;
    todo!()
}

impl RtpHeader {
    /// Append a 12-byte header (V=2, no padding, no extension, no CSRC) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let _ = out;
        todo!()
    }
}

/// Extends 16-bit sequence numbers to 64 bits across wraps (RFC 3550 A.1 rules).
#[derive(Debug, Clone, Default)]
pub struct SequenceUnwrapper {}

impl SequenceUnwrapper {
    pub fn unwrap(&mut self, sequence: u16) -> u64 {
        let _ = sequence;
        todo!()
    }
}

/// Extends 32-bit RTP timestamps to 64 bits across wraps.
#[derive(Debug, Clone, Default)]
pub struct TimestampUnwrapper {}

impl TimestampUnwrapper {
    pub fn unwrap(&mut self, timestamp: u32) -> u64 {
        let _ = timestamp;
        todo!()
    }
}
