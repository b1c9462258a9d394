//! Where the bytes go: a filter's frame space and the server's overflow pool.
//!
//! This module is the **one** place where emulated and shared mode differ
//! (STYLE rule 4). Everything above it — which frame a packet takes, the
//! queue, the overflow spill, the accounting, the ownership table, the
//! fetch state machine — is mode-independent and works on [`Page`]s and
//! small [`Staged`] buffers without knowing where their bytes live.
//!
//! - A filter's **frame space** is the client's numbering of its page frames
//!   (`0..frames`). In emulated mode each frame is backed by server memory
//!   ([`PageMem::Emulated`]) that moves with the ownership of its index and
//!   whose bytes travel in `Fetched.data`. In shared mode (the exchange
//!   region issue) a [`PageMem`] variant will name the frame inside the
//!   client's mapped region, [`Page::write`] will become the one write into
//!   the client's memory, [`FrameSpace::take_free`] will read the fill ring
//!   and [`FrameSpace::give_back`] will be what a `fetch`/fill entry does;
//!   callers do not change.
//! - A backend that can *peek* (look at the headers before the payload is
//!   written, or write straight into a destination) gets its payload written
//!   once into the [`Page`] the data path took for it; backends that read
//!   into server frames first (tap, pcap, emulated) are copied once. The
//!   `zero_copy` / `copied` counters record which path each large frame took.
//! - The server's own **overflow pool** ([`OverflowPool`]) holds frames of
//!   clients that fell behind: server memory, up to a global limit.

use crossbeam_queue::ArrayQueue;

use crate::pool::BufPool;

/// The memory behind one page frame of a client's frame space.
#[derive(Debug)]
#[non_exhaustive]
pub enum PageMem {
    /// Emulated mode: server memory standing in for the client's frame.
    Emulated(Box<[u8]>),
}

/// One page frame of a client's frame space, held by whoever holds this value.
#[derive(Debug)]
pub struct Page {
    /// The frame's number in the client's frame space.
    pub index: u32,
    mem: PageMem,
}

impl Page {
    /// Writes `bytes` (at most the frame size) at the start of the frame;
    /// returns how many were written.
    pub fn write(&mut self, bytes: &[u8]) -> usize {
        match &mut self.mem {
            PageMem::Emulated(m) => {
                let n = bytes.len().min(m.len());
                m[..n].copy_from_slice(&bytes[..n]);
                n
            }
        }
    }

    /// The first `len` bytes of the frame, when the server can show them to
    /// the client through the RPC (emulated mode); empty in shared mode.
    pub fn rpc_bytes(&self, len: usize) -> &[u8] {
        match &self.mem {
            PageMem::Emulated(m) => &m[..len.min(m.len())],
        }
    }
}

/// A small frame waiting for the client to name the slot it goes to.
#[derive(Debug)]
pub struct Staged {
    buf: Box<[u8]>,
}

impl Staged {
    /// The first `len` bytes.
    pub fn bytes(&self, len: usize) -> &[u8] {
        &self.buf[..len.min(self.buf.len())]
    }
}

/// A filter's frame space as the data path sees it: the page frames the
/// server holds free for this client, and staging for small frames.
#[derive(Debug)]
pub struct FrameSpace {
    free: ArrayQueue<Page>,
    small: BufPool,
    frames: u32,
    frame_size: usize,
}

impl FrameSpace {
    /// A frame space of `frames` frames of `frame_size` bytes and
    /// `small_staging` small buffers of `small_size` bytes. The server starts
    /// holding frames `0..frames/2` (free); the rest are returned for the
    /// client's ownership table.
    pub fn emulated(
        frames: u32,
        frame_size: usize,
        small_staging: usize,
        small_size: usize,
    ) -> (FrameSpace, Vec<Page>) {
        let free = ArrayQueue::new(frames.max(1) as usize);
        let mut client = Vec::with_capacity(frames as usize);
        for index in 0..frames {
            let page = Page {
                index,
                mem: PageMem::Emulated(vec![0u8; frame_size].into_boxed_slice()),
            };
            if index < frames / 2 {
                let _ = free.push(page);
            } else {
                client.push(page);
            }
        }
        let space = FrameSpace {
            free,
            small: BufPool::new(small_staging, small_size),
            frames,
            frame_size,
        };
        (space, client)
    }

    /// Data path: a free frame the server holds for this client.
    pub fn take_free(&self) -> Option<Page> {
        self.free.pop()
    }

    /// A frame becomes (again) free for the server to write into: given by
    /// the client in `fetch`, or freed when a queued frame was dropped.
    pub fn give_back(&self, page: Page) {
        if self.free.push(page).is_err() {
            tracing::error!("bug: more free frames than the frame space holds; please report");
        }
    }

    /// Data path: stages a small frame; `None` when all staging is in use.
    pub fn stage_small(&self, bytes: &[u8]) -> Option<Staged> {
        let mut buf = self.small.take()?;
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        Some(Staged { buf })
    }

    /// Releases staging after delivery or drop.
    pub fn unstage(&self, staged: Staged) {
        self.small.put(staged.buf);
    }

    /// Frames in the space.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Bytes in a frame.
    pub fn frame_size(&self) -> usize {
        self.frame_size
    }

    /// Free frames the server holds now.
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }
}

/// A frame in the server's overflow pool.
#[derive(Debug)]
pub struct Spilled {
    buf: Box<[u8]>,
    small: bool,
}

impl Spilled {
    /// The first `len` bytes.
    pub fn bytes(&self, len: usize) -> &[u8] {
        &self.buf[..len.min(self.buf.len())]
    }
}

/// The server's overflow pool: frames of clients that fell behind, in
/// server memory, at most `limit` frames in all.
#[derive(Debug)]
pub struct OverflowPool {
    pages: BufPool,
    small: BufPool,
    limit: usize,
}

impl OverflowPool {
    /// A pool of at most `limit` frames.
    pub fn new(limit: usize, frame_size: usize, small_size: usize) -> OverflowPool {
        OverflowPool {
            pages: BufPool::new(limit, frame_size),
            small: BufPool::new(limit, small_size),
            limit,
        }
    }

    /// Frames in the pool now.
    pub fn in_use(&self) -> usize {
        (self.limit - self.pages.available()) + (self.limit - self.small.available())
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Data path (the only taker): spills `bytes` into the pool, or `None`
    /// when the pool holds `limit` frames.
    pub fn spill(&self, bytes: &[u8], small: bool) -> Option<Spilled> {
        if self.in_use() >= self.limit {
            return None;
        }
        let pool = if small { &self.small } else { &self.pages };
        let mut buf = pool.take()?;
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        Some(Spilled { buf, small })
    }

    /// Frees a spilled frame.
    pub fn release(&self, s: Spilled) {
        if s.small {
            self.small.put(s.buf);
        } else {
            self.pages.put(s.buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_space_starts_with_half_the_frames_free() {
        let (space, client) = FrameSpace::emulated(8, 64, 4, 16);
        assert_eq!(space.free_frames(), 4);
        let idx: Vec<u32> = client.iter().map(|p| p.index).collect();
        assert_eq!(idx, [4, 5, 6, 7]);
        let mut p = space.take_free().unwrap();
        assert_eq!(p.index, 0);
        assert_eq!(p.write(&[9; 100]), 64);
        assert_eq!(p.rpc_bytes(3), [9, 9, 9]);
        space.give_back(p);
        assert_eq!(space.free_frames(), 4);
    }

    #[test]
    fn overflow_pool_enforces_one_global_limit() {
        let pool = OverflowPool::new(3, 64, 16);
        let a = pool.spill(b"small", true).unwrap();
        let b = pool.spill(&[1; 60], false).unwrap();
        let c = pool.spill(b"x", true).unwrap();
        assert!(pool.spill(b"y", true).is_none());
        assert!(pool.spill(&[1; 60], false).is_none());
        assert_eq!(pool.in_use(), 3);
        assert_eq!(a.bytes(5), b"small");
        pool.release(a);
        pool.release(b);
        pool.release(c);
        assert_eq!(pool.in_use(), 0);
    }
}
