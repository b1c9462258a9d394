//! The memfd behind a region and its mapping: create (client), verify and map
//! (server), unmap on drop.
//!
//! This module holds most of the crate's `unsafe`: one `mmap`, one `munmap`,
//! and the conversions from the mapping's address to atomic views and raw
//! frame pointers. Everything built on top ([`crate::ring`],
//! [`crate::server`], [`crate::client`]) goes through [`Mapping::words`],
//! [`Mapping::word`] and the frame-copy helpers here.
//!
//! # How shared memory is accessed
//!
//! The peer can write any byte of the region at any time. Our process
//! therefore never forms a `&T` or `&[u8]` over peer-writable bytes that it
//! reads to decide something:
//!
//! * Indices, flags and descriptors are read and written as `AtomicU32`
//!   words (one load per word, into a local copy that is then validated).
//!   `AtomicU32` has interior mutability, so a shared reference to it does
//!   not promise the value is stable — which is exactly the truth.
//! * Packet bytes are moved with `copy_nonoverlapping` through raw pointers
//!   (never references), into or out of memory the caller owns. A concurrent
//!   peer write can only change which bytes are copied, never the control
//!   flow of our process: the copied-out bytes are read from the private copy.
//! * The kernel may write into a frame (`recv`, `read`): that is how zero-copy
//!   receive works.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

use crate::layout::{Geometry, Layout, Limits, RegionHeader, HEADER_WORDS};
use crate::RegionError;

#[cfg(not(target_endian = "little"))]
compile_error!("the exchange region layout is little-endian; this crate reads words natively");

/// A `MAP_SHARED` read-write mapping of a whole region; unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// Bytes covered by [`Mapping::words`]: the header and the rings only.
    /// Slot and frame bytes are never viewed as atomics, only through raw
    /// pointers, so the atomic view and a client's `&mut [u8]` over one of
    /// its frames never overlap.
    words_len: usize,
}

// SAFETY: `Mapping` is an address range owned by this value; nothing in it is
// tied to a thread. All access through it is via atomics or raw-pointer copies
// whose exclusivity is enforced by the callers (frame ownership tables).
unsafe impl Send for Mapping {}
// SAFETY: shared access only hands out `&[AtomicU32]` (thread-safe by
// construction) and raw pointers; see `Send` above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` shared and read-write.
    fn map(fd: BorrowedFd<'_>, len: usize) -> Result<Mapping, RegionError> {
        if len == 0 {
            return Err(RegionError::TooSmall { size: 0 });
        }
        // SAFETY: a fresh mapping at an address the kernel chooses (null hint,
        // no MAP_FIXED) cannot overlap any existing Rust object. `len` is the
        // size the caller verified against fstat and the seals, so every page
        // is backed by the file (no SIGBUS while the seal forbids shrinking).
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }
        .map_err(|e| RegionError::Io {
            op: "mmap",
            source: e.into(),
        })?;
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(RegionError::TooSmall { size: 0 })?;
        Ok(Mapping {
            ptr,
            len,
            words_len: len.min(crate::layout::HEADER_SIZE),
        })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: mappings are never empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Extends the atomic view to the header and rings (`layout.small_offset`).
    fn set_words_len(&mut self, layout: &Layout) {
        self.words_len = layout.small_offset.min(self.len) & !3;
    }

    /// The header and the rings (everything before the small slots) as
    /// atomic little-endian `u32` words.
    pub fn words(&self) -> &[AtomicU32] {
        // SAFETY: the mapping is `len` bytes, page-aligned (so 4-aligned), and
        // lives as long as `self`; `words_len <= len` is a multiple of 4, so
        // the view is in bounds. `AtomicU32` has the size and alignment of
        // `u32` and any bit pattern is valid. Within `words_len` (header and
        // rings) every access in this process is atomic; the peer's writes
        // come from outside the Rust abstract machine and are word-atomic on
        // every supported CPU. Slot and frame bytes lie beyond `words_len`
        // and are only touched through raw pointers.
        unsafe {
            std::slice::from_raw_parts(self.ptr.as_ptr().cast::<AtomicU32>(), self.words_len / 4)
        }
    }

    /// The word at byte offset `offset` (must be 4-aligned and before the
    /// small slots).
    pub fn word(&self, offset: usize) -> &AtomicU32 {
        debug_assert_eq!(offset % 4, 0);
        &self.words()[offset / 4]
    }

    /// Raw pointer to byte `offset`. Panics if `offset + len` is out of range.
    pub(crate) fn raw(&self, offset: usize, len: usize) -> *mut u8 {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "exchange: byte range {offset}+{len} outside a {} byte region",
            self.len
        );
        // SAFETY: `offset <= self.len` was just checked, so the result stays
        // inside (or one past the end of) the mapping.
        unsafe { self.ptr.as_ptr().add(offset) }
    }

    /// Copies `data` into the region at `offset` (bounds-checked).
    ///
    /// The destination may be concurrently written by the peer; the result is
    /// then whatever bytes the two writes leave, which harms only the peer.
    pub(crate) fn copy_in(&self, offset: usize, data: &[u8]) {
        let dst = self.raw(offset, data.len());
        // SAFETY: `dst..dst+len` is inside the mapping (checked by `raw`);
        // `data` is private memory of the caller so the ranges cannot overlap.
        // No reference to the destination exists in this process while we
        // write (the callers' ownership tables guarantee one writer).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) }
    }

    /// Copies bytes out of the region at `offset` into `out` (bounds-checked).
    ///
    /// The source may be concurrently written by the peer; `out` then holds
    /// some mix of old and new bytes, which the caller validates as a copy.
    pub(crate) fn copy_out(&self, offset: usize, out: &mut [u8]) {
        let src = self.raw(offset, out.len());
        // SAFETY: `src..src+len` is inside the mapping (checked by `raw`);
        // `out` is private memory of the caller so the ranges cannot overlap.
        // We read each source byte once and never look at the source again.
        unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len()) }
    }

    /// Copies the header out (one atomic load per word).
    pub(crate) fn read_header(&self) -> RegionHeader {
        let mut words = [0u32; HEADER_WORDS];
        for (w, a) in words.iter_mut().zip(self.words()) {
            // Relaxed: the header is validated as a private copy; no ordering
            // with any other location is needed (the client wrote it before
            // sending the fd, and sendmsg/recvmsg orders that).
            *w = a.load(std::sync::atomic::Ordering::Relaxed);
        }
        RegionHeader::from_words(&words)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what `mmap` returned; every view
        // handed out borrows `self` (or is a raw pointer the callers promised
        // not to use after the owning `Arc<Mapping>` is gone), so nothing can
        // touch the range after this.
        if let Err(e) = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) } {
            tracing::error!(error = %e, "exchange: munmap failed");
        }
    }
}

/// The memfd and its mapping, as the client created it.
#[derive(Debug)]
pub struct CreatedRegion {
    /// The memfd (send this to the server).
    pub fd: OwnedFd,
    /// The mapping.
    pub map: Mapping,
    /// The layout written into the header.
    pub layout: Layout,
}

/// Creates, sizes, seals and maps a region for `geometry` (client side) and
/// writes its header. `limits` are the server's (as advertised to the client);
/// `Limits::default()` is a reasonable guess.
pub fn create(geometry: Geometry, limits: &Limits) -> Result<CreatedRegion, RegionError> {
    let layout = Layout::new(geometry, limits)?;
    let io = |op: &'static str| {
        move |e: rustix::io::Errno| RegionError::Io {
            op,
            source: e.into(),
        }
    };
    let fd = rustix::fs::memfd_create(
        "netserver-exchange",
        MemfdFlags::ALLOW_SEALING | MemfdFlags::CLOEXEC,
    )
    .map_err(io("memfd_create"))?;
    rustix::fs::ftruncate(&fd, layout.region_size as u64).map_err(io("ftruncate"))?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
        .map_err(io("fcntl(F_ADD_SEALS)"))?;
    let mut map = Mapping::map(fd.as_fd(), layout.region_size)?;
    map.set_words_len(&layout);
    // A fresh memfd is zero-filled: every index and flag already starts at 0.
    for (a, w) in map.words().iter().zip(layout.header().to_words()) {
        // Relaxed: the server reads the header only after receiving the fd
        // over a socket, which orders this store before its loads.
        a.store(w, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(CreatedRegion { fd, map, layout })
}

/// Verifies a received memfd and maps it (server side).
///
/// Checks, in order: the fd supports seals (a memfd / shmem file) and carries
/// `F_SEAL_SHRINK` (so it can never shrink under the mapping and raise
/// `SIGBUS`), its size is within `limits`, and the header copied out of the
/// mapping describes a layout valid under `limits` whose `region_size` equals
/// the file size.
pub fn attach(fd: OwnedFd, limits: &Limits) -> Result<(OwnedFd, Mapping, Layout), RegionError> {
    let seals = rustix::fs::fcntl_get_seals(&fd)
        .map_err(|e| RegionError::NotSealable { source: e.into() })?;
    if !seals.contains(SealFlags::SHRINK) {
        return Err(RegionError::MissingSeals {
            found: seals.bits(),
        });
    }
    if seals.intersects(SealFlags::WRITE | SealFlags::FUTURE_WRITE) {
        return Err(RegionError::WriteSealed);
    }
    let stat = rustix::fs::fstat(&fd).map_err(|e| RegionError::Io {
        op: "fstat",
        source: e.into(),
    })?;
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    if size < crate::layout::HEADER_SIZE as u64 {
        return Err(RegionError::TooSmall { size });
    }
    if size > limits.max_region_bytes {
        return Err(RegionError::Geometry(
            crate::GeometryError::RegionTooLarge {
                size,
                max: limits.max_region_bytes,
            },
        ));
    }
    let mut map = Mapping::map(fd.as_fd(), size as usize)?;
    let header = map.read_header();
    let layout = Layout::from_header(&header, limits)?;
    if layout.region_size as u64 != size {
        return Err(RegionError::SizeMismatch {
            file: size,
            header: layout.region_size as u64,
        });
    }
    map.set_words_len(&layout);
    Ok((fd, map, layout))
}
