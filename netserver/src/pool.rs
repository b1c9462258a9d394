//! Preallocated server buffers, handed between threads through lock-free queues.
//!
//! Why this shape: the data path must never allocate or lock per packet
//! (STYLE rule 3), yet frames cross threads — the control plane writes
//! injected frames that the data path reads, the data path fills frames that
//! the control plane hands to clients. Every buffer is allocated once, at
//! start (or at filter install), and afterwards only its *ownership* moves:
//! a `Box<[u8]>` pushed on a [`crossbeam_queue::ArrayQueue`] is a pointer
//! move through a bounded, preallocated, lock-free ring. Whoever popped a
//! buffer is its only owner, which the type system checks for us, so the
//! pools need no `unsafe` and no per-frame lock. (Frames that clients share
//! memory with live in exchange regions and move by index; that is the
//! shared-memory layer's business, not this module's.)

use crossbeam_queue::ArrayQueue;

/// A fixed set of equally sized byte buffers.
#[derive(Debug)]
pub struct BufPool {
    free: ArrayQueue<Box<[u8]>>,
    buf_size: usize,
    count: usize,
}

impl BufPool {
    /// `count` buffers of `buf_size` bytes, allocated now.
    pub fn new(count: usize, buf_size: usize) -> BufPool {
        let free = ArrayQueue::new(count.max(1));
        for _ in 0..count {
            // Cannot fail: the queue has room for `count`.
            let _ = free.push(vec![0u8; buf_size].into_boxed_slice());
        }
        BufPool {
            free,
            buf_size,
            count,
        }
    }

    /// A free buffer, or `None` when all are in use.
    pub fn take(&self) -> Option<Box<[u8]>> {
        self.free.pop()
    }

    /// Returns a buffer taken from this pool.
    pub fn put(&self, buf: Box<[u8]>) {
        debug_assert_eq!(buf.len(), self.buf_size, "buffer from another pool");
        if self.free.push(buf).is_err() {
            // Only buffers taken from this pool come back, so there is room.
            tracing::error!("bug: buffer pool overfull; please report");
        }
    }

    /// Buffers not in use now.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Buffers in the pool.
    pub fn capacity(&self) -> usize {
        self.count
    }

    /// Bytes in each buffer.
    pub fn buf_size(&self) -> usize {
        self.buf_size
    }
}

/// A received frame in a server buffer.
#[derive(Debug)]
pub struct RxBuf {
    pub data: Box<[u8]>,
    /// Captured bytes in `data`.
    pub len: u32,
    pub wire_len: u32,
    pub ts_ns: u64,
}

impl RxBuf {
    /// The captured bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len as usize]
    }
}

/// The receive ring of backends that read into server frames (emulated,
/// pcap replay; later tap): producers fill free frames and publish them, the
/// data path consumes them and gives the frames back at once. The ring's
/// frames are the receiver's own, never lent to a client, so a slow client
/// can never stall the receiver.
#[derive(Debug)]
pub struct RxRing {
    free: BufPool,
    ready: ArrayQueue<RxBuf>,
}

/// Why a frame could not be put on the receive ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the receive ring is full")]
pub struct RingFull;

impl RxRing {
    /// A ring of `frames` frames of `frame_size` bytes.
    pub fn new(frames: usize, frame_size: usize) -> RxRing {
        RxRing {
            free: BufPool::new(frames, frame_size),
            ready: ArrayQueue::new(frames.max(1)),
        }
    }

    /// Producer: copies `bytes` (cut to the frame size) into a free frame and
    /// publishes it. `wire_len` 0 means `bytes.len()`. Returns how many bytes
    /// were kept.
    pub fn push(&self, bytes: &[u8], wire_len: u32, ts_ns: u64) -> Result<u32, RingFull> {
        let mut data = self.free.take().ok_or(RingFull)?;
        let len = bytes.len().min(data.len());
        data[..len].copy_from_slice(&bytes[..len]);
        let len = len as u32;
        // 0 means "as long as the bytes given"; never less than what was kept.
        let wire_len = if wire_len == 0 {
            u32::try_from(bytes.len()).unwrap_or(u32::MAX)
        } else {
            wire_len
        }
        .max(len);
        if let Err(rx) = self.ready.push(RxBuf {
            data,
            len,
            wire_len,
            ts_ns,
        }) {
            // `ready` holds as many entries as there are frames.
            self.free.put(rx.data);
            return Err(RingFull);
        }
        Ok(len)
    }

    /// Consumer: the oldest published frame.
    pub fn pop(&self) -> Option<RxBuf> {
        self.ready.pop()
    }

    /// Consumer: gives a consumed frame back to the producers.
    pub fn recycle(&self, rx: RxBuf) {
        self.free.put(rx.data);
    }

    /// Frames published and not yet consumed.
    pub fn pending(&self) -> usize {
        self.ready.len()
    }

    /// Free frames producers can fill now.
    pub fn free(&self) -> usize {
        self.free.available()
    }

    /// Bytes in each frame.
    pub fn frame_size(&self) -> usize {
        self.free.buf_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_hands_out_each_buffer_once() {
        let p = BufPool::new(3, 16);
        let a = p.take().unwrap();
        let b = p.take().unwrap();
        let c = p.take().unwrap();
        assert!(p.take().is_none());
        assert_eq!(p.available(), 0);
        p.put(a);
        p.put(b);
        p.put(c);
        assert_eq!(p.available(), 3);
        assert_eq!(p.capacity(), 3);
    }

    #[test]
    fn ring_truncates_to_frame_size_and_keeps_wire_len() {
        let r = RxRing::new(2, 8);
        assert_eq!(r.push(&[1; 20], 0, 5), Ok(8));
        let rx = r.pop().unwrap();
        assert_eq!(rx.len, 8);
        assert_eq!(rx.wire_len, 20);
        assert_eq!(rx.bytes(), &[1; 8]);
        r.recycle(rx);
    }

    #[test]
    fn ring_refuses_when_full_and_recovers() {
        let r = RxRing::new(2, 8);
        r.push(b"a", 1, 0).unwrap();
        r.push(b"b", 1, 0).unwrap();
        assert_eq!(r.push(b"c", 1, 0), Err(RingFull));
        let rx = r.pop().unwrap();
        assert_eq!(rx.bytes(), b"a");
        r.recycle(rx);
        r.push(b"c", 1, 0).unwrap();
        assert_eq!(r.pending(), 2);
    }

    #[test]
    fn ring_moves_frames_between_threads_in_order() {
        let r = std::sync::Arc::new(RxRing::new(64, 8));
        let p = r.clone();
        let producer = std::thread::spawn(move || {
            for i in 0u32..10_000 {
                while p.push(&i.to_be_bytes(), 4, 0).is_err() {
                    std::thread::yield_now();
                }
            }
        });
        let mut next = 0u32;
        while next < 10_000 {
            if let Some(rx) = r.pop() {
                assert_eq!(rx.bytes(), next.to_be_bytes());
                next += 1;
                r.recycle(rx);
            } else {
                std::thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(r.free(), 64);
    }
}
