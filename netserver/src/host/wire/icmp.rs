//! ICMPv4 echo request and reply (RFC 792, "Echo or Echo Reply Message"):
//! type (8 request, 0 reply), code 0, checksum over the whole message,
//! identifier, sequence number, data echoed unchanged.

use super::{internet_checksum, put, Reader, WireError};

const TYPE_ECHO_REPLY: u8 = 0;
const TYPE_ECHO_REQUEST: u8 = 8;

/// Length of the echo header: type, code, checksum, identifier, sequence.
pub const HEADER_LEN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoKind {
    Request,
    Reply,
}

/// An echo message without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoRepr {
    pub kind: EchoKind,
    pub ident: u16,
    pub seq: u16,
}

impl EchoRepr {
    /// The echo header at the start of `message` (an IP payload) and its
    /// data. Any other ICMP message is [`WireError::NotEcho`].
    pub fn parse(message: &[u8]) -> Result<(EchoRepr, &[u8]), WireError> {
        let mut r = Reader::new(message);
        let kind = match r.array::<2>()? {
            [TYPE_ECHO_REQUEST, 0] => EchoKind::Request,
            [TYPE_ECHO_REPLY, 0] => EchoKind::Reply,
            _ => return Err(WireError::NotEcho),
        };
        let _checksum = r.u16()?;
        let repr = EchoRepr {
            kind,
            ident: r.u16()?,
            seq: r.u16()?,
        };
        // Checked after the header is known to be complete, so a short
        // message is `Truncated`, not a checksum failure.
        if internet_checksum(message) != 0 {
            return Err(WireError::IcmpChecksum);
        }
        Ok((repr, r.rest()))
    }

    pub fn buffer_len(&self, data: &[u8]) -> usize {
        HEADER_LEN + data.len()
    }

    /// Writes the message with `data` and its checksum; returns its length.
    pub fn emit(&self, data: &[u8], out: &mut [u8]) -> Result<usize, WireError> {
        let len = self.buffer_len(data);
        let message = out.get_mut(..len).ok_or(WireError::BufferTooSmall)?;
        let kind = match self.kind {
            EchoKind::Request => TYPE_ECHO_REQUEST,
            EchoKind::Reply => TYPE_ECHO_REPLY,
        };
        let [i0, i1] = self.ident.to_be_bytes();
        let [s0, s1] = self.seq.to_be_bytes();
        put(message, &[kind, 0, 0, 0, i0, i1, s0, s1])?;
        put(
            message
                .get_mut(HEADER_LEN..)
                .ok_or(WireError::BufferTooSmall)?,
            data,
        )?;
        let sum = internet_checksum(message);
        put(
            message.get_mut(2..).ok_or(WireError::BufferTooSmall)?,
            &sum.to_be_bytes(),
        )?;
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ping -p 6162` style request: ident 0x1234, seq 1, data "abcd".
    const REQUEST: [u8; 12] = [
        0x08, 0x00, 0x21, 0x04, 0x12, 0x34, 0x00, 0x01, b'a', b'b', b'c', b'd',
    ];

    fn repr() -> EchoRepr {
        EchoRepr {
            kind: EchoKind::Request,
            ident: 0x1234,
            seq: 1,
        }
    }

    #[test]
    fn deconstruct() {
        let (echo, data) = EchoRepr::parse(&REQUEST).unwrap();
        assert_eq!(echo, repr());
        assert_eq!(data, b"abcd");
    }

    #[test]
    fn construct() {
        let mut out = [0u8; 12];
        assert_eq!(repr().emit(b"abcd", &mut out), Ok(12));
        assert_eq!(out, REQUEST);
    }

    #[test]
    fn reply_round_trips() {
        let reply = EchoRepr {
            kind: EchoKind::Reply,
            ..repr()
        };
        let mut out = [0u8; 12];
        reply.emit(b"abcd", &mut out).unwrap();
        assert_eq!(out[0], 0);
        assert_eq!(EchoRepr::parse(&out).unwrap(), (reply, &b"abcd"[..]));
    }

    #[test]
    fn malformed_truncated() {
        assert_eq!(
            EchoRepr::parse(&REQUEST[..7]).err(),
            Some(WireError::Truncated)
        );
    }

    #[test]
    fn malformed_checksum() {
        let mut bad = REQUEST;
        bad[11] = b'e';
        assert_eq!(EchoRepr::parse(&bad).err(), Some(WireError::IcmpChecksum));
    }

    #[test]
    fn malformed_not_echo() {
        let mut unreachable = REQUEST;
        unreachable[0] = 3;
        assert_eq!(
            EchoRepr::parse(&unreachable).err(),
            Some(WireError::NotEcho)
        );
        let mut nonzero_code = REQUEST;
        nonzero_code[1] = 1;
        assert_eq!(
            EchoRepr::parse(&nonzero_code).err(),
            Some(WireError::NotEcho)
        );
    }

    #[test]
    fn emit_into_short_buffer() {
        assert_eq!(
            repr().emit(b"abcd", &mut [0u8; 11]),
            Err(WireError::BufferTooSmall)
        );
    }
}
