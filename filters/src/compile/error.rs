//! Why an expression was refused.

/// Why an expression was refused. Every variant names what was wrong and the
/// byte position in the expression where the problem is, so a client can
/// point at it; [`CompileError::position`] reads it whatever the variant.
///
/// The variants are split by what the writer of the expression should do:
/// fix the grammar ([`Syntax`](Self::Syntax)), pick a qualifier that fits the
/// value ([`Qualifier`](Self::Qualifier)), fix a value
/// ([`Value`](Self::Value)), spell a name we know
/// ([`UnknownName`](Self::UnknownName)), avoid a construct this server does
/// not offer ([`Unsupported`](Self::Unsupported)), or simplify
/// ([`TooComplex`](Self::TooComplex)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    /// The text is not a pcap-filter expression: an unknown character, a
    /// malformed token, or tokens in an order the grammar does not allow.
    #[error("at position {position}: syntax error: {message}")]
    Syntax { position: usize, message: String },
    /// A qualifier that does not apply to its value (`tcp host 1.2.3.4`,
    /// `icmp port 80`, `arp host fe80::1`).
    #[error("at position {position}: {message}")]
    Qualifier { position: usize, message: String },
    /// A value out of range or malformed (`12.500`, `port 70000`, `vlan 5000`,
    /// a mask with host bits, division by zero).
    #[error("at position {position}: {message}")]
    Value { position: usize, message: String },
    /// A name that is not a known service, protocol or keyword. Host and
    /// network names are never resolved (the server does no name lookups).
    #[error("at position {position}: unknown {kind} '{name}'")]
    UnknownName {
        position: usize,
        kind: &'static str,
        name: String,
    },
    /// pcap-filter syntax that libpcap accepts but this server does not
    /// implement (link types other than Ethernet, name resolution, MPLS…).
    #[error("at position {position}: not supported: {message}")]
    Unsupported { position: usize, message: String },
    /// The expression is longer, nests deeper, or expands to more
    /// alternatives or atoms than the server accepts; `limit` names it.
    #[error("at position {position}: filter too complex: {limit}")]
    TooComplex { position: usize, limit: String },
}

impl CompileError {
    /// Byte offset in the expression where the problem is.
    pub fn position(&self) -> usize {
        match self {
            CompileError::Syntax { position, .. }
            | CompileError::Qualifier { position, .. }
            | CompileError::Value { position, .. }
            | CompileError::UnknownName { position, .. }
            | CompileError::Unsupported { position, .. }
            | CompileError::TooComplex { position, .. } => *position,
        }
    }

    pub(crate) fn syntax(position: usize, message: impl Into<String>) -> CompileError {
        CompileError::Syntax {
            position,
            message: message.into(),
        }
    }

    pub(crate) fn qualifier(position: usize, message: impl Into<String>) -> CompileError {
        CompileError::Qualifier {
            position,
            message: message.into(),
        }
    }

    pub(crate) fn value(position: usize, message: impl Into<String>) -> CompileError {
        CompileError::Value {
            position,
            message: message.into(),
        }
    }

    pub(crate) fn unsupported(position: usize, message: impl Into<String>) -> CompileError {
        CompileError::Unsupported {
            position,
            message: message.into(),
        }
    }

    pub(crate) fn too_complex(position: usize, limit: impl Into<String>) -> CompileError {
        CompileError::TooComplex {
            position,
            limit: limit.into(),
        }
    }
}
