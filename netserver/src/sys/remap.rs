//! A window of address space into which pages of a memfd are mapped and
//! unmapped one at a time: the "real" page flip that DESIGN.md weighs the
//! exchange of frame indices against, kept only as the baseline of `bench
//! exchange`. The server never remaps a client's memory.
//!
//! The window is reserved once (`PROT_NONE`, no memory behind it); a flip
//! maps a page over one slot with `MAP_FIXED` and touches it (the fault
//! that makes the page present), and unmapping puts `PROT_NONE` back over
//! the slot, so the range stays ours and nothing else can be placed there.
//! No Rust reference into the window ever exists: the one read goes through
//! a raw pointer while the slot is mapped.

use std::io;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;

use rustix::fs::{fcntl_add_seals, fstat, SealFlags};
use rustix::mm::{mmap, mmap_anonymous, munmap, MapFlags, ProtFlags};

use super::mem::page_size;

/// Reserved address space of `slots` pages, and the memfd whose pages are
/// mapped into it.
#[derive(Debug)]
pub struct RemapWindow {
    base: NonNull<u8>,
    slots: usize,
    memfd: OwnedFd,
    /// Whole pages in `memfd`, which is sealed against shrinking: a mapped
    /// page can never lose its backing (a read would raise `SIGBUS`).
    pages: usize,
}

// SAFETY: the window is an owned range of this process's address space, like
// a `Box<[u8]>` of pages; nothing in it is tied to the creating thread.
unsafe impl Send for RemapWindow {}

impl RemapWindow {
    /// Reserves `slots` pages of address space, inaccessible until a page of
    /// `memfd` is flipped in. `memfd` (created with `ALLOW_SEALING`) is
    /// sealed against shrinking here.
    pub fn reserve(slots: usize, memfd: OwnedFd) -> io::Result<RemapWindow> {
        fcntl_add_seals(&memfd, SealFlags::SHRINK).map_err(io::Error::from)?;
        let size = fstat(&memfd).map_err(io::Error::from)?.st_size;
        let pages = usize::try_from(size).unwrap_or(0) / page_size();
        let len = slots
            .max(1)
            .checked_mul(page_size())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "window too large"))?;
        // SAFETY: a new anonymous mapping at an address the kernel chooses
        // cannot overlap any existing Rust object.
        let ptr = unsafe {
            mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }
        .map_err(io::Error::from)?;
        let base = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(RemapWindow {
            base,
            slots: slots.max(1),
            memfd,
            pages,
        })
    }

    /// Number of page slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Number of whole pages in the memfd.
    pub fn pages(&self) -> usize {
        self.pages
    }

    fn slot_ptr(&self, slot: usize) -> io::Result<*mut u8> {
        if slot >= self.slots {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("slot {slot} is outside the window of {}", self.slots),
            ));
        }
        // SAFETY: slot < slots, so the offset stays inside the reservation.
        Ok(unsafe { self.base.as_ptr().add(slot * page_size()) })
    }

    /// Maps page `page` of the memfd shared and readable over `slot`,
    /// replacing what was there, and reads its first byte: the touch that
    /// faults the page in, as a client reading the packet would. Returns
    /// that byte.
    pub fn flip_in(&mut self, slot: usize, page: usize) -> io::Result<u8> {
        let at = self.slot_ptr(slot)?;
        if page >= self.pages {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("page {page} is outside the memfd's {} pages", self.pages),
            ));
        }
        let offset = (page * page_size()) as u64;
        // SAFETY: `at..at + page` lies inside the window this value reserved
        // and owns; MAP_FIXED replaces only that range, which no Rust
        // reference points into (module docs).
        let mapped = unsafe {
            mmap(
                at.cast(),
                page_size(),
                ProtFlags::READ,
                MapFlags::SHARED | MapFlags::FIXED,
                &self.memfd,
                offset,
            )
        }
        .map_err(io::Error::from)?;
        if mapped.cast::<u8>() != at {
            return Err(io::Error::other("MAP_FIXED mapped elsewhere"));
        }
        // SAFETY: the page was just mapped readable at `at`; a volatile read
        // so that the touch is not optimised away.
        Ok(unsafe { std::ptr::read_volatile(at) })
    }

    /// Unmaps whatever is over `slot` by putting an inaccessible anonymous
    /// page there (`MAP_FIXED`): the page's translation is removed from
    /// every CPU that may hold it, as an unmap does.
    pub fn flip_out(&mut self, slot: usize) -> io::Result<()> {
        let at = self.slot_ptr(slot)?;
        // SAFETY: as in `flip_in`: a range of our own reservation that no
        // Rust reference points into.
        let mapped = unsafe {
            mmap_anonymous(
                at.cast(),
                page_size(),
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::FIXED | MapFlags::NORESERVE,
            )
        }
        .map_err(io::Error::from)?;
        if mapped.cast::<u8>() != at {
            return Err(io::Error::other("MAP_FIXED mapped elsewhere"));
        }
        Ok(())
    }
}

impl Drop for RemapWindow {
    fn drop(&mut self) {
        // SAFETY: the whole reservation, mapped by `reserve` and only ever
        // replaced slot by slot inside itself; nothing points into it.
        let _ = unsafe { munmap(self.base.as_ptr().cast(), self.slots * page_size()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::MemfdFlags;

    fn memfd_with(pages: &[u8]) -> OwnedFd {
        let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
        let fd = rustix::fs::memfd_create("remap-test", flags).unwrap();
        for (i, &b) in pages.iter().enumerate() {
            let page = vec![b; page_size()];
            rustix::io::pwrite(&fd, &page, (i * page_size()) as u64).unwrap();
        }
        fd
    }

    #[test]
    fn a_flipped_in_page_shows_the_memfd_page_and_out_leaves_the_slot_reserved() {
        let mut w = RemapWindow::reserve(2, memfd_with(&[0x11, 0x22, 0x33])).unwrap();
        assert_eq!(w.pages(), 3);
        assert_eq!(w.flip_in(0, 0).unwrap(), 0x11);
        assert_eq!(w.flip_in(1, 2).unwrap(), 0x33);
        // Over a slot already in use: the new page replaces the old one.
        assert_eq!(w.flip_in(0, 1).unwrap(), 0x22);
        w.flip_out(0).unwrap();
        w.flip_out(1).unwrap();
        assert!(w.flip_in(2, 0).is_err(), "outside the window");
        assert!(w.flip_in(0, 3).is_err(), "outside the memfd");
    }

    #[test]
    fn the_memfd_cannot_shrink_under_a_mapped_page() {
        let fd = memfd_with(&[1, 2]);
        let dup = fd.try_clone().unwrap();
        let mut w = RemapWindow::reserve(1, fd).unwrap();
        assert_eq!(w.flip_in(0, 1).unwrap(), 2);
        assert!(
            rustix::fs::ftruncate(&dup, 0).is_err(),
            "sealed against shrinking"
        );
    }
}
