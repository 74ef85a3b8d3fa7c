//! L16: big-endian 16-bit linear PCM as carried over RTP.
//!
//! RTP's L16 (RFC 3551 §4.5.11) and Asterisk's `slin*` over RTP are network byte
//! order. (AudioSocket and the WebSocket media channel carry little-endian slin:
//! use [`decode_le`] for those.) Mono only; the rate is whatever the payload type says.

use super::CodecError;

/// Decode big-endian 16-bit samples, appending them to `out`.
///
/// An odd byte count is an error and appends nothing.
#[inline]
pub fn decode(payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
    if !payload.len().is_multiple_of(2) {
        return Err(CodecError::OddL16Length { len: payload.len() });
    }
    out.extend(
        payload
            .chunks_exact(2)
            .map(|b| i16::from_be_bytes([b[0], b[1]])),
    );
    Ok(())
}

/// Decode little-endian 16-bit samples (AudioSocket, WebSocket media), appending them to `out`.
///
/// An odd byte count is an error and appends nothing.
#[inline]
pub fn decode_le(payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
    if !payload.len().is_multiple_of(2) {
        return Err(CodecError::OddL16Length { len: payload.len() });
    }
    out.extend(
        payload
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]])),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_endian() {
        let mut out = vec![1];
        decode(&[0x00, 0x01, 0xFF, 0xFE, 0x80, 0x00, 0x7F, 0xFF], &mut out).unwrap();
        assert_eq!(out, vec![1, 1, -2, i16::MIN, i16::MAX]);
    }

    #[test]
    fn little_endian() {
        let mut out = Vec::new();
        decode_le(&[0x01, 0x00, 0xFE, 0xFF], &mut out).unwrap();
        assert_eq!(out, vec![1, -2]);
    }

    #[test]
    fn odd_length_is_an_error_and_appends_nothing() {
        let mut out = vec![5];
        assert!(matches!(
            decode(&[0, 1, 2], &mut out),
            Err(CodecError::OddL16Length { len: 3 })
        ));
        assert!(decode_le(&[0], &mut out).is_err());
        assert_eq!(out, vec![5]);
    }

    #[test]
    fn empty_is_fine() {
        let mut out = Vec::new();
        decode(&[], &mut out).unwrap();
        assert!(out.is_empty());
    }
}
