//! Turning a comparison into the atom that says it best.
//!
//! The trie merges [`Atom::Eq`] atoms on the same field and mask into one
//! hash node, so every comparison that is really a masked equality becomes
//! one: `ip[6] & 0x40 == 0x40`, `(vrrp[0] & 0xf0) >> 4 == 3`,
//! `tcp[13] & 2 != 0`, `ip[16] >= 224` (the top three bits set),
//! `port <= 1023` (no bit above the tenth). Everything else stays a general
//! [`Atom::Test`]. The rewrites are exact, including for frames where the
//! field was not captured (both forms fail).

use crate::atom::{ArithOp, Atom, Expr, Field, RelOp};

/// The atom for `lhs op rhs`.
pub fn relation(lhs: Expr, op: RelOp, rhs: Expr) -> Atom {
    // Constant on the left: mirror so the field is on the left.
    let (lhs, op, rhs) = match (&lhs, &rhs) {
        (Expr::Const(_), rhs_expr) if !matches!(rhs_expr, Expr::Const(_)) => (rhs, mirror(op), lhs),
        _ => (lhs, op, rhs),
    };
    if let (Some(masked), Expr::Const(constant)) = (MaskedField::of(&lhs), &rhs) {
        if let Some(atom) = masked.compare(op, *constant) {
            return atom;
        }
    }
    Atom::Test { lhs, op, rhs }
}

/// `a op b` ⇔ `b mirror(op) a`.
fn mirror(op: RelOp) -> RelOp {
    match op {
        RelOp::Lt => RelOp::Gt,
        RelOp::Le => RelOp::Ge,
        RelOp::Gt => RelOp::Lt,
        RelOp::Ge => RelOp::Le,
        same => same,
    }
}

/// `(field & mask) >> shift`.
#[derive(Debug, Clone, Copy)]
struct MaskedField {
    field: Field,
    mask: u32,
    shift: u32,
}

impl MaskedField {
    fn of(expr: &Expr) -> Option<MaskedField> {
        match expr {
            Expr::Field(field) => Some(MaskedField {
                field: *field,
                mask: field.width.full_mask(),
                shift: 0,
            }),
            Expr::Binary {
                op: ArithOp::And,
                lhs,
                rhs,
            } => {
                let (inner, mask) = match (lhs.as_ref(), rhs.as_ref()) {
                    (inner, Expr::Const(mask)) | (Expr::Const(mask), inner) => (inner, *mask),
                    _ => return None,
                };
                let inner = MaskedField::of(inner)?;
                // ((f & M) >> s) & m  =  (f & (M & (m << s))) >> s; bits of m
                // shifted out are above anything (f & M) >> s can hold.
                Some(MaskedField {
                    mask: inner.mask & (mask << inner.shift),
                    ..inner
                })
            }
            Expr::Binary {
                op: ArithOp::Shr,
                lhs,
                rhs,
            } => {
                let Expr::Const(amount) = rhs.as_ref() else {
                    return None;
                };
                let inner = MaskedField::of(lhs)?;
                let shift = inner.shift.checked_add(*amount).filter(|s| *s < 32)?;
                Some(MaskedField { shift, ..inner })
            }
            _ => None,
        }
    }

    /// The bits of the field that reach the result: the mask without the
    /// bits shifted out.
    fn selected(&self) -> u32 {
        self.mask & !((1u32 << self.shift) - 1)
    }

    fn eq(&self, value: u32) -> Atom {
        Atom::Eq {
            field: self.field,
            mask: self.selected(),
            value,
        }
    }

    fn ne(&self, value: u32) -> Atom {
        Atom::Ne {
            field: self.field,
            mask: self.selected(),
            value,
        }
    }

    /// The Eq/Ne atom for `self op constant`, if there is one.
    fn compare(self, op: RelOp, constant: u32) -> Option<Atom> {
        match op {
            RelOp::Eq | RelOp::Ne => {
                // (f & M) >> s == c  ⇔  f & M == c << s, when c << s loses
                // nothing and has no bit outside M (else it never holds).
                let shifted = constant.checked_shl(self.shift)?;
                if shifted >> self.shift != constant || shifted & !self.selected() != 0 {
                    return None;
                }
                Some(if op == RelOp::Eq {
                    self.eq(shifted)
                } else {
                    self.ne(shifted)
                })
            }
            RelOp::Gt => self.at_least(constant.checked_add(1)?),
            RelOp::Ge => self.at_least(constant),
            RelOp::Lt => self.at_least(constant).map(negate),
            RelOp::Le => self.at_least(constant.checked_add(1)?).map(negate),
        }
    }

    /// The atom for `self >= bound`, if it is a masked (in)equality.
    fn at_least(self, bound: u32) -> Option<Atom> {
        if bound == 0 {
            return None; // always true: keep the general test
        }
        if self.shift == 0 && self.mask == self.field.width.full_mask() {
            let full = self.mask;
            // bound = 1…10…0 with ones from the top of the field: f >= bound
            // ⇔ all those top bits are set.
            if bound <= full && (full - bound + 1).is_power_of_two() {
                return Some(
                    MaskedField {
                        mask: bound,
                        ..self
                    }
                    .eq(bound),
                );
            }
            // bound = 2^k: f >= bound ⇔ some bit at k or above is set.
            if bound <= full && bound.is_power_of_two() {
                return Some(
                    MaskedField {
                        mask: full & !(bound - 1),
                        ..self
                    }
                    .ne(0),
                );
            }
            return None;
        }
        // Masked or shifted: only "is any selected bit set".
        (bound == 1).then(|| self.ne(0))
    }
}

fn negate(atom: Atom) -> Atom {
    match atom {
        Atom::Eq { field, mask, value } => Atom::Ne { field, mask, value },
        Atom::Ne { field, mask, value } => Atom::Eq { field, mask, value },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atom::{Base, Width};

    fn byte(offset: u32) -> Expr {
        Expr::Field(Field::at(offset, Width::Byte))
    }

    fn and(lhs: Expr, mask: u32) -> Expr {
        Expr::Binary {
            op: ArithOp::And,
            lhs: Box::new(lhs),
            rhs: Box::new(Expr::Const(mask)),
        }
    }

    fn eq(offset: u32, mask: u32, value: u32) -> Atom {
        Atom::Eq {
            field: Field::at(offset, Width::Byte),
            mask,
            value,
        }
    }

    fn ne(offset: u32, mask: u32, value: u32) -> Atom {
        Atom::Ne {
            field: Field::at(offset, Width::Byte),
            mask,
            value,
        }
    }

    #[test]
    fn plain_and_masked_equalities() {
        assert_eq!(
            relation(byte(20), RelOp::Eq, Expr::Const(5)),
            eq(20, 0xff, 5)
        );
        assert_eq!(
            relation(Expr::Const(5), RelOp::Eq, byte(20)),
            eq(20, 0xff, 5)
        );
        assert_eq!(
            relation(and(byte(20), 0x40), RelOp::Eq, Expr::Const(0x40)),
            eq(20, 0x40, 0x40)
        );
        assert_eq!(
            relation(and(byte(47), 2), RelOp::Ne, Expr::Const(0)),
            ne(47, 2, 0)
        );
    }

    #[test]
    fn shifted_nibble() {
        let version = Expr::Binary {
            op: ArithOp::Shr,
            lhs: Box::new(and(byte(14), 0xf0)),
            rhs: Box::new(Expr::Const(4)),
        };
        assert_eq!(
            relation(version, RelOp::Eq, Expr::Const(4)),
            eq(14, 0xf0, 0x40)
        );
    }

    #[test]
    fn ranges_that_are_bit_tests() {
        assert_eq!(
            relation(byte(30), RelOp::Ge, Expr::Const(224)),
            eq(30, 0xe0, 0xe0)
        );
        assert_eq!(
            relation(byte(30), RelOp::Lt, Expr::Const(224)),
            ne(30, 0xe0, 0xe0)
        );
        assert_eq!(
            relation(byte(30), RelOp::Gt, Expr::Const(15)),
            ne(30, 0xf0, 0)
        );
        assert_eq!(
            relation(byte(30), RelOp::Le, Expr::Const(15)),
            eq(30, 0xf0, 0)
        );
        assert_eq!(
            relation(and(byte(30), 0x12), RelOp::Gt, Expr::Const(0)),
            ne(30, 0x12, 0)
        );
    }

    #[test]
    fn impossible_or_general_comparisons_stay_tests() {
        assert!(matches!(
            relation(byte(1), RelOp::Eq, Expr::Const(300)),
            Atom::Test { .. }
        ));
        assert!(matches!(
            relation(byte(1), RelOp::Gt, Expr::Const(5)),
            Atom::Test { .. }
        ));
        assert!(matches!(
            relation(and(byte(1), 0x0f), RelOp::Eq, Expr::Const(0x10)),
            Atom::Test { .. }
        ));
        let shifted = Field {
            base: Base::Ipv4Payload { ip: 14 },
            offset: 0,
            width: Width::Half,
        };
        assert!(matches!(
            relation(Expr::Field(shifted), RelOp::Ge, Expr::Const(1024)),
            Atom::Ne {
                mask: 0xfc00,
                value: 0,
                ..
            }
        ));
    }
}
