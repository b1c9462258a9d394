//! Synthetic filter sets and the traffic aimed at them, shared by the
//! criterion benchmark (`benches/classify.rs`) and `nsctl filter bench
//! --generate`, so that both measure the same thing.
//!
//! Filter `i` of a set uses port `P = 1024 + i` and host `A = 10.x.y.1`
//! with `x.y = i` (so `i < 65536`). Not a stable API.

/// Most filters a generated set can have (ports and hosts stay distinct).
pub const MAX_FILTERS: usize = 64_000;

/// Packets aimed at a set: filters picked with a multiplicative stride, so
/// that consecutive packets hit scattered filters.
pub const AIMED_PACKETS: usize = 1_000;

/// A kind of generated filter set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `udp dst port P`
    Udp,
    /// `tcp dst port P`
    Tcp,
    /// `ip dst host A and udp dst port P`
    HostAndUdp,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Udp, Kind::Tcp, Kind::HostAndUdp];

    /// The kind named `udp`, `tcp` or `host`.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Udp => "udp",
            Kind::Tcp => "tcp",
            Kind::HostAndUdp => "host",
        }
    }

    /// The expression of filter `i`.
    pub fn expression(self, i: usize) -> String {
        let port = port(i);
        match self {
            Kind::Udp => format!("udp dst port {port}"),
            Kind::Tcp => format!("tcp dst port {port}"),
            Kind::HostAndUdp => {
                let [_, x, y, z] = host(i).to_be_bytes();
                format!("ip dst host 10.{x}.{y}.{z} and udp dst port {port}")
            }
        }
    }

    /// A 64-byte Ethernet/IPv4 frame that filter `i` claims.
    pub fn aimed_frame(self, i: usize) -> Vec<u8> {
        let proto = if self == Kind::Tcp { 6 } else { 17 };
        let mut frame = vec![0u8; 64];
        frame[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
        frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14] = 0x45;
        frame[16..18].copy_from_slice(&50u16.to_be_bytes());
        frame[22] = 64;
        frame[23] = proto;
        frame[26..30].copy_from_slice(&[192, 168, 0, 1]);
        frame[30..34].copy_from_slice(&host(i).to_be_bytes());
        frame[34..36].copy_from_slice(&40_000u16.to_be_bytes());
        frame[36..38].copy_from_slice(&port(i).to_be_bytes());
        frame
    }

    /// [`AIMED_PACKETS`] frames aimed at filters of a set of `filters`.
    pub fn aimed_traffic(self, filters: usize) -> Vec<Vec<u8>> {
        (0..AIMED_PACKETS)
            .map(|n| self.aimed_frame(n * 7_919 % filters.max(1)))
            .collect()
    }
}

/// The destination port of filter `i`.
pub fn port(i: usize) -> u16 {
    1024 + (i % MAX_FILTERS) as u16
}

/// The destination host of filter `i`: 10.x.y.1 with x.y = i.
pub fn host(i: usize) -> u32 {
    0x0a00_0001 | (((i % MAX_FILTERS) as u32) << 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filter_claims_its_aimed_frame_and_no_other() {
        for kind in Kind::ALL {
            let programs: Vec<_> = (0..3)
                .map(|i| crate::compile(&kind.expression(i)).expect("compiles"))
                .collect();
            for i in 0..3 {
                let frame = kind.aimed_frame(i);
                for (j, program) in programs.iter().enumerate() {
                    assert_eq!(program.matches(&frame, 64), i == j, "{kind:?} {i} {j}");
                }
            }
        }
        assert_eq!(
            Kind::HostAndUdp.expression(258),
            "ip dst host 10.1.2.1 and udp dst port 1282"
        );
        assert_eq!(Kind::from_name("host"), Some(Kind::HostAndUdp));
    }
}
