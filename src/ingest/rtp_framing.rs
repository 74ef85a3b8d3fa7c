//! Frames audio from stream transports (AudioSocket, WebSocket media) as RTP, so a session
//! takes it through the same pipeline as externalMedia RTP.

use crate::media::rtp::RtpHeader;

/// SSRC of framed streams (`"ASRG"`); a stream transport carries one call per connection.
const SSRC: u32 = 0x4153_5247;

/// How a transport's media bytes map to RTP: Asterisk's static payload type and the byte
/// order the transport uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    /// 8-bit G.711 u-law, PT 0.
    Ulaw,
    /// 8-bit G.711 A-law, PT 8.
    Alaw,
    /// 16-bit little-endian slin at this rate (swapped to network order).
    SlinLe { rate: u32 },
}

impl StreamFormat {
    /// The format of an Asterisk format name (`ulaw`, `alaw`, `slin`, `slin16`, ...).
    pub fn from_asterisk(name: &str) -> Option<Self> {
        Some(match name {
            "ulaw" => Self::Ulaw,
            "alaw" => Self::Alaw,
            "slin" => Self::SlinLe { rate: 8_000 },
            "slin12" => Self::SlinLe { rate: 12_000 },
            "slin16" => Self::SlinLe { rate: 16_000 },
            "slin24" => Self::SlinLe { rate: 24_000 },
            "slin32" => Self::SlinLe { rate: 32_000 },
            "slin44" => Self::SlinLe { rate: 44_100 },
            "slin48" => Self::SlinLe { rate: 48_000 },
            "slin96" => Self::SlinLe { rate: 96_000 },
            "slin192" => Self::SlinLe { rate: 192_000 },
            _ => return None,
        })
    }

    fn payload_type(self) -> u8 {
        match self {
            Self::Ulaw => 0,
            Self::Alaw => 8,
            Self::SlinLe { rate } => match rate {
                16_000 => 118,
                12_000 => 122,
                24_000 => 123,
                32_000 => 124,
                44_100 => 125,
                48_000 => 126,
                96_000 => 127,
                192_000 => 96,
                _ => 10,
            },
        }
    }
}

/// Numbers frames: sequence +1 per frame, timestamp + samples per frame.
#[derive(Debug, Default)]
pub struct RtpFramer {
    sequence: u16,
    timestamp: u32,
}

impl RtpFramer {
    /// One RTP packet carrying `media` (as the transport delivered it) in `format`.
    pub fn frame(&mut self, format: StreamFormat, media: &[u8]) -> Vec<u8> {
        let samples = match format {
            StreamFormat::Ulaw | StreamFormat::Alaw => media.len() as u32,
            StreamFormat::SlinLe { .. } => (media.len() / 2) as u32,
        };
        self.timestamp = self.timestamp.wrapping_add(samples);
        self.sequence = self.sequence.wrapping_add(1);
        let header = RtpHeader {
            marker: false,
            payload_type: format.payload_type(),
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: SSRC,
        };
        let mut packet = Vec::with_capacity(12 + media.len());
        header.write_to(&mut packet);
        match format {
            StreamFormat::Ulaw | StreamFormat::Alaw => packet.extend_from_slice(media),
            StreamFormat::SlinLe { .. } => {
                for pair in media.chunks_exact(2) {
                    packet.extend_from_slice(&[pair[1], pair[0]]);
                }
            }
        }
        packet
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::parse;

    #[test]
    fn slin_becomes_big_endian_rtp_with_counting_headers() {
        let mut f = RtpFramer::default();
        let le = [0x01, 0x02, 0x03, 0x04];
        let slin16 = StreamFormat::from_asterisk("slin16").unwrap();
        let first = f.frame(slin16, &le);
        let second = f.frame(slin16, &le);
        let a = parse(&first).unwrap();
        let b = parse(&second).unwrap();
        assert_eq!(a.header.payload_type, 118);
        assert_eq!(a.payload, &[0x02, 0x01, 0x04, 0x03]);
        assert_eq!(b.header.sequence, a.header.sequence.wrapping_add(1));
        assert_eq!(b.header.timestamp, a.header.timestamp + 2);
    }

    #[test]
    fn g711_bytes_pass_through_with_their_payload_type() {
        let mut f = RtpFramer::default();
        let p = f.frame(StreamFormat::Ulaw, &[0xFF; 160]);
        let p = parse(&p).unwrap();
        assert_eq!(p.header.payload_type, 0);
        assert_eq!(p.payload.len(), 160);
        assert_eq!(
            StreamFormat::from_asterisk("slin").unwrap().payload_type(),
            10
        );
        assert_eq!(StreamFormat::from_asterisk("gsm"), None);
    }
}
