//! Anonymous, page-aligned memory that the kernel may write into
//! asynchronously (io_uring receive buffers, provided-buffer rings).
//!
//! Such memory must never be reachable through a Rust reference while the
//! kernel may write it, so [`Pages`] hands out raw pointers, plus slices only
//! through `unsafe` accessors whose callers (in this module tree) know the
//! kernel has finished with that range.

use std::io;
use std::ptr::NonNull;

use rustix::mm::{mmap_anonymous, munmap, MapFlags, ProtFlags};

/// Size of a page on this machine.
pub fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
    })
}

/// An anonymous private read-write mapping, unmapped on drop.
#[derive(Debug)]
pub struct Pages {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `Pages` is an owned allocation (like `Box<[u8]>`); it holds no
// thread-affine state. Access to the bytes goes through raw pointers whose
// synchronisation is the caller's business, as with any raw allocation.
unsafe impl Send for Pages {}

impl Pages {
    /// Maps `len` bytes (rounded up to whole pages), zero-filled.
    pub fn new(len: usize) -> io::Result<Self> {
        let page = page_size();
        let len = len
            .max(1)
            .checked_next_multiple_of(page)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mapping too large"))?;
        // SAFETY: a fresh anonymous mapping at a kernel-chosen address does
        // not alias any existing Rust object.
        let ptr = unsafe {
            mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::POPULATE,
            )
        }
        .map_err(io::Error::from)?;
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Self { ptr, len })
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes (a whole number of pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a mapping has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Pointer to `offset` within the mapping.
    ///
    /// # Panics
    /// If `offset + len` exceeds the mapping.
    pub fn ptr_at(&self, offset: usize, len: usize) -> *mut u8 {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "range {offset}+{len} outside a mapping of {} bytes",
            self.len
        );
        // SAFETY: offset is within the mapping (checked above), so the result
        // stays inside the same allocation.
        unsafe { self.ptr.as_ptr().add(offset) }
    }

    /// A shared view of `offset..offset + len`.
    ///
    /// # Safety
    /// No one — in particular not the kernel through an in-flight operation —
    /// may write this range while the returned slice lives.
    pub unsafe fn slice(&self, offset: usize, len: usize) -> &[u8] {
        let ptr = self.ptr_at(offset, len);
        // SAFETY: in bounds (ptr_at), initialised (anonymous mappings are
        // zero-filled), and not written concurrently (the caller's contract).
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

impl Pages {
    /// An exclusive view of `offset..offset + len`.
    ///
    /// # Safety
    /// No one else — not the kernel through an in-flight operation, not
    /// another slice from this mapping — may access this range while the
    /// returned slice lives.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        let ptr = self.ptr_at(offset, len);
        // SAFETY: in bounds (ptr_at), initialised, and exclusive (the
        // caller's contract).
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: we own the mapping; no Rust reference into it outlives
        // `self` (slices borrow `self`), and owners that lent it to the kernel
        // leak it instead of dropping it when a completion is outstanding.
        if let Err(e) = unsafe { munmap(self.ptr.as_ptr().cast(), self.len) } {
            tracing::error!(error = %e, "munmap failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_pages_and_is_zeroed() {
        let p = Pages::new(100).unwrap();
        assert_eq!(p.len(), page_size());
        // SAFETY: nothing else writes this fresh mapping.
        let s = unsafe { p.slice(0, p.len()) };
        assert!(s.iter().all(|&b| b == 0));
    }

    #[test]
    #[should_panic(expected = "outside a mapping")]
    fn ptr_at_checks_bounds() {
        let p = Pages::new(1).unwrap();
        let _ = p.ptr_at(p.len(), 1);
    }
}
