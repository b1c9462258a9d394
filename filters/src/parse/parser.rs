//! The parser: tokens to a syntax tree, with libpcap's grammar.
//!
//! Notable rules, all from libpcap's `grammar.y`:
//! - `and` and `or` have **equal** precedence and associate to the left
//!   (`a or b and c` is `(a or b) and c`); `not` binds tighter.
//! - A bare value after `and`/`or` inherits the qualifiers of the term
//!   before it: `host a or b` is `host a or host b`, `tcp port 80 or 443`
//!   is `tcp port 80 or tcp port 443`. A term that is not qualified (`tcp`,
//!   a comparison) leaves nothing to inherit, and a bare value there is an
//!   error.
//! - In arithmetic `&` and `|` bind tighter than comparisons:
//!   `ip[6] & 0x40 == 0x40` is `(ip[6] & 0x40) == 0x40`.
//! - `(` at the start of a term opens an arithmetic group when the matching
//!   `)` is followed by an arithmetic or comparison operator
//!   (`(ip[0] & 0xf0) >> 4 == 4`), a boolean group otherwise.
//!
//! Nesting (parentheses, `not`, arithmetic) is bounded by
//! [`MAX_NESTING`] so that no input can exhaust the stack.

use super::ast::{
    AddrKind, Arith, ArithKind, ByteOp, Dir, Node, NodeKind, ProtoName, Qualified, Qualifiers,
    Value,
};
use super::lexer::{tokenize, Keyword, Punct, Tok, Token};
use crate::atom::{ArithOp, RelOp};
use crate::compile::CompileError;

/// Deepest nesting of groups, negations, and/or alternations and arithmetic
/// the parser accepts.
pub const MAX_NESTING: usize = 64;

/// Longest expression, in bytes, the parser accepts.
pub const MAX_EXPRESSION_BYTES: usize = 8192;

/// Parses an expression; `Ok(None)` for an empty one (which matches
/// everything).
pub fn parse(text: &str) -> Result<Option<Node>, CompileError> {
    if text.len() > MAX_EXPRESSION_BYTES {
        return Err(CompileError::too_complex(
            MAX_EXPRESSION_BYTES,
            format!("expression longer than {MAX_EXPRESSION_BYTES} bytes"),
        ));
    }
    let tokens = tokenize(text)?;
    let mut parser = Parser::new(tokens);
    if parser.peek() == &Tok::End {
        return Ok(None);
    }
    let parsed = parser.expr(None)?;
    match parser.peek() {
        Tok::End => Ok(Some(parsed.node)),
        Tok::Punct(Punct::RParen) => Err(parser.error_here("unbalanced ')'")),
        _ => Err(parser.error_here(format!(
            "expected 'and', 'or' or the end of the expression, found {}",
            parser.describe_current()
        ))),
    }
}

/// A parsed term: the node, the qualifiers a following bare value
/// inherits, and how deep the node nests.
struct Parsed {
    node: Node,
    inherit: Option<Qualifiers>,
    height: usize,
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// For each `(` token, the index of its matching `)`.
    matching: Vec<Option<usize>>,
    depth: usize,
}

impl Parser {
    fn new(tokens: Vec<Token>) -> Parser {
        let mut matching = vec![None; tokens.len()];
        let mut open = Vec::new();
        for (index, token) in tokens.iter().enumerate() {
            match token.tok {
                Tok::Punct(Punct::LParen) => open.push(index),
                Tok::Punct(Punct::RParen) => {
                    if let Some(start) = open.pop() {
                        matching[start] = Some(index);
                    }
                }
                _ => {}
            }
        }
        Parser {
            tokens,
            at: 0,
            matching,
            depth: 0,
        }
    }

    // ---- token access ----

    fn peek(&self) -> &Tok {
        &self.tokens[self.at].tok
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        let index = (self.at + ahead).min(self.tokens.len() - 1);
        &self.tokens[index].tok
    }

    fn position(&self) -> usize {
        self.tokens[self.at].start
    }

    fn advance(&mut self) -> Token {
        let token = self.tokens[self.at].clone();
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
        }
        token
    }

    fn eat_punct(&mut self, punct: Punct) -> bool {
        if self.peek() == &Tok::Punct(punct) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn eat_keyword(&mut self, keyword: Keyword) -> bool {
        if self.peek() == &Tok::Keyword(keyword) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn expect_punct(&mut self, punct: Punct, context: &str) -> Result<(), CompileError> {
        if self.eat_punct(punct) {
            Ok(())
        } else {
            Err(self.error_here(format!(
                "expected '{}' {context}, found {}",
                punct.symbol(),
                self.describe_current()
            )))
        }
    }

    fn expect_num(&mut self, context: &str) -> Result<(u32, usize), CompileError> {
        let position = self.position();
        match *self.peek() {
            Tok::Num(value) => {
                self.advance();
                Ok((value, position))
            }
            _ => Err(self.error_here(format!(
                "expected a number {context}, found {}",
                self.describe_current()
            ))),
        }
    }

    fn error_here(&self, message: impl Into<String>) -> CompileError {
        CompileError::syntax(self.position(), message)
    }

    fn describe_current(&self) -> String {
        describe(&self.tokens[self.at].tok)
    }

    fn enter(&mut self) -> Result<(), CompileError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(CompileError::too_complex(
                self.position(),
                format!("nested more than {MAX_NESTING} levels deep"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    // ---- boolean expressions ----

    /// `expr: term ((and|or) (term|id))*`, left-associative, one
    /// precedence. `inherit` is the qualifier context for a leading bare
    /// value (inside a group after a qualified term).
    fn expr(&mut self, inherit: Option<Qualifiers>) -> Result<Parsed, CompileError> {
        self.enter()?;
        let first = self.term(inherit)?;
        let mut inherit = first.inherit;
        let mut height = first.height;
        let mut node = first.node;
        while let Tok::Keyword(op @ (Keyword::And | Keyword::Or)) = *self.peek() {
            let op_position = self.position();
            self.advance();
            let next = self.term(inherit)?;
            inherit = next.inherit;
            node = self.join(node, op, op_position, next.node, &mut height, next.height)?;
        }
        self.leave();
        Ok(Parsed {
            node,
            inherit,
            height,
        })
    }

    /// Appends `next` to a chain of the same operator, or starts a new
    /// level when the operator changes.
    fn join(
        &mut self,
        left: Node,
        op: Keyword,
        op_position: usize,
        next: Node,
        height: &mut usize,
        next_height: usize,
    ) -> Result<Node, CompileError> {
        let same = matches!(
            (&left.kind, op),
            (NodeKind::And(_), Keyword::And) | (NodeKind::Or(_), Keyword::Or)
        );
        if same {
            let position = left.position;
            let mut children = match left.kind {
                NodeKind::And(children) | NodeKind::Or(children) => children,
                _ => unreachable!("checked above"),
            };
            children.push(next);
            *height = (*height).max(next_height + 1);
            let kind = if op == Keyword::And {
                NodeKind::And(children)
            } else {
                NodeKind::Or(children)
            };
            return Ok(Node { position, kind });
        }
        *height = (*height).max(next_height) + 1;
        if *height + self.depth > MAX_NESTING {
            return Err(CompileError::too_complex(
                op_position,
                format!("'and'/'or' alternate more than {MAX_NESTING} levels deep"),
            ));
        }
        let position = left.position;
        let children = vec![left, next];
        let kind = if op == Keyword::And {
            NodeKind::And(children)
        } else {
            NodeKind::Or(children)
        };
        Ok(Node { position, kind })
    }

    /// One term, or — when `inherit` holds qualifiers — a bare value that
    /// takes them.
    fn term(&mut self, inherit: Option<Qualifiers>) -> Result<Parsed, CompileError> {
        let position = self.position();
        match self.peek().clone() {
            Tok::Bang | Tok::Keyword(Keyword::Not) => {
                self.advance();
                self.enter()?;
                let inner = self.term(inherit)?;
                self.leave();
                Ok(Parsed {
                    node: Node {
                        position,
                        kind: NodeKind::Not(Box::new(inner.node)),
                    },
                    inherit: inner.inherit,
                    height: inner.height + 1,
                })
            }
            Tok::Punct(Punct::LParen) if !self.paren_is_arithmetic() => {
                self.advance();
                let inner = self.expr(inherit)?;
                self.expect_punct(Punct::RParen, "to close the group")?;
                // libpcap: a group passes on the qualifiers in force before it.
                Ok(Parsed {
                    node: inner.node,
                    inherit,
                    height: inner.height + 1,
                })
            }
            Tok::Punct(Punct::LParen | Punct::Minus) | Tok::Keyword(Keyword::Len) => {
                self.relation()
            }
            Tok::Num(_) if starts_arithmetic(self.peek_at(1)) => self.relation(),
            Tok::Keyword(Keyword::Pname(_)) if self.peek_at(1) == &Tok::Punct(Punct::LBracket) => {
                self.relation()
            }
            Tok::Keyword(Keyword::Pname(proto)) => {
                self.advance();
                self.qualified(Some(Qualified {
                    value: proto,
                    position,
                }))
            }
            Tok::Keyword(
                Keyword::Src
                | Keyword::Dst
                | Keyword::Host
                | Keyword::Net
                | Keyword::Port
                | Keyword::Portrange
                | Keyword::Proto
                | Keyword::Protochain
                | Keyword::Gateway
                | Keyword::Broadcast
                | Keyword::Multicast,
            ) => self.qualified(None),
            Tok::Keyword(Keyword::Less | Keyword::Greater) => self.length_test(),
            Tok::Keyword(Keyword::Byte) => self.byte_test(),
            Tok::Keyword(Keyword::Vlan) => self.vlan(),
            Tok::Keyword(Keyword::Unsupported(word)) => Err(CompileError::unsupported(
                position,
                format!("'{word}' is not implemented by this filter compiler"),
            )),
            Tok::Num(_) | Tok::Ipv4(_) | Tok::Ipv6(_) | Tok::Mac(_) | Tok::Name { .. } => {
                let Some(qualifiers) = inherit else {
                    return Err(self.error_here(format!(
                        "{} needs a qualifier such as 'host', 'net', 'port' or 'proto' \
                         in front of it",
                        self.describe_current()
                    )));
                };
                self.id(qualifiers)
            }
            _ => Err(self.error_here(format!(
                "expected a filter primitive such as 'host', 'port', 'tcp' or a \
                 comparison, found {}",
                self.describe_current()
            ))),
        }
    }

    /// Whether the `(` under the cursor opens an arithmetic group: its
    /// matching `)` is followed by an arithmetic or comparison operator.
    fn paren_is_arithmetic(&self) -> bool {
        match self.matching[self.at] {
            Some(close) => starts_arithmetic(self.peek_at(close + 1 - self.at)),
            None => false,
        }
    }

    /// After an optional protocol qualifier: direction, address kind,
    /// `proto`/`protochain`, `broadcast`/`multicast`, or the protocol alone.
    fn qualified(&mut self, proto: Option<Qualified<ProtoName>>) -> Result<Parsed, CompileError> {
        let position = proto.map_or(self.position(), |p| p.position);
        let proto_value = proto.map(|p| p.value);
        match self.peek() {
            Tok::Keyword(Keyword::Broadcast) => {
                self.advance();
                return Ok(leaf(position, NodeKind::Broadcast(proto_value)));
            }
            Tok::Keyword(Keyword::Multicast) => {
                self.advance();
                return Ok(leaf(position, NodeKind::Multicast(proto_value)));
            }
            _ => {}
        }
        let dir = self.direction()?;
        let kind = self.addr_kind(dir.is_some())?;
        if dir.is_none() && kind.is_none() {
            return match proto_value {
                Some(proto) => Ok(leaf(position, NodeKind::Abbrev(proto))),
                None => Err(self.error_here("expected a qualifier")),
            };
        }
        let qualifiers = Qualifiers { proto, dir, kind };
        self.id(qualifiers)
    }

    /// `src`, `dst`, `src or dst`, `src and dst` (either order).
    fn direction(&mut self) -> Result<Option<Qualified<Dir>>, CompileError> {
        let position = self.position();
        let first = match self.peek() {
            Tok::Keyword(Keyword::Src) => Dir::Src,
            Tok::Keyword(Keyword::Dst) => Dir::Dst,
            _ => return Ok(None),
        };
        self.advance();
        let other = if first == Dir::Src {
            Keyword::Dst
        } else {
            Keyword::Src
        };
        let combined = match (self.peek(), self.peek_at(1)) {
            (Tok::Keyword(Keyword::Or), Tok::Keyword(k)) if *k == other => Some(Dir::SrcOrDst),
            (Tok::Keyword(Keyword::And), Tok::Keyword(k)) if *k == other => Some(Dir::SrcAndDst),
            _ => None,
        };
        let value = match combined {
            Some(dir) => {
                self.advance();
                self.advance();
                dir
            }
            None => first,
        };
        Ok(Some(Qualified { value, position }))
    }

    /// `host`, `net`, `port`, `portrange`, `gateway`, and — only without a
    /// direction — `proto`, `protochain`.
    fn addr_kind(&mut self, has_dir: bool) -> Result<Option<Qualified<AddrKind>>, CompileError> {
        let position = self.position();
        let kind = match self.peek() {
            Tok::Keyword(Keyword::Host) => AddrKind::Host,
            Tok::Keyword(Keyword::Net) => AddrKind::Net,
            Tok::Keyword(Keyword::Port) => AddrKind::Port,
            Tok::Keyword(Keyword::Portrange) => AddrKind::Portrange,
            Tok::Keyword(Keyword::Gateway) => AddrKind::Gateway,
            Tok::Keyword(Keyword::Proto) => AddrKind::Proto,
            Tok::Keyword(Keyword::Protochain) => AddrKind::Protochain,
            _ => return Ok(None),
        };
        if has_dir && matches!(kind, AddrKind::Proto | AddrKind::Protochain) {
            return Err(self.error_here(format!(
                "'{}' cannot take a direction ('src'/'dst')",
                kind.name()
            )));
        }
        self.advance();
        Ok(Some(Qualified {
            value: kind,
            position,
        }))
    }

    /// A value under `qualifiers` (libpcap's `id`): a number, address, name,
    /// `not` value, or a parenthesised group of values.
    fn id(&mut self, qualifiers: Qualifiers) -> Result<Parsed, CompileError> {
        let position = self.position();
        let value = match self.peek().clone() {
            Tok::Bang | Tok::Keyword(Keyword::Not) => {
                self.advance();
                self.enter()?;
                let inner = self.id(qualifiers)?;
                self.leave();
                return Ok(Parsed {
                    node: Node {
                        position,
                        kind: NodeKind::Not(Box::new(inner.node)),
                    },
                    inherit: Some(qualifiers),
                    height: inner.height + 1,
                });
            }
            Tok::Punct(Punct::LParen) => return self.id_group(qualifiers),
            Tok::Num(n) => {
                self.advance();
                Value::Num(n)
            }
            Tok::Ipv4(text) => {
                self.advance();
                self.ipv4_value(text)?
            }
            Tok::Ipv6(addr) => {
                let text = self.source_text();
                self.advance();
                let prefix = self.prefix_len()?;
                Value::Ipv6 { addr, prefix, text }
            }
            Tok::Mac(mac) => {
                self.advance();
                Value::Mac(mac)
            }
            Tok::Name { text, escaped } => {
                self.advance();
                Value::Name { text, escaped }
            }
            Tok::Keyword(Keyword::Pname(proto)) => {
                return Err(self.error_here(format!(
                    "expected a value, found the keyword '{}'; write '\\{}' for the \
                     protocol name",
                    proto.name(),
                    proto.name()
                )))
            }
            _ => {
                return Err(self.error_here(format!(
                    "expected a host, network, port or protocol, found {}",
                    self.describe_current()
                )))
            }
        };
        Ok(Parsed {
            node: Node {
                position,
                kind: NodeKind::Id { qualifiers, value },
            },
            inherit: Some(qualifiers),
            height: 0,
        })
    }

    /// `( id (and|or) id ... )` under one set of qualifiers: libpcap's
    /// `paren pid ')'`, as in `host (a or b)`.
    fn id_group(&mut self, qualifiers: Qualifiers) -> Result<Parsed, CompileError> {
        self.advance();
        self.enter()?;
        let first = self.id(qualifiers)?;
        let mut height = first.height;
        let mut node = first.node;
        while let Tok::Keyword(op @ (Keyword::And | Keyword::Or)) = *self.peek() {
            let op_position = self.position();
            self.advance();
            let next = self.id(qualifiers)?;
            node = self.join(node, op, op_position, next.node, &mut height, next.height)?;
        }
        self.expect_punct(Punct::RParen, "to close the group of values")?;
        self.leave();
        Ok(Parsed {
            node,
            inherit: Some(qualifiers),
            height: height + 1,
        })
    }

    fn source_text(&self) -> String {
        // Only used for messages; the token knows its own span but not the
        // text, so rebuild a canonical form.
        match &self.tokens[self.at].tok {
            Tok::Ipv6(addr) => addr.to_string(),
            other => describe(other),
        }
    }

    /// `a.b.c.d`, `a.b.c.d/len` or `a.b.c.d mask m.m.m.m`.
    fn ipv4_value(&mut self, text: String) -> Result<Value, CompileError> {
        if let Some((len, len_position)) = self.prefix_len()? {
            return Ok(Value::Ipv4Prefix {
                text,
                len,
                len_position,
            });
        }
        if self.eat_keyword(Keyword::Mask) {
            let mask_position = self.position();
            return match self.peek().clone() {
                Tok::Ipv4(mask) => {
                    self.advance();
                    Ok(Value::Ipv4Masked {
                        text,
                        mask,
                        mask_position,
                    })
                }
                _ => Err(self.error_here(format!(
                    "expected a dotted netmask after 'mask', found {}",
                    self.describe_current()
                ))),
            };
        }
        Ok(Value::Ipv4(text))
    }

    fn prefix_len(&mut self) -> Result<Option<(u32, usize)>, CompileError> {
        if self.eat_punct(Punct::Slash) {
            self.expect_num("as prefix length after '/'").map(Some)
        } else {
            Ok(None)
        }
    }

    fn length_test(&mut self) -> Result<Parsed, CompileError> {
        let position = self.position();
        let keyword = self.advance();
        let (value, _) = self.expect_num("after 'less'/'greater'")?;
        let kind = if keyword.tok == Tok::Keyword(Keyword::Less) {
            NodeKind::Less(value)
        } else {
            NodeKind::Greater(value)
        };
        Ok(leaf(position, kind))
    }

    /// `byte NUM op NUM` with op one of `= == < > & |`.
    fn byte_test(&mut self) -> Result<Parsed, CompileError> {
        let position = self.position();
        self.advance();
        let (index, _) = self.expect_num("as the byte offset after 'byte'")?;
        let op = match self.peek() {
            Tok::Punct(Punct::Eq) => ByteOp::Eq,
            Tok::Punct(Punct::Lt) => ByteOp::Lt,
            Tok::Punct(Punct::Gt) => ByteOp::Gt,
            Tok::Punct(Punct::Amp) => ByteOp::And,
            Tok::Punct(Punct::Pipe) => ByteOp::Or,
            _ => {
                return Err(self.error_here(format!(
                    "expected one of '=', '<', '>', '&', '|' after 'byte {index}', found {}",
                    self.describe_current()
                )))
            }
        };
        self.advance();
        let (value, _) = self.expect_num("after the 'byte' operator")?;
        Ok(leaf(position, NodeKind::Byte { index, op, value }))
    }

    /// `vlan` or `vlan ID`.
    fn vlan(&mut self) -> Result<Parsed, CompileError> {
        let position = self.position();
        self.advance();
        let id = match *self.peek() {
            Tok::Num(id) if !starts_arithmetic(self.peek_at(1)) => {
                self.advance();
                Some(id)
            }
            _ => None,
        };
        Ok(leaf(position, NodeKind::Vlan(id)))
    }

    // ---- arithmetic ----

    /// `arith relop arith`.
    fn relation(&mut self) -> Result<Parsed, CompileError> {
        let position = self.position();
        let lhs = self.arith(0)?;
        let op = match self.peek() {
            Tok::Punct(Punct::Eq) => RelOp::Eq,
            Tok::Punct(Punct::Ne) => RelOp::Ne,
            Tok::Punct(Punct::Lt) => RelOp::Lt,
            Tok::Punct(Punct::Le) => RelOp::Le,
            Tok::Punct(Punct::Gt) => RelOp::Gt,
            Tok::Punct(Punct::Ge) => RelOp::Ge,
            _ => {
                return Err(self.error_here(format!(
                    "expected a comparison ('==', '!=', '<', '<=', '>', '>=') after the \
                     arithmetic expression, found {}",
                    self.describe_current()
                )))
            }
        };
        self.advance();
        let rhs = self.arith(0)?;
        Ok(leaf(position, NodeKind::Relation { lhs, op, rhs }))
    }

    /// Precedence climbing over libpcap's arithmetic levels:
    /// `|` < `^` < `&` < `<< >>` < `+ -` < `* / %` < unary `-`.
    fn arith(&mut self, min_level: u8) -> Result<Arith, CompileError> {
        self.enter()?;
        let mut entered = 1;
        let mut lhs = self.arith_unary()?;
        while let Some((op, level)) = binary_op(self.peek()) {
            if level < min_level {
                break;
            }
            let position = self.position();
            self.advance();
            let rhs = self.arith(level + 1)?;
            lhs = Arith {
                position,
                kind: ArithKind::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
            };
            // Each left-associative step nests the tree one level deeper.
            self.enter()?;
            entered += 1;
        }
        self.depth -= entered;
        Ok(lhs)
    }

    fn arith_unary(&mut self) -> Result<Arith, CompileError> {
        let position = self.position();
        match self.peek().clone() {
            Tok::Punct(Punct::Minus) => {
                self.advance();
                self.enter()?;
                let inner = self.arith_unary()?;
                self.leave();
                Ok(Arith {
                    position,
                    kind: ArithKind::Neg(Box::new(inner)),
                })
            }
            Tok::Punct(Punct::LParen) => {
                self.advance();
                let inner = self.arith(0)?;
                self.expect_punct(Punct::RParen, "to close the arithmetic group")?;
                Ok(inner)
            }
            Tok::Num(value) => {
                self.advance();
                Ok(Arith {
                    position,
                    kind: ArithKind::Num(value),
                })
            }
            Tok::Keyword(Keyword::Len) => {
                self.advance();
                Ok(Arith {
                    position,
                    kind: ArithKind::Len,
                })
            }
            Tok::Keyword(Keyword::Pname(proto)) => {
                self.advance();
                self.load(proto, position)
            }
            _ => Err(self.error_here(format!(
                "expected a number, 'len' or a packet field such as 'ip[9]', found {}",
                self.describe_current()
            ))),
        }
    }

    /// `proto[index]` or `proto[index : size]`.
    fn load(&mut self, proto: ProtoName, position: usize) -> Result<Arith, CompileError> {
        self.expect_punct(
            Punct::LBracket,
            &format!("after '{}' in arithmetic", proto.name()),
        )?;
        let index = self.arith(0)?;
        let (size, size_position) = if self.eat_punct(Punct::Colon) {
            self.expect_num("as the field size after ':'")?
        } else {
            (1, position)
        };
        self.expect_punct(Punct::RBracket, "to close the packet field")?;
        Ok(Arith {
            position,
            kind: ArithKind::Load {
                proto,
                index: Box::new(index),
                size,
                size_position,
            },
        })
    }
}

fn leaf(position: usize, kind: NodeKind) -> Parsed {
    Parsed {
        node: Node { position, kind },
        inherit: None,
        height: 0,
    }
}

/// The binary arithmetic operator a token is, with its precedence level.
fn binary_op(tok: &Tok) -> Option<(ArithOp, u8)> {
    let Tok::Punct(punct) = tok else {
        return None;
    };
    Some(match punct {
        Punct::Pipe => (ArithOp::Or, 1),
        Punct::Caret => (ArithOp::Xor, 2),
        Punct::Amp => (ArithOp::And, 3),
        Punct::Shl => (ArithOp::Shl, 4),
        Punct::Shr => (ArithOp::Shr, 4),
        Punct::Plus => (ArithOp::Add, 5),
        Punct::Minus => (ArithOp::Sub, 5),
        Punct::Star => (ArithOp::Mul, 6),
        Punct::Slash => (ArithOp::Div, 6),
        Punct::Percent => (ArithOp::Mod, 6),
        _ => return None,
    })
}

/// Whether a token continues an arithmetic expression or starts a
/// comparison.
fn starts_arithmetic(tok: &Tok) -> bool {
    binary_op(tok).is_some()
        || matches!(
            tok,
            Tok::Punct(Punct::Eq | Punct::Ne | Punct::Lt | Punct::Le | Punct::Gt | Punct::Ge)
        )
}

/// A token as an error message names it.
fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Keyword(Keyword::Pname(proto)) => format!("'{}'", proto.name()),
        Tok::Keyword(Keyword::Unsupported(word)) => format!("'{word}'"),
        Tok::Keyword(keyword) => format!("'{}'", keyword_text(*keyword)),
        Tok::Num(value) => format!("the number {value}"),
        Tok::Ipv4(text) => format!("'{text}'"),
        Tok::Ipv6(addr) => format!("'{addr}'"),
        Tok::Mac(mac) => format!(
            "'{}'",
            mac.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        ),
        Tok::Name { text, .. } => format!("'{text}'"),
        Tok::Punct(punct) => format!("'{}'", punct.symbol()),
        Tok::Bang => "'!'".to_string(),
        Tok::End => "the end of the expression".to_string(),
    }
}

fn keyword_text(keyword: Keyword) -> &'static str {
    match keyword {
        Keyword::And => "and",
        Keyword::Or => "or",
        Keyword::Not => "not",
        Keyword::Src => "src",
        Keyword::Dst => "dst",
        Keyword::Host => "host",
        Keyword::Net => "net",
        Keyword::Mask => "mask",
        Keyword::Port => "port",
        Keyword::Portrange => "portrange",
        Keyword::Proto => "proto",
        Keyword::Protochain => "protochain",
        Keyword::Gateway => "gateway",
        Keyword::Less => "less",
        Keyword::Greater => "greater",
        Keyword::Byte => "byte",
        Keyword::Broadcast => "broadcast",
        Keyword::Multicast => "multicast",
        Keyword::Len => "len",
        Keyword::Vlan => "vlan",
        Keyword::Pname(proto) => proto.name(),
        Keyword::Unsupported(word) => word,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Node {
        parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .expect("not empty")
    }

    fn error_at(text: &str) -> usize {
        match parse(text) {
            Ok(node) => panic!("{text} parsed: {node:?}"),
            Err(error) => {
                assert!(error.position() <= text.len(), "{text}: {error}");
                error.position()
            }
        }
    }

    /// A compact rendering of a tree, for comparing shapes.
    fn shape(node: &Node) -> String {
        match &node.kind {
            NodeKind::And(items) => format!(
                "and({})",
                items.iter().map(shape).collect::<Vec<_>>().join(", ")
            ),
            NodeKind::Or(items) => format!(
                "or({})",
                items.iter().map(shape).collect::<Vec<_>>().join(", ")
            ),
            NodeKind::Not(inner) => format!("not({})", shape(inner)),
            NodeKind::Id { qualifiers, value } => format!(
                "{}{}{}{}",
                qualifiers
                    .proto()
                    .map_or(String::new(), |p| format!("{} ", p.name())),
                qualifiers
                    .dir
                    .map_or(String::new(), |d| format!("{:?} ", d.value)),
                qualifiers
                    .kind()
                    .map_or(String::new(), |k| format!("{} ", k.name())),
                value.describe()
            ),
            NodeKind::Abbrev(proto) => proto.name().to_string(),
            NodeKind::Relation { op, .. } => format!("rel{}", op.symbol()),
            other => format!("{other:?}"),
        }
    }

    // ---- constructs ----

    #[test]
    fn empty_expression_is_none() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("  \t\n").unwrap(), None);
    }

    #[test]
    fn and_or_have_equal_precedence_left_to_right() {
        assert_eq!(shape(&tree("tcp or udp and ip")), "and(or(tcp, udp), ip)");
        assert_eq!(shape(&tree("tcp and udp or ip")), "or(and(tcp, udp), ip)");
        assert_eq!(shape(&tree("tcp && udp && ip")), "and(tcp, udp, ip)");
    }

    #[test]
    fn not_binds_tighter() {
        assert_eq!(shape(&tree("not tcp and udp")), "and(not(tcp), udp)");
        assert_eq!(shape(&tree("! (tcp or udp)")), "not(or(tcp, udp))");
    }

    #[test]
    fn bare_values_inherit_qualifiers() {
        assert_eq!(
            shape(&tree("host 1.2.3.4 or 5.6.7.8")),
            "or(host 1.2.3.4, host 5.6.7.8)"
        );
        assert_eq!(
            shape(&tree("tcp dst port 80 or 443")),
            "or(tcp Dst port 80, tcp Dst port 443)"
        );
        assert_eq!(
            shape(&tree("host 1.2.3.4 and not 5.6.7.8")),
            "and(host 1.2.3.4, not(host 5.6.7.8))"
        );
        assert_eq!(
            shape(&tree("host (1.2.3.4 or 5.6.7.8)")),
            "or(host 1.2.3.4, host 5.6.7.8)"
        );
    }

    #[test]
    fn direction_qualifiers() {
        assert_eq!(
            shape(&tree("src or dst host 1.2.3.4")),
            "SrcOrDst host 1.2.3.4"
        );
        assert_eq!(shape(&tree("dst and src 1.2.3.4")), "SrcAndDst 1.2.3.4");
        assert_eq!(shape(&tree("ip src 1.2.3.4")), "ip Src 1.2.3.4");
    }

    #[test]
    fn protocol_names_and_numbers() {
        assert_eq!(shape(&tree("ether proto \\ip")), "link proto ip");
        assert_eq!(shape(&tree("ip6 protochain 6")), "ip6 protochain 6");
        assert_eq!(shape(&tree("proto 0x11")), "proto 17");
    }

    #[test]
    fn address_forms() {
        assert_eq!(shape(&tree("net 192.168/16")), "net 192.168/16");
        assert_eq!(
            shape(&tree("net 10.0.0.0 mask 255.0.0.0")),
            "net 10.0.0.0 mask 255.0.0.0"
        );
        assert_eq!(shape(&tree("ip6 net 2000::/3")), "ip6 net 2000::/3");
        assert_eq!(
            shape(&tree("ether host abcd.ef00.0003")),
            "link host ab:cd:ef:00:00:03"
        );
    }

    #[test]
    fn arithmetic_binds_tighter_than_comparison() {
        let node = tree("ip[6] & 0x40 == 0x40");
        let NodeKind::Relation { lhs, op, rhs } = node.kind else {
            panic!("{node:?}")
        };
        assert_eq!(op, RelOp::Eq);
        assert!(matches!(
            lhs.kind,
            ArithKind::Binary {
                op: ArithOp::And,
                ..
            }
        ));
        assert_eq!(rhs.kind, ArithKind::Num(0x40));
    }

    #[test]
    fn arithmetic_precedence_levels() {
        // 1 + 2 * 3 | 4  =  (1 + (2 * 3)) | 4
        let NodeKind::Relation { lhs, .. } = tree("1 + 2 * 3 | 4 == len").kind else {
            panic!()
        };
        let ArithKind::Binary { op, lhs: sum, .. } = lhs.kind else {
            panic!()
        };
        assert_eq!(op, ArithOp::Or);
        assert!(matches!(
            sum.kind,
            ArithKind::Binary {
                op: ArithOp::Add,
                ..
            }
        ));
    }

    #[test]
    fn parenthesis_is_arithmetic_when_an_operator_follows() {
        assert_eq!(shape(&tree("(vrrp[0] & 0xf0) >> 4 == 3")), "rel==");
        assert_eq!(shape(&tree("(ip[0] == 0x45)")), "rel==");
        assert_eq!(shape(&tree("(tcp or udp) and ip")), "and(or(tcp, udp), ip)");
    }

    #[test]
    fn loads_with_sizes_and_named_constants() {
        let NodeKind::Relation { lhs, .. } = tree("tcp[tcpflags:1] & tcp-syn != 0").kind else {
            panic!()
        };
        let ArithKind::Binary { lhs: load, .. } = lhs.kind else {
            panic!()
        };
        let ArithKind::Load {
            proto, index, size, ..
        } = load.kind
        else {
            panic!()
        };
        assert_eq!(
            (proto, index.kind, size),
            (ProtoName::Tcp, ArithKind::Num(13), 1)
        );
    }

    #[test]
    fn other_primitives() {
        assert_eq!(tree("vlan 100").kind, NodeKind::Vlan(Some(100)));
        assert_eq!(tree("vlan").kind, NodeKind::Vlan(None));
        assert_eq!(tree("less 200").kind, NodeKind::Less(200));
        assert_eq!(tree("greater 100").kind, NodeKind::Greater(100));
        assert_eq!(
            tree("byte 8 > 5").kind,
            NodeKind::Byte {
                index: 8,
                op: ByteOp::Gt,
                value: 5
            }
        );
        assert_eq!(
            tree("ip broadcast").kind,
            NodeKind::Broadcast(Some(ProtoName::Ip))
        );
        assert_eq!(tree("multicast").kind, NodeKind::Multicast(None));
    }

    // ---- malformed, one case per test ----

    #[test]
    fn unclosed_group() {
        assert_eq!(error_at("(tcp or udp"), 11);
    }

    #[test]
    fn unbalanced_close() {
        assert_eq!(error_at("tcp)"), 3);
    }

    #[test]
    fn dangling_operator() {
        assert_eq!(error_at("tcp and"), 7);
    }

    #[test]
    fn qualifier_without_value() {
        assert_eq!(error_at("host"), 4);
    }

    #[test]
    fn bare_value_at_the_start() {
        assert_eq!(error_at("1.2.3.4"), 0);
    }

    #[test]
    fn bare_value_after_unqualified_term() {
        assert_eq!(error_at("tcp or 80"), 7);
    }

    #[test]
    fn two_terms_without_operator() {
        assert_eq!(error_at("tcp udp"), 4);
    }

    #[test]
    fn arithmetic_without_comparison() {
        assert_eq!(error_at("ip[0] + 1"), 9);
    }

    #[test]
    fn unclosed_load() {
        assert_eq!(error_at("ip[0 == 1"), 5);
    }

    #[test]
    fn keyword_where_protocol_name_expected() {
        assert_eq!(error_at("ip proto tcp"), 9);
    }

    #[test]
    fn direction_before_proto() {
        assert_eq!(error_at("dst proto 6"), 4);
    }

    #[test]
    fn invalid_byte_operator() {
        assert_eq!(error_at("byte 8 >= 5"), 7);
    }

    #[test]
    fn length_test_without_number() {
        assert_eq!(error_at("less len"), 5);
    }

    #[test]
    fn not_at_the_end() {
        assert_eq!(error_at("tcp and not"), 11);
    }

    #[test]
    fn mask_without_netmask() {
        assert_eq!(error_at("net 10.0.0.0 mask"), 17);
    }

    #[test]
    fn prefix_without_length() {
        assert_eq!(error_at("net 10.0.0.0/"), 13);
    }

    #[test]
    fn unknown_character() {
        assert_eq!(error_at("port 80 $"), 8);
    }

    #[test]
    fn unsupported_keyword() {
        assert_eq!(error_at("mpls 5"), 0);
    }

    #[test]
    fn nesting_too_deep() {
        let text = format!("{}tcp{}", "(".repeat(100), ")".repeat(100));
        assert!(error_at(&text) < text.len());
        let nots = format!("{}tcp", "not ".repeat(200));
        assert!(error_at(&nots) < nots.len());
        let arith = format!("{}1 == len", "-".repeat(200));
        assert!(error_at(&arith) < arith.len());
    }

    #[test]
    fn alternating_and_or_too_deep() {
        let text = (0..100)
            .map(|i| if i % 2 == 0 { "tcp and" } else { "udp or" })
            .collect::<Vec<_>>()
            .join(" ")
            + " ip";
        assert!(error_at(&text) < text.len());
    }

    #[test]
    fn expression_too_long() {
        let text = "tcp or ".repeat(2000) + "udp";
        assert!(matches!(parse(&text), Err(CompileError::TooComplex { .. })));
    }
}
