//! Lowering tests: the atoms an expression becomes, the errors it raises,
//! and robustness on arbitrary input.

use super::*;
use crate::atom::{Atom, Base, Expr, Field, RelOp, Width};

fn program(text: &str) -> Program {
    compile(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn error(text: &str) -> CompileError {
    match compile(text) {
        Ok(program) => panic!("{text} compiled:\n{program}"),
        Err(error) => {
            assert!(error.position() < text.len().max(1), "{text}: {error}");
            error
        }
    }
}

fn eq(offset: u32, width: Width, value: u32) -> Atom {
    Atom::Eq {
        field: Field::at(offset, width),
        mask: width.full_mask(),
        value,
    }
}

fn transport(offset: u32, value: u32) -> Atom {
    Atom::Eq {
        field: Field {
            base: Base::Ipv4Payload { ip: 14 },
            offset,
            width: Width::Half,
        },
        mask: 0xffff,
        value,
    }
}

fn first_fragment() -> Atom {
    Atom::Eq {
        field: Field::at(20, Width::Half),
        mask: 0x1fff,
        value: 0,
    }
}

#[test]
fn udp_dst_port_is_mergeable_eq_atoms_in_layer_order() {
    assert_eq!(
        program("udp dst port 53").alternatives(),
        &[
            vec![
                eq(12, Width::Half, 0x0800),
                eq(23, Width::Byte, 17),
                first_fragment(),
                transport(2, 53),
            ],
            vec![
                eq(12, Width::Half, 0x86dd),
                eq(20, Width::Byte, 17),
                eq(56, Width::Half, 53),
            ],
        ]
    );
}

#[test]
fn service_names_and_numbers_agree() {
    assert_eq!(program("udp port domain"), program("udp port 53"));
    assert_eq!(program("tcp port smtp"), program("tcp port 25"));
    assert_eq!(program("udp portrange 53"), program("udp port 53"));
}

#[test]
fn inherited_qualifiers_mean_the_same_as_written_ones() {
    assert_eq!(
        program("host 1.2.3.4 or 5.6.7.8"),
        program("host 1.2.3.4 or host 5.6.7.8")
    );
    assert_eq!(
        program("tcp port 80 or 443"),
        program("tcp port 80 or tcp port 443")
    );
}

#[test]
fn host_without_protocol_covers_ip_arp_rarp() {
    assert_eq!(program("host 10.0.0.1").alternatives().len(), 6);
    assert_eq!(program("ip host 10.0.0.1").alternatives().len(), 2);
}

#[test]
fn vlan_shifts_everything_written_after_it() {
    let inner_ip = eq(16, Width::Half, 0x0800);
    assert!(program("vlan and ip").alternatives()[0].contains(&inner_ip));
    // libpcap's quirk: even across 'or'.
    let after_or = program("vlan or ip");
    assert!(after_or
        .alternatives()
        .iter()
        .any(|alt| alt == std::slice::from_ref(&inner_ip)));
    let before = program("ip or vlan");
    assert!(before
        .alternatives()
        .iter()
        .any(|alt| alt == &[eq(12, Width::Half, 0x0800)]));
}

#[test]
fn vlan_id_is_a_link_guard() {
    let vlan = program("vlan 100 and udp");
    let first = &vlan.alternatives()[0];
    assert_eq!(first[0], eq(12, Width::Half, 0x8100));
    assert_eq!(
        first[1],
        Atom::Eq {
            field: Field::at(14, Width::Half),
            mask: 0x0fff,
            value: 100
        }
    );
    assert_eq!(first[2], eq(16, Width::Half, 0x0800));
}

#[test]
fn masked_comparisons_become_eq_and_ne() {
    assert_eq!(
        program("tcp[13] & 2 != 0").alternatives()[0].last(),
        Some(&Atom::Ne {
            field: Field {
                base: Base::Ipv4Payload { ip: 14 },
                offset: 13,
                width: Width::Byte
            },
            mask: 2,
            value: 0
        })
    );
    assert_eq!(
        program("ip multicast").alternatives()[0].last(),
        Some(&Atom::Eq {
            field: Field::at(30, Width::Byte),
            mask: 0xe0,
            value: 0xe0
        })
    );
}

#[test]
fn negation_keeps_guards() {
    // not tcp[13] == 2: non-IPv4, or IPv4 not TCP, or a later fragment, or
    // the flags differ.
    let negated = program("not tcp[13] == 2");
    assert_eq!(negated.alternatives().len(), 4);
    assert_eq!(
        negated.alternatives()[0],
        vec![Atom::Ne {
            field: Field::at(12, Width::Half),
            mask: 0xffff,
            value: 0x0800
        }]
    );
}

#[test]
fn wire_length_tests() {
    assert_eq!(
        program("less 200").alternatives()[0],
        vec![Atom::Test {
            lhs: Expr::WireLen,
            op: RelOp::Le,
            rhs: Expr::Const(200)
        }]
    );
}

#[test]
fn constant_relations_fold() {
    assert_eq!(program("1 == 1"), Program::accept_all());
    assert_eq!(program("0 == icmp-echo"), Program::reject_all());
    assert_eq!(program("byte 8 | 5"), Program::accept_all());
    assert_eq!(program("byte 8 & 5"), Program::reject_all());
}

#[test]
fn contradictions_match_nothing() {
    assert_eq!(program("ip and ip6"), Program::reject_all());
    assert_eq!(program("ip or not ip"), Program::accept_all());
}

#[test]
fn ip_broadcast_uses_the_netmask() {
    let with_mask = compile_with("ip broadcast", &Options::with_netmask(0xffff_ff00)).unwrap();
    assert!(with_mask.alternatives()[1].contains(&Atom::Eq {
        field: Field::at(30, Width::Word),
        mask: 0xff,
        value: 0xff
    }));
}

// ---- errors ----

#[test]
fn bad_load_size() {
    assert!(matches!(
        error("ip[0:3] == 1"),
        CompileError::Value { position: 5, .. }
    ));
}

#[test]
fn vlan_id_too_large() {
    assert!(matches!(error("vlan 5000"), CompileError::Value { .. }));
}

#[test]
fn port_too_large() {
    assert_eq!(error("port 70000").position(), 5);
}

#[test]
fn division_by_constant_zero() {
    assert!(matches!(
        error("ip[0] / 0 == 1"),
        CompileError::Value { position: 6, .. }
    ));
}

#[test]
fn service_of_the_other_transport() {
    assert!(matches!(
        error("udp port smtp"),
        CompileError::Qualifier { .. }
    ));
}

#[test]
fn unknown_service() {
    assert!(matches!(
        error("port nonesuch"),
        CompileError::UnknownName { position: 5, .. }
    ));
}

#[test]
fn host_names_are_not_resolved() {
    assert!(matches!(
        error("host example"),
        CompileError::Unsupported { position: 5, .. }
    ));
}

#[test]
fn mac_outside_ether() {
    assert!(matches!(
        error("host aa:bb:cc:dd:ee:ff"),
        CompileError::Qualifier { .. }
    ));
}

#[test]
fn non_network_bits() {
    assert!(matches!(
        error("net 10.0.0.1/8"),
        CompileError::Value { position: 4, .. }
    ));
}

#[test]
fn negated_protochain_is_refused() {
    assert!(matches!(
        error("not ip protochain 6"),
        CompileError::Unsupported { .. }
    ));
}

#[test]
fn too_many_alternatives_names_the_limit() {
    let text = (1..=30)
        .map(|port| format!("port {port}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let error = error(&text);
    assert!(matches!(error, CompileError::TooComplex { .. }));
    assert!(error.to_string().contains("256"), "{error}");
}

#[test]
fn negated_disjunctions_stay_small() {
    assert_eq!(program("not port 53").alternatives().len(), 12);
    assert!(program("not (port 53 or port 80)").alternatives().len() <= MAX_ALTERNATIVES);
}

// ---- robustness ----

/// Every prefix of every test expression, and pseudo-random strings over
/// the language's alphabet, compile or fail without panicking.
#[test]
fn never_panics() {
    let corpus = include_str!("../../tests/data/expressions.txt");
    for line in corpus.lines() {
        for end in (0..=line.len()).filter(|end| line.is_char_boundary(*end)) {
            let _ = compile(&line[..end]);
        }
    }
    const ALPHABET: &[&str] = &[
        "tcp",
        "ip",
        "ip6",
        "vlan",
        "not",
        "and",
        "or",
        "(",
        ")",
        "[",
        "]",
        ":",
        "port",
        "host",
        "net",
        "src",
        "dst",
        "1",
        "0x10",
        "1.2.3.4",
        "::1",
        "/",
        "mask",
        "==",
        "!=",
        "&",
        "|",
        "-",
        ">>",
        "len",
        "proto",
        "protochain",
        "\\tcp",
        "broadcast",
        "ether",
        "!",
        "byte",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..3000 {
        let mut text = String::new();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let words = (state % 12) as usize;
        for _ in 0..words {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push_str(ALPHABET[(state % ALPHABET.len() as u64) as usize]);
            text.push(' ');
        }
        if let Err(error) = compile(&text) {
            assert!(error.position() <= text.len(), "{text}: {error}");
        }
    }
}
