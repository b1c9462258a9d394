//! Filter tags: 64-bit names for installed filters, never reused in a run.
//!
//! A tag is `epoch << 48 | counter`. The epoch is drawn at random when the
//! server starts (never 0), so tag 0 — [`filters::NOT_INTERESTED`] — is never
//! issued, and a tag kept from an earlier run of the server almost surely
//! carries a different epoch and is refused as *stale* instead of silently
//! naming someone else's filter. The counter starts at 1 and only grows; with
//! 48 bits it cannot wrap within the life of a process.

use std::cell::Cell;

/// A filter's tag.
pub type Tag = filters::Tag;

/// Bits of a tag below the epoch.
pub const COUNTER_BITS: u32 = 48;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;

/// The epoch (high 16 bits) of a tag.
pub const fn epoch_of(tag: Tag) -> u16 {
    (tag >> COUNTER_BITS) as u16
}

/// Why a tag presented by a client names no filter of this run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TagError {
    /// The tag was issued by an earlier run of the server.
    #[error(
        "stale tag {tag:#018x}: the server restarted (tag epoch {tag_epoch:#06x}, this run's epoch \
         {epoch:#06x}); install the filter again"
    )]
    Stale {
        tag: Tag,
        tag_epoch: u16,
        epoch: u16,
    },
    /// The tag is of this run but names no installed filter.
    #[error(
        "unknown tag {tag:#018x}: no filter with this tag is installed now (it was closed or \
         removed, or never existed); install the filter again"
    )]
    Unknown { tag: Tag },
    /// Tag 0 means "not interested" and never names a filter.
    #[error("tag 0 means \"not interested\" and never names a filter; pass the tag that `Fetch.tag` returned")]
    Zero,
}

/// Issues this run's tags and judges tags presented by clients.
///
/// Lives on the control-plane thread only (tags are issued at install time),
/// hence `Cell` and not an atomic.
#[derive(Debug)]
pub struct TagAllocator {
    epoch: u16,
    next: Cell<u64>,
}

impl TagAllocator {
    /// An allocator with a fresh random epoch.
    pub fn random() -> TagAllocator {
        TagAllocator::with_epoch(loop {
            let e: u16 = rand::random();
            if e != 0 {
                break e;
            }
        })
    }

    /// An allocator with a chosen epoch (tests). Epoch 0 is replaced by 1:
    /// tags must never be 0.
    pub fn with_epoch(epoch: u16) -> TagAllocator {
        TagAllocator {
            epoch: epoch.max(1),
            next: Cell::new(1),
        }
    }

    /// This run's epoch.
    pub fn epoch(&self) -> u16 {
        self.epoch
    }

    /// A tag never issued before in this run.
    ///
    /// # Panics
    /// After 2^48 - 1 tags (not reachable in practice: a million installs per
    /// second would take nine years).
    pub fn issue(&self) -> Tag {
        let n = self.next.get();
        assert!(n <= COUNTER_MASK, "tag counter exhausted");
        self.next.set(n + 1);
        (u64::from(self.epoch) << COUNTER_BITS) | n
    }

    /// Whether `tag` could be one of this run's: `Ok` if its epoch is
    /// current (the caller then looks it up), the stale or zero error if not.
    pub fn check(&self, tag: Tag) -> Result<Tag, TagError> {
        if tag == 0 {
            return Err(TagError::Zero);
        }
        let tag_epoch = epoch_of(tag);
        if tag_epoch != self.epoch {
            return Err(TagError::Stale {
                tag,
                tag_epoch,
                epoch: self.epoch,
            });
        }
        Ok(tag)
    }

    /// The error for a current-epoch tag that names no installed filter.
    pub fn unknown(&self, tag: Tag) -> TagError {
        self.check(tag).err().unwrap_or(TagError::Unknown { tag })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_carry_epoch_and_never_repeat() {
        let a = TagAllocator::with_epoch(0xbeef);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let t = a.issue();
            assert_ne!(t, 0);
            assert_eq!(epoch_of(t), 0xbeef);
            assert!(seen.insert(t), "tag {t:#x} reused");
        }
    }

    #[test]
    fn random_epoch_is_never_zero() {
        for _ in 0..1000 {
            assert_ne!(TagAllocator::random().epoch(), 0);
        }
        assert_eq!(TagAllocator::with_epoch(0).epoch(), 1);
    }

    #[test]
    fn stale_tag_from_an_earlier_run_is_refused_with_both_epochs() {
        let old = TagAllocator::with_epoch(0x1234);
        let tag = old.issue();
        let new = TagAllocator::with_epoch(0x5678);
        let err = new.check(tag).unwrap_err();
        assert_eq!(
            err,
            TagError::Stale {
                tag,
                tag_epoch: 0x1234,
                epoch: 0x5678
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("stale tag 0x1234000000000001"), "{msg}");
        assert!(msg.contains("the server restarted"), "{msg}");
        assert!(msg.contains("0x1234") && msg.contains("0x5678"), "{msg}");
        assert!(msg.contains("install the filter again"), "{msg}");
    }

    #[test]
    fn current_epoch_unknown_tag_says_closed_or_never_existed() {
        let a = TagAllocator::with_epoch(7);
        let t = a.issue();
        assert_eq!(a.check(t), Ok(t));
        let msg = a.unknown(t).to_string();
        assert!(msg.contains("unknown tag"), "{msg}");
        assert!(msg.contains("closed"), "{msg}");
        assert_eq!(a.check(0), Err(TagError::Zero));
        assert_eq!(a.unknown(0), TagError::Zero);
    }
}
