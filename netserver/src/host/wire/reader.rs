//! A cursor over untrusted bytes, in the style of rustls' `codec::Reader`:
//! fields are taken from the front, a length read from the packet only ever
//! bounds a sub-reader, and nothing indexes the slice directly.

use super::{MacAddr, WireError};

/// A read position in a byte slice. Every read either returns the bytes it
/// asked for or [`WireError::Truncated`]; it never panics.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    /// The next `len` bytes.
    pub fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        let (head, tail) = self
            .rest
            .split_at_checked(len)
            .ok_or(WireError::Truncated)?;
        self.rest = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(WireError::Truncated)?;
        self.rest = tail;
        Ok(*head)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        self.array::<1>().map(|[b]| b)
    }

    /// A big-endian (network order) 16-bit field.
    pub fn u16(&mut self) -> Result<u16, WireError> {
        self.array().map(u16::from_be_bytes)
    }

    pub fn mac(&mut self) -> Result<MacAddr, WireError> {
        self.array().map(MacAddr)
    }

    pub fn ipv4(&mut self) -> Result<std::net::Ipv4Addr, WireError> {
        self.array::<4>().map(std::net::Ipv4Addr::from)
    }

    /// A reader over the next `len` bytes, which this reader skips: the way
    /// to follow a length field from the packet.
    pub fn sub(&mut self, len: usize) -> Result<Reader<'a>, WireError> {
        self.take(len).map(Reader::new)
    }

    /// Everything left, consuming it.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Fails unless every byte was read: for formats with no padding.
    pub fn expect_end(&self) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_in_order() {
        let mut r = Reader::new(&[1, 0x12, 0x34, 9, 9, 9, 9, 9, 9, 7]);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(0x1234));
        assert_eq!(r.mac(), Ok(MacAddr([9; 6])));
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.expect_end(), Err(WireError::TrailingBytes));
        assert_eq!(r.rest(), &[7]);
        assert_eq!(r.expect_end(), Ok(()));
    }

    #[test]
    fn short_reads_fail_without_consuming() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.take(4), Err(WireError::Truncated));
        assert_eq!(r.ipv4(), Err(WireError::Truncated));
        assert_eq!(r.remaining(), 3);
    }

    #[test]
    fn sub_bounds_a_length_field() {
        let mut r = Reader::new(&[2, 0xaa, 0xbb, 0xcc]);
        let len = r.u8().unwrap() as usize;
        let mut inner = r.sub(len).unwrap();
        assert_eq!(inner.u16(), Ok(0xaabb));
        assert_eq!(inner.u8(), Err(WireError::Truncated));
        assert_eq!(r.rest(), &[0xcc]);
        assert_eq!(
            Reader::new(&[1]).sub(usize::MAX).err(),
            Some(WireError::Truncated)
        );
    }
}
