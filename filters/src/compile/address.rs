//! IPv4 and IPv6 address values as libpcap reads them.

use std::net::Ipv6Addr;

use super::CompileError;

/// `__pcap_atoin`: dotted decimal with 1–4 parts, each at most 255. Returns
/// the value of the parts (not shifted) and how many bits they cover.
pub fn ipv4(text: &str, position: usize) -> Result<(u32, u32), CompileError> {
    let invalid = || CompileError::value(position, format!("invalid IPv4 address '{text}'"));
    let mut addr: u32 = 0;
    let mut bits = 0;
    for part in text.split('.') {
        if bits == 32 || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let value: u32 = part.parse().map_err(|_| invalid())?;
        if value > 255 {
            return Err(invalid());
        }
        addr = (addr << 8) | value;
        bits += 8;
    }
    Ok((addr, bits))
}

/// A short address moved to the top of the word, with the mask of the
/// parts written: `10.1` is `10.1.0.0` under `255.255.0.0`.
fn promoted(text: &str, position: usize) -> Result<(u32, u32), CompileError> {
    let (addr, bits) = ipv4(text, position)?;
    let shift = 32 - bits;
    Ok((
        addr.checked_shl(shift).unwrap_or(0),
        u32::MAX.checked_shl(shift).unwrap_or(0),
    ))
}

/// `a.b.c.d/len`.
pub fn ipv4_prefix(
    text: &str,
    len: u32,
    position: usize,
    len_position: usize,
) -> Result<(u32, u32), CompileError> {
    let (net, _) = promoted(text, position)?;
    if len > 32 {
        return Err(CompileError::value(
            len_position,
            "mask length must be <= 32",
        ));
    }
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    if net & !mask != 0 {
        return Err(CompileError::value(
            position,
            format!("non-network bits set in \"{text}/{len}\""),
        ));
    }
    Ok((net, mask))
}

/// `a.b.c.d mask m.m.m.m`.
pub fn ipv4_masked(
    text: &str,
    mask_text: &str,
    position: usize,
    mask_position: usize,
) -> Result<(u32, u32), CompileError> {
    let (net, _) = promoted(text, position)?;
    let (mask, _) = promoted(mask_text, mask_position)?;
    if net & !mask != 0 {
        return Err(CompileError::value(
            position,
            format!("non-network bits set in \"{text} mask {mask_text}\""),
        ));
    }
    Ok((net, mask))
}

/// `net N` with a plain number: libpcap "promotes a short net number",
/// `net 10` being `10.0.0.0/8`.
pub fn promote_short_net(mut net: u32) -> (u32, u32) {
    let mut mask = u32::MAX;
    while net != 0 && net & 0xff00_0000 == 0 {
        net <<= 8;
        mask <<= 8;
    }
    (net, mask)
}

/// The four mask words of an IPv6 prefix of `len` bits, checking that the
/// address has no bits past it.
pub fn ipv6_prefix(
    addr: Ipv6Addr,
    len: u32,
    position: usize,
    len_position: usize,
) -> Result<[u32; 4], CompileError> {
    if len > 128 {
        return Err(CompileError::value(
            len_position,
            "mask length must be <= 128",
        ));
    }
    let mask128: u128 = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    if u128::from(addr) & !mask128 != 0 {
        return Err(CompileError::value(
            position,
            format!("non-network bits set in \"{addr}/{len}\""),
        ));
    }
    let mut words = [0u32; 4];
    for (index, word) in words.iter_mut().enumerate() {
        *word = (mask128 >> (96 - 32 * index)) as u32;
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_addresses_are_promoted() {
        assert_eq!(ipv4("192.168", 0).unwrap(), (0xc0a8, 16));
        assert_eq!(
            ipv4_prefix("192.168", 16, 0, 0).unwrap(),
            (0xc0a8_0000, 0xffff_0000)
        );
        assert_eq!(
            ipv4_masked("172.16.0.0", "255.240", 0, 0).unwrap(),
            (0xac10_0000, 0xfff0_0000)
        );
        assert_eq!(promote_short_net(10), (0x0a00_0000, 0xff00_0000));
    }

    #[test]
    fn bad_addresses_are_refused() {
        assert!(ipv4("12.500", 3).is_err());
        assert!(ipv4("1.2.3.4.5", 3).is_err());
        assert!(ipv4_prefix("10.0.0.1", 8, 0, 0).is_err());
        assert!(ipv4_prefix("10.0.0.0", 33, 0, 9).is_err());
    }

    #[test]
    fn ipv6_masks() {
        let addr: Ipv6Addr = "2000::".parse().unwrap();
        assert_eq!(ipv6_prefix(addr, 3, 0, 0).unwrap(), [0xe000_0000, 0, 0, 0]);
        assert_eq!(
            ipv6_prefix(Ipv6Addr::LOCALHOST, 128, 0, 0).unwrap(),
            [u32::MAX; 4]
        );
        assert!(ipv6_prefix(Ipv6Addr::LOCALHOST, 64, 0, 0).is_err());
    }
}
