//! The lexer: expression text to tokens, each with its byte span.
//!
//! It follows libpcap's scanner where that decides what an expression means:
//! a word is the longest run of `[A-Za-z0-9_.-]` (plus `:` inside IPv6 and
//! MAC addresses), so `len-4` is one (unknown) name, not `len - 4`;
//! keywords and named constants (`tcp-syn`) match whole words only;
//! `\word` is a name even when `word` is a keyword; numbers are decimal,
//! `0x` hexadecimal or, with a leading `0`, octal.

use std::net::Ipv6Addr;

use super::ast::ProtoName;
use super::names;
use crate::compile::CompileError;

/// A reserved word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    And,
    Or,
    Not,
    Src,
    Dst,
    Host,
    Net,
    Mask,
    Port,
    Portrange,
    Proto,
    Protochain,
    Gateway,
    Less,
    Greater,
    Byte,
    Broadcast,
    Multicast,
    Len,
    Vlan,
    /// A protocol qualifier such as `ip` or `tcp`.
    Pname(ProtoName),
    /// A word libpcap reserves for a feature this compiler lacks.
    Unsupported(&'static str),
}

/// Operators and brackets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Punct {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Colon,
    Slash,
    Plus,
    Minus,
    Star,
    Percent,
    Amp,
    Pipe,
    Caret,
    Shl,
    Shr,
    Gt,
    Ge,
    Lt,
    Le,
    /// `=` or `==`.
    Eq,
    Ne,
}

impl Punct {
    pub fn symbol(self) -> &'static str {
        match self {
            Punct::LParen => "(",
            Punct::RParen => ")",
            Punct::LBracket => "[",
            Punct::RBracket => "]",
            Punct::Colon => ":",
            Punct::Slash => "/",
            Punct::Plus => "+",
            Punct::Minus => "-",
            Punct::Star => "*",
            Punct::Percent => "%",
            Punct::Amp => "&",
            Punct::Pipe => "|",
            Punct::Caret => "^",
            Punct::Shl => "<<",
            Punct::Shr => ">>",
            Punct::Gt => ">",
            Punct::Ge => ">=",
            Punct::Lt => "<",
            Punct::Le => "<=",
            Punct::Eq => "==",
            Punct::Ne => "!=",
        }
    }
}

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Keyword(Keyword),
    /// A number, or a named constant such as `tcp-syn`.
    Num(u32),
    /// Dotted decimal with 2–4 parts (libpcap's `HID`), validated later.
    Ipv4(String),
    Ipv6(Ipv6Addr),
    Mac([u8; 6]),
    /// Any other word; `escaped` if it was written `\word`.
    Name {
        text: String,
        escaped: bool,
    },
    Punct(Punct),
    /// `!` (the word `not` is [`Keyword::Not`]).
    Bang,
    End,
}

/// A token and the bytes it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    pub start: usize,
    pub end: usize,
}

/// Splits an expression into tokens, ending with [`Tok::End`].
pub fn tokenize(text: &str) -> Result<Vec<Token>, CompileError> {
    let mut lexer = Lexer { text, at: 0 };
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token()?;
        let done = token.tok == Tok::End;
        tokens.push(token);
        if done {
            return Ok(tokens);
        }
    }
}

struct Lexer<'a> {
    text: &'a str,
    at: usize,
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-' | b':')
}

impl Lexer<'_> {
    fn next_token(&mut self) -> Result<Token, CompileError> {
        let bytes = self.text.as_bytes();
        while self.at < bytes.len() && matches!(bytes[self.at], b' ' | b'\t' | b'\r' | b'\n') {
            self.at += 1;
        }
        let start = self.at;
        let Some(&first) = bytes.get(start) else {
            return Ok(self.token(Tok::End, start));
        };
        if first == b'\\' {
            return self.escaped_name(start);
        }
        if first.is_ascii_alphanumeric() || first == b':' {
            if let Some(token) = self.word(start)? {
                return Ok(token);
            }
        }
        self.punct(start)
    }

    fn token(&mut self, tok: Tok, start: usize) -> Token {
        Token {
            tok,
            start,
            end: self.at,
        }
    }

    /// `\word`: a name even if `word` is reserved (libpcap:
    /// `"\\"[^ !()\n\t]+`).
    fn escaped_name(&mut self, start: usize) -> Result<Token, CompileError> {
        let rest = &self.text[start + 1..];
        let len = rest
            .find([' ', '!', '(', ')', '\n', '\t'])
            .unwrap_or(rest.len());
        if len == 0 {
            return Err(CompileError::syntax(
                start,
                "'\\' must be followed by a name",
            ));
        }
        self.at = start + 1 + len;
        let text = rest[..len].to_string();
        Ok(self.token(
            Tok::Name {
                text,
                escaped: true,
            },
            start,
        ))
    }

    /// A word-shaped token, or `None` when the text at `start` is a lone
    /// `:` (punctuation).
    fn word(&mut self, start: usize) -> Result<Option<Token>, CompileError> {
        let bytes = self.text.as_bytes();
        let mut end = start;
        while end < bytes.len() && is_word_byte(bytes[end]) {
            end += 1;
        }
        let run = &self.text[start..end];
        if run.contains(':') {
            if let Some(tok) = address_with_colons(run) {
                self.at = end;
                return Ok(Some(self.token(tok, start)));
            }
            // Not an address: the word stops at the first colon, which is
            // the `[off:size]` separator.
            end = start + run.find(':').unwrap_or(0);
            if end == start {
                return Ok(None);
            }
        }
        // libpcap's ID pattern cannot end in `-` or `_`.
        while end > start + 1 && matches!(bytes[end - 1], b'-' | b'_') {
            end -= 1;
        }
        self.at = end;
        let word = &self.text[start..end];
        let tok = classify_word(word, start)?;
        Ok(Some(self.token(tok, start)))
    }

    fn punct(&mut self, start: usize) -> Result<Token, CompileError> {
        let rest = &self.text[start..];
        let two = |s: &str| rest.starts_with(s);
        let (tok, len) = if two("&&") {
            (Tok::Keyword(Keyword::And), 2)
        } else if two("||") {
            (Tok::Keyword(Keyword::Or), 2)
        } else if two(">=") {
            (Tok::Punct(Punct::Ge), 2)
        } else if two("<=") {
            (Tok::Punct(Punct::Le), 2)
        } else if two("!=") {
            (Tok::Punct(Punct::Ne), 2)
        } else if two("==") {
            (Tok::Punct(Punct::Eq), 2)
        } else if two("<<") {
            (Tok::Punct(Punct::Shl), 2)
        } else if two(">>") {
            (Tok::Punct(Punct::Shr), 2)
        } else {
            let Some(c) = rest.chars().next() else {
                return Ok(self.token(Tok::End, start));
            };
            let tok = match c {
                '(' => Tok::Punct(Punct::LParen),
                ')' => Tok::Punct(Punct::RParen),
                '[' => Tok::Punct(Punct::LBracket),
                ']' => Tok::Punct(Punct::RBracket),
                ':' => Tok::Punct(Punct::Colon),
                '/' => Tok::Punct(Punct::Slash),
                '+' => Tok::Punct(Punct::Plus),
                '-' => Tok::Punct(Punct::Minus),
                '*' => Tok::Punct(Punct::Star),
                '%' => Tok::Punct(Punct::Percent),
                '&' => Tok::Punct(Punct::Amp),
                '|' => Tok::Punct(Punct::Pipe),
                '^' => Tok::Punct(Punct::Caret),
                '>' => Tok::Punct(Punct::Gt),
                '<' => Tok::Punct(Punct::Lt),
                '=' => Tok::Punct(Punct::Eq),
                '!' => Tok::Bang,
                other => {
                    return Err(CompileError::syntax(
                        start,
                        format!("unexpected character {other:?}"),
                    ))
                }
            };
            (tok, c.len_utf8())
        };
        self.at = start + len;
        Ok(self.token(tok, start))
    }
}

/// An IPv6 or colon-separated MAC address, if the run is one.
fn address_with_colons(run: &str) -> Option<Tok> {
    if let Some(mac) = parse_mac(run) {
        return Some(Tok::Mac(mac));
    }
    run.parse::<Ipv6Addr>().ok().map(Tok::Ipv6)
}

/// What a word without colons is: keyword, named constant, number, IPv4
/// text, MAC address or name.
fn classify_word(word: &str, start: usize) -> Result<Tok, CompileError> {
    if let Some(keyword) = names::keyword(word) {
        return Ok(Tok::Keyword(keyword));
    }
    if let Some(value) = names::named_constant(word) {
        return Ok(Tok::Num(value));
    }
    if word.as_bytes()[0].is_ascii_digit() {
        if let Some(number) = parse_number(word, start)? {
            return Ok(Tok::Num(number));
        }
        if is_dotted_decimal(word) {
            return Ok(Tok::Ipv4(word.to_string()));
        }
    }
    if let Some(mac) = parse_mac(word) {
        return Ok(Tok::Mac(mac));
    }
    Ok(Tok::Name {
        text: word.to_string(),
        escaped: false,
    })
}

/// A decimal, `0x` hexadecimal or `0`-prefixed octal number; `None` if the
/// word is not number-shaped, an error if it is but does not fit.
fn parse_number(word: &str, start: usize) -> Result<Option<u32>, CompileError> {
    let (digits, radix) =
        if let Some(hex) = word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
            (hex, 16)
        } else if word.len() > 1 && word.starts_with('0') {
            (&word[1..], 8)
        } else {
            (word, 10)
        };
    let shaped = match radix {
        16 => !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_hexdigit()),
        _ => !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
    };
    if !shaped {
        return Ok(None);
    }
    if radix == 8 && digits.bytes().any(|b| b > b'7') {
        return Err(CompileError::value(
            start,
            format!("number {word} contains non-octal digit"),
        ));
    }
    u32::from_str_radix(digits, radix)
        .map(Some)
        .map_err(|_| CompileError::value(start, format!("number {word} overflows 32 bits")))
}

/// libpcap's `HID`: 2 to 4 dot-separated decimal parts.
fn is_dotted_decimal(word: &str) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    (2..=4).contains(&parts.len())
        && parts
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

/// `ab:cd:ef:00:00:01`, `ab-cd-ef-00-00-01`, `ab.cd.ef.00.00.01` (one or two
/// hex digits per byte) or `abcd.ef00.0001`.
pub fn parse_mac(word: &str) -> Option<[u8; 6]> {
    let hex_byte = |part: &str| -> Option<u8> {
        if (1..=2).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_hexdigit()) {
            u8::from_str_radix(part, 16).ok()
        } else {
            None
        }
    };
    for separator in [':', '-', '.'] {
        let parts: Vec<&str> = word.split(separator).collect();
        if parts.len() == 6 {
            let mut mac = [0u8; 6];
            let mut ok = true;
            for (slot, part) in mac.iter_mut().zip(&parts) {
                match hex_byte(part) {
                    Some(byte) => *slot = byte,
                    None => ok = false,
                }
            }
            if ok {
                return Some(mac);
            }
        }
    }
    let groups: Vec<&str> = word.split('.').collect();
    if groups.len() == 3
        && groups
            .iter()
            .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        let mut mac = [0u8; 6];
        for (index, group) in groups.iter().enumerate() {
            let value = u16::from_str_radix(group, 16).ok()?;
            mac[2 * index..2 * index + 2].copy_from_slice(&value.to_be_bytes());
        }
        return Some(mac);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        tokenize(text).unwrap().into_iter().map(|t| t.tok).collect()
    }

    fn name(text: &str) -> Tok {
        Tok::Name {
            text: text.into(),
            escaped: false,
        }
    }

    #[test]
    fn numbers_in_every_base() {
        assert_eq!(
            toks("10 0x1F 0X0a000002 010"),
            vec![
                Tok::Num(10),
                Tok::Num(0x1f),
                Tok::Num(0x0a00_0002),
                Tok::Num(8),
                Tok::End
            ]
        );
    }

    #[test]
    fn number_overflow_is_refused() {
        let err = tokenize("port 99999999999").unwrap_err();
        assert_eq!(err.position(), 5);
    }

    #[test]
    fn octal_with_bad_digit_is_refused() {
        assert_eq!(tokenize("port 09").unwrap_err().position(), 5);
    }

    #[test]
    fn keywords_only_as_whole_words() {
        assert_eq!(toks("len-4"), vec![name("len-4"), Tok::End]);
        assert_eq!(toks("length"), vec![Tok::Keyword(Keyword::Len), Tok::End]);
        assert_eq!(toks("tcp-syn"), vec![Tok::Num(2), Tok::End]);
        assert_eq!(
            toks("&& ||"),
            vec![
                Tok::Keyword(Keyword::And),
                Tok::Keyword(Keyword::Or),
                Tok::End
            ]
        );
    }

    #[test]
    fn escaped_keyword_is_a_name() {
        assert_eq!(
            toks("\\ip"),
            vec![
                Tok::Name {
                    text: "ip".into(),
                    escaped: true
                },
                Tok::End
            ]
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(toks("192.168"), vec![Tok::Ipv4("192.168".into()), Tok::End]);
        assert_eq!(
            toks("ab.cd.ef.00.00.02"),
            vec![Tok::Mac([0xab, 0xcd, 0xef, 0, 0, 2]), Tok::End]
        );
        assert_eq!(
            toks("abcd.ef00.0003"),
            vec![Tok::Mac([0xab, 0xcd, 0xef, 0, 0, 3]), Tok::End]
        );
        assert_eq!(
            toks("ab:cd:ef:0:0:1"),
            vec![Tok::Mac([0xab, 0xcd, 0xef, 0, 0, 1]), Tok::End]
        );
        let v6: Ipv6Addr = "fe80::7788:99ff:feaa:bbcc".parse().unwrap();
        assert_eq!(
            toks("fe80::7788:99ff:254.170.187.204"),
            vec![Tok::Ipv6(v6), Tok::End]
        );
        assert_eq!(
            toks("::1/128"),
            vec![
                Tok::Ipv6(Ipv6Addr::LOCALHOST),
                Tok::Punct(Punct::Slash),
                Tok::Num(128),
                Tok::End
            ]
        );
    }

    #[test]
    fn colon_in_a_load_is_punctuation() {
        assert_eq!(
            toks("ip[6:2]"),
            vec![
                Tok::Keyword(Keyword::Pname(ProtoName::Ip)),
                Tok::Punct(Punct::LBracket),
                Tok::Num(6),
                Tok::Punct(Punct::Colon),
                Tok::Num(2),
                Tok::Punct(Punct::RBracket),
                Tok::End
            ]
        );
    }

    #[test]
    fn unknown_character_is_refused_at_its_position() {
        assert_eq!(tokenize("port 80 # x").unwrap_err().position(), 8);
        assert_eq!(tokenize("host é").unwrap_err().position(), 5);
    }

    #[test]
    fn spans_are_byte_offsets() {
        let tokens = tokenize("  tcp  port").unwrap();
        assert_eq!((tokens[0].start, tokens[0].end), (2, 5));
        assert_eq!((tokens[1].start, tokens[1].end), (7, 11));
    }
}
