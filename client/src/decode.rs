//! tcpdump-like one-line summaries of Ethernet frames (decoded with
//! `etherparse`, leniently: a capture cut short still gives what it has).

use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    ArpOperation, EtherType, LaxIpPayloadSlice, LaxLinkExtSlice, LaxNetSlice, LaxSlicedPacket,
    LinkSlice, TransportSlice,
};

use crate::fetch::Delivery;

/// `HH:MM:SS.uuuuuu` (UTC) of a timestamp in nanoseconds since the epoch.
pub fn time_of_day(timestamp_ns: u64) -> String {
    let secs = timestamp_ns / 1_000_000_000;
    let micros = (timestamp_ns % 1_000_000_000) / 1_000;
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{micros:06}",
        day / 3600,
        (day / 60) % 60,
        day % 60
    )
}

/// One line per packet: time, wire length, small/large, decode.
pub fn one_line(timestamp_ns: u64, wire_len: u32, delivery: Delivery, data: &[u8]) -> String {
    format!(
        "{} {delivery} len {wire_len} {}",
        time_of_day(timestamp_ns),
        describe(data)
    )
}

/// A tcpdump-style decode of an Ethernet frame, e.g.
/// `IP 10.0.0.1.53 > 10.0.0.2.3345: UDP, length 40`.
pub fn describe(frame: &[u8]) -> String {
    let packet = match LaxSlicedPacket::from_ethernet(frame) {
        Ok(p) => p,
        Err(_) => return format!("[|ether] truncated frame, {} bytes", frame.len()),
    };
    let mut out = String::new();
    for ext in &packet.link_exts {
        match ext {
            LaxLinkExtSlice::Vlan(v) => {
                let _ = write!(out, "vlan {} ", v.vlan_identifier().value());
            }
            LaxLinkExtSlice::Macsec(_) => out.push_str("macsec "),
        }
    }
    match &packet.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            let src = Ipv4Addr::from(h.source());
            let dst = Ipv4Addr::from(h.destination());
            // A total length of 0 marks a BIG TCP / TSO frame: use what was captured.
            let ip_payload_len = if h.total_len() == 0 {
                ip.payload().payload.len()
            } else {
                usize::from(h.total_len()).saturating_sub(usize::from(h.ihl()) * 4)
            };
            out.push_str("IP ");
            transport(
                &mut out,
                &src.to_string(),
                &dst.to_string(),
                ip.payload(),
                &packet.transport,
                ip_payload_len,
                false,
            );
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            let src = Ipv6Addr::from(h.source());
            let dst = Ipv6Addr::from(h.destination());
            let ip_payload_len =
                usize::from(h.payload_length()).saturating_sub(ip.extensions().slice().len());
            out.push_str("IP6 ");
            transport(
                &mut out,
                &src.to_string(),
                &dst.to_string(),
                ip.payload(),
                &packet.transport,
                ip_payload_len,
                true,
            );
        }
        Some(LaxNetSlice::Arp(arp)) => {
            let spa = addr(arp.sender_protocol_addr());
            let tpa = addr(arp.target_protocol_addr());
            let len = arp.slice().len();
            match arp.operation() {
                ArpOperation::REQUEST => {
                    let _ = write!(out, "ARP, Request who-has {tpa} tell {spa}, length {len}");
                }
                ArpOperation::REPLY => {
                    let sha = mac(arp.sender_hw_addr());
                    let _ = write!(out, "ARP, Reply {spa} is-at {sha}, length {len}");
                }
                op => {
                    let _ = write!(out, "ARP, operation {}, length {len}", op.0);
                }
            }
        }
        None => {
            let ether_type = payload_ether_type(&packet);
            match ether_type {
                Some(t) if t == EtherType::ARP => {
                    let _ = write!(out, "ARP, truncated, length {}", frame.len());
                }
                Some(t) if t == EtherType::IPV4 => {
                    let _ = write!(out, "IP, truncated, length {}", frame.len());
                }
                Some(t) if t == EtherType::IPV6 => {
                    let _ = write!(out, "IP6, truncated, length {}", frame.len());
                }
                Some(t) if t.0 < 0x0600 => {
                    let _ = write!(out, "802.3, length {}", t.0);
                }
                Some(t) => {
                    let _ = write!(out, "ethertype 0x{:04x}, length {}", t.0, frame.len());
                }
                None => {
                    let _ = write!(out, "ethernet, length {}", frame.len());
                }
            }
        }
    }
    out
}

/// The ether type of the innermost link payload.
fn payload_ether_type(packet: &LaxSlicedPacket<'_>) -> Option<EtherType> {
    if let Some(last) = packet.link_exts.last() {
        return last.payload().map(|p| p.ether_type);
    }
    match &packet.link {
        Some(LinkSlice::Ethernet2(e)) => Some(e.ether_type()),
        _ => None,
    }
}

fn transport(
    out: &mut String,
    src: &str,
    dst: &str,
    payload: &LaxIpPayloadSlice<'_>,
    transport: &Option<TransportSlice<'_>>,
    ip_payload_len: usize,
    v6: bool,
) {
    // tcpdump separates the port with a dot for both IPv4 and IPv6.
    let _ = v6;
    let sep = ".";
    match transport {
        Some(TransportSlice::Udp(udp)) => {
            let _ = write!(
                out,
                "{src}{sep}{} > {dst}{sep}{}: UDP, length {}",
                udp.source_port(),
                udp.destination_port(),
                usize::from(udp.length()).saturating_sub(8)
            );
        }
        Some(TransportSlice::Tcp(tcp)) => {
            let mut flags = String::new();
            for (set, c) in [
                (tcp.fin(), 'F'),
                (tcp.syn(), 'S'),
                (tcp.rst(), 'R'),
                (tcp.psh(), 'P'),
                (tcp.urg(), 'U'),
                (tcp.ece(), 'E'),
                (tcp.cwr(), 'W'),
            ] {
                if set {
                    flags.push(c);
                }
            }
            if tcp.ack() {
                flags.push('.');
            }
            if flags.is_empty() {
                flags.push_str("none");
            }
            let _ = write!(
                out,
                "{src}{sep}{} > {dst}{sep}{}: Flags [{flags}], seq {}",
                tcp.source_port(),
                tcp.destination_port(),
                tcp.sequence_number()
            );
            if tcp.ack() {
                let _ = write!(out, ", ack {}", tcp.acknowledgment_number());
            }
            let _ = write!(
                out,
                ", win {}, length {}",
                tcp.window_size(),
                ip_payload_len.saturating_sub(tcp.header_len())
            );
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            let b = icmp.bytes5to8();
            let (id, seq) = (
                u16::from_be_bytes([b[0], b[1]]),
                u16::from_be_bytes([b[2], b[3]]),
            );
            let what = match (icmp.type_u8(), icmp.code_u8()) {
                (8, _) => format!("echo request, id {id}, seq {seq}"),
                (0, _) => format!("echo reply, id {id}, seq {seq}"),
                (3, code) => format!("destination unreachable, code {code}"),
                (11, code) => format!("time exceeded, code {code}"),
                (5, code) => format!("redirect, code {code}"),
                (t, code) => format!("type {t}, code {code}"),
            };
            let _ = write!(out, "{src} > {dst}: ICMP {what}, length {ip_payload_len}");
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            let b = icmp.bytes5to8();
            let (id, seq) = (
                u16::from_be_bytes([b[0], b[1]]),
                u16::from_be_bytes([b[2], b[3]]),
            );
            let what = match icmp.type_u8() {
                128 => format!("echo request, id {id}, seq {seq}"),
                129 => format!("echo reply, id {id}, seq {seq}"),
                133 => "router solicitation".to_string(),
                134 => "router advertisement".to_string(),
                135 => "neighbor solicitation".to_string(),
                136 => "neighbor advertisement".to_string(),
                143 => "multicast listener report v2".to_string(),
                1 => format!("destination unreachable, code {}", icmp.code_u8()),
                t => format!("type {t}, code {}", icmp.code_u8()),
            };
            let _ = write!(out, "{src} > {dst}: ICMP6, {what}, length {ip_payload_len}");
        }
        Some(TransportSlice::Igmp(_)) => {
            let _ = write!(out, "{src} > {dst}: igmp, length {ip_payload_len}");
        }
        None => {
            let proto = payload.ip_number;
            let name = proto
                .keyword_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("ip-proto-{}", proto.0));
            if payload.fragmented {
                let _ = write!(
                    out,
                    "{src} > {dst}: {name} fragment, length {ip_payload_len}"
                );
            } else if payload.incomplete && matches!(proto.0, 1 | 6 | 17 | 58) {
                let _ = write!(out, "{src} > {dst}: [|{}]", name.to_ascii_lowercase());
            } else {
                let _ = write!(out, "{src} > {dst}: {name}, length {ip_payload_len}");
            }
        }
    }
}

fn addr(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            Ipv6Addr::from(a).to_string()
        }
        _ => mac(bytes),
    }
}

fn mac(bytes: &[u8]) -> String {
    let mut s = String::new();
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ether_type: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        f.extend_from_slice(&ether_type.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
        let total = (20 + payload.len()) as u16;
        let mut h = vec![0x45, 0];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        h.extend_from_slice(payload);
        h
    }

    #[test]
    fn udp_line_names_ports_and_payload_length() {
        let mut udp = vec![0, 53, 0x0d, 0x11, 0, 48, 0, 0];
        udp.extend_from_slice(&[0u8; 40]);
        let frame = eth(0x0800, &ipv4(17, &udp));
        assert_eq!(
            describe(&frame),
            "IP 10.0.0.1.53 > 10.0.0.2.3345: UDP, length 40"
        );
    }

    #[test]
    fn tcp_line_has_flags_seq_ack_win() {
        let tcp = [
            0x1f, 0x90, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 2, 0x50, 0x12, 0x10, 0x00, 0, 0, 0, 0,
        ];
        let frame = eth(0x0800, &ipv4(6, &tcp));
        assert_eq!(
            describe(&frame),
            "IP 10.0.0.1.8080 > 10.0.0.2.80: Flags [S.], seq 1, ack 2, win 4096, length 0"
        );
    }

    #[test]
    fn arp_request_and_reply() {
        let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 10, 0, 0, 1]);
        arp.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
        assert_eq!(
            describe(&eth(0x0806, &arp)),
            "ARP, Request who-has 10.0.0.2 tell 10.0.0.1, length 28"
        );
        arp[7] = 2;
        assert_eq!(
            describe(&eth(0x0806, &arp)),
            "ARP, Reply 10.0.0.1 is-at 02:00:00:00:00:01, length 28"
        );
    }

    #[test]
    fn icmp_echo() {
        let icmp = [8, 0, 0, 0, 0, 7, 0, 1, 0xaa, 0xbb];
        assert_eq!(
            describe(&eth(0x0800, &ipv4(1, &icmp))),
            "IP 10.0.0.1 > 10.0.0.2: ICMP echo request, id 7, seq 1, length 10"
        );
    }

    #[test]
    fn vlan_tag_is_shown_before_the_inner_decode() {
        let mut udp = vec![0, 53, 0x0d, 0x11, 0, 8, 0, 0];
        udp.truncate(8);
        let mut vlan = vec![0x00, 0x64, 0x08, 0x00];
        vlan.extend_from_slice(&ipv4(17, &udp));
        assert_eq!(
            describe(&eth(0x8100, &vlan)),
            "vlan 100 IP 10.0.0.1.53 > 10.0.0.2.3345: UDP, length 0"
        );
    }

    #[test]
    fn short_and_odd_frames_do_not_panic() {
        assert!(describe(&[1, 2, 3]).contains("truncated"));
        assert_eq!(
            describe(&eth(0x88cc, &[0; 10])),
            "ethertype 0x88cc, length 24"
        );
        assert_eq!(describe(&eth(0x0040, &[0; 10])), "802.3, length 64");
        // IPv4 header cut after 10 bytes.
        let cut = &ipv4(17, &[0; 8])[..10];
        assert!(
            describe(&eth(0x0800, cut)).starts_with("IP"),
            "{}",
            describe(&eth(0x0800, cut))
        );
    }

    #[test]
    fn time_of_day_is_utc_with_microseconds() {
        assert_eq!(time_of_day(0), "00:00:00.000000");
        assert_eq!(
            time_of_day((86_400 + 3_600 * 13 + 60 * 5 + 7) * 1_000_000_000 + 123_456_789),
            "13:05:07.123456"
        );
    }

    #[test]
    fn one_line_puts_time_length_and_delivery_first() {
        let line = one_line(1_000_000, 60, Delivery::Small, &eth(0x88cc, &[0; 46]));
        assert_eq!(
            line,
            "00:00:00.001000 small len 60 ethertype 0x88cc, length 60"
        );
    }
}

#[cfg(test)]
mod capture_tests {
    use super::describe;
    use crate::capture::read_pcap;

    fn lines(file: &str) -> Vec<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../filters/tests/data/pcaps")
            .join(file);
        read_pcap(&path)
            .unwrap()
            .iter()
            .map(|f| describe(&f.data))
            .collect()
    }

    #[test]
    fn tcp_handshake_capture() {
        let l = lines("gopacket-test_ethernet.pcap");
        assert_eq!(
            l[0],
            "IP 10.1.1.2.44644 > 10.1.1.1.80: Flags [S], seq 2471086128, win 29200, length 0"
        );
        assert_eq!(
            l[3],
            "IP 10.1.1.2.44644 > 10.1.1.1.80: Flags [P.], seq 2471086129, ack 4188542939, win 229, length 72"
        );
    }

    #[test]
    fn arp_icmp_and_ipv6_capture() {
        let l = lines("libpcap-gateway_or_not.pcap");
        assert_eq!(
            l[0],
            "IP 10.20.30.41 > 10.20.30.40: ICMP echo request, id 7, seq 317, length 64"
        );
        assert_eq!(
            l[6],
            "IP6 fd00:a1b2:c3d4:0:1020:3040:5060:7082 > fd00:a1b2:c3d4:0:1020:3040:5060:7081: \
             ICMP6, echo reply, id 11, seq 243, length 64"
        );
        assert_eq!(
            l[8],
            "ARP, Request who-has 10.20.30.40 tell 10.20.30.41, length 28"
        );
        assert_eq!(
            l[10],
            "ARP, Reply 10.20.30.40 is-at aa:00:04:00:14:0e, length 28"
        );
    }

    #[test]
    fn dns_and_vlan_captures() {
        assert_eq!(
            lines("tcpdump-edns-opts.pcap")[2],
            "IP 192.0.0.1.46225 > 192.0.0.2.53: UDP, length 40"
        );
        assert!(lines("tcpdump-QinQpacket.pcap")[0].starts_with("vlan "));
        assert!(lines("tcpdump-various_gre.pcap")
            .iter()
            .any(|l| l.ends_with("GRE, length 44")));
    }

    #[test]
    fn big_tcp_uses_the_captured_length_when_total_length_is_zero() {
        let l = lines("tcpdump-bigtcp-ipv4.pcap");
        assert!(l[0].contains("Flags [P.]"), "{}", l[0]);
        assert!(!l[0].ends_with("length 0"), "{}", l[0]);
    }

    #[test]
    fn every_frame_of_every_capture_gets_a_line() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../filters/tests/data/pcaps");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            for f in read_pcap(&path).unwrap() {
                assert!(!describe(&f.data).is_empty());
            }
        }
    }
}
