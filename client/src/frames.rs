//! The client's side of a filter's frame space: who holds which page frame,
//! and where the bytes of a delivered frame live.
//!
//! A filter has `frames` page frames, numbered `0..frames`. The server starts
//! holding `0..frames/2`; the client owns the rest (the schema's
//! `FilterOptions.frames`). Every large delivery swaps one frame each way:
//! the page the client offered becomes the server's, the frame the packet
//! arrived in becomes the client's. The server keeps its own table and
//! refuses a page the client does not own; this table lets the library never
//! offer one, and catch a server that hands over a frame it did not hold.
//!
//! [`FrameTable`] is the bookkeeping, the same in every mode. [`Bytes`] is how
//! the bytes move, the one thing that differs between modes: in emulated mode
//! they travel in the RPC reply and are copied into the client's page buffers
//! here; in shared mode they are already in the client's mapped exchange
//! region (`crate::shared`), whose own token bookkeeping (`exchange::Frame`)
//! follows this table.

use std::collections::VecDeque;

use crate::error::{Error, Result};

/// Who holds one frame, as far as this client knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holder {
    Server,
    /// The client owns it and may offer it.
    Client {
        /// It holds a delivered packet the application has not released,
        /// or a frame it is writing to transmit.
        in_use: bool,
    },
    /// Posted for transmit: the server's until its completion comes back.
    Transmit,
}

/// How many frames each side holds, for diagnostics and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameCounts {
    /// Frames in the filter's frame space.
    pub total: u32,
    /// Frames the server holds.
    pub server: u32,
    /// Client frames holding a packet the application has not released.
    pub in_use: u32,
    /// Client frames free to offer in the next fetch.
    pub spare: u32,
    /// Frames posted for transmit whose completion has not come back.
    pub transmitting: u32,
}

/// Frame ownership as the client tracks it.
#[derive(Debug)]
pub(crate) struct FrameTable {
    holders: Vec<Holder>,
    /// Client-owned frames not in use, in the order they are offered.
    spare: VecDeque<u32>,
}

impl FrameTable {
    /// The initial split: the server holds the first half.
    pub(crate) fn new(frames: u32) -> Self {
        let server_half = frames / 2;
        let holders = (0..frames)
            .map(|i| {
                if i < server_half {
                    Holder::Server
                } else {
                    Holder::Client { in_use: false }
                }
            })
            .collect();
        FrameTable {
            holders,
            spare: (server_half..frames).collect(),
        }
    }

    pub(crate) fn total(&self) -> u32 {
        // The length came from a u32.
        self.holders.len() as u32
    }

    pub(crate) fn counts(&self) -> FrameCounts {
        let mut counts = FrameCounts {
            total: self.total(),
            server: 0,
            in_use: 0,
            spare: 0,
            transmitting: 0,
        };
        for holder in &self.holders {
            match holder {
                Holder::Server => counts.server += 1,
                Holder::Transmit => counts.transmitting += 1,
                Holder::Client { in_use: true } => counts.in_use += 1,
                Holder::Client { in_use: false } => counts.spare += 1,
            }
        }
        counts
    }

    /// The frames the server holds, by index.
    pub(crate) fn server_frames(&self) -> Vec<u32> {
        (0..self.total())
            .filter(|i| matches!(self.holder(*i), Some(Holder::Server)))
            .collect()
    }

    /// A frame the client owns and is not using, to offer next.
    pub(crate) fn spare(&self) -> Option<u32> {
        self.spare.front().copied()
    }

    /// Up to `n` spare frames, in offer order.
    pub(crate) fn spares(&self, n: usize) -> Vec<u32> {
        self.spare.iter().take(n).copied().collect()
    }

    /// Whether the client owns `frame`.
    pub(crate) fn owns(&self, frame: u32) -> bool {
        matches!(self.holder(frame), Some(Holder::Client { .. }))
    }

    fn holder(&self, frame: u32) -> Option<Holder> {
        self.holders.get(frame as usize).copied()
    }

    /// Checks that the client may offer `page` (it owns it; whether it is
    /// in use does not matter: giving back the page just read is Frantz's
    /// pattern).
    pub(crate) fn check_offer(&self, page: u32) -> Result<()> {
        match self.holder(page) {
            Some(Holder::Transmit) => Err(Error::InvalidArgument(format!(
                "page {page} is posted for transmit: offer it after its completion comes back"
            ))),
            None => Err(Error::InvalidArgument(format!(
                "page {page} is out of range: this filter has frames 0..{}",
                self.total()
            ))),
            Some(Holder::Server) => Err(Error::InvalidArgument(format!(
                "page {page} is not yours to offer: the server holds it \
                 (offer a page from Fetch::spare_page or one a fetch returned)"
            ))),
            Some(Holder::Client { .. }) => Ok(()),
        }
    }

    /// Records a large delivery: `given` went to the server, `received` came
    /// to the client holding a packet.
    pub(crate) fn exchange(&mut self, given: u32, received: u32) -> Result<()> {
        self.check_offer(given).map_err(|e| {
            Error::Protocol(format!("exchange of a page the client did not offer: {e}"))
        })?;
        if given != received && self.holder(received) != Some(Holder::Server) {
            return Err(Error::Protocol(format!(
                "the server delivered a packet in frame {received}, which it did not hold \
                 (frame space 0..{})",
                self.total()
            )));
        }
        self.spare.retain(|&f| f != given);
        self.holders[given as usize] = Holder::Server;
        self.holders[received as usize] = Holder::Client { in_use: true };
        Ok(())
    }

    /// Takes a spare frame for the application to write a frame into (in
    /// use until transmitted or released).
    pub(crate) fn take_for_tx(&mut self) -> Option<u32> {
        let frame = self.spare.pop_front()?;
        self.holders[frame as usize] = Holder::Client { in_use: true };
        Some(frame)
    }

    /// Checks that the application may write or transmit `frame`.
    pub(crate) fn check_tx(&self, frame: u32) -> Result<()> {
        match self.holder(frame) {
            Some(Holder::Client { .. }) => Ok(()),
            Some(Holder::Transmit) => Err(Error::InvalidArgument(format!(
                "frame {frame} is posted for transmit: it is not yours until its completion                  comes back (Fetch::completions)"
            ))),
            _ => self.check_offer(frame),
        }
    }

    /// `frame` was posted on the tx ring (or sent over RPC).
    pub(crate) fn transmitting(&mut self, frame: u32) {
        self.spare.retain(|&f| f != frame);
        self.holders[frame as usize] = Holder::Transmit;
    }

    /// `frame`'s transmit completed: it is the client's again, spare.
    pub(crate) fn transmitted(&mut self, frame: u32) -> Result<()> {
        if self.holder(frame) != Some(Holder::Transmit) {
            return Err(Error::Protocol(format!(
                "the server completed a transmit of frame {frame}, which was not posted"
            )));
        }
        self.holders[frame as usize] = Holder::Client { in_use: false };
        self.spare.push_back(frame);
        Ok(())
    }

    /// The application is done with `frame`: it becomes spare.
    pub(crate) fn release(&mut self, frame: u32) -> Result<()> {
        match self.holder(frame) {
            Some(Holder::Client { in_use: true }) => {
                self.holders[frame as usize] = Holder::Client { in_use: false };
                self.spare.push_back(frame);
                Ok(())
            }
            Some(Holder::Client { in_use: false }) => Err(Error::InvalidArgument(format!(
                "frame {frame} holds no packet: it was already released"
            ))),
            Some(Holder::Server) => Err(Error::InvalidArgument(format!(
                "frame {frame} is not yours: the server holds it (it was offered in a fetch)"
            ))),
            Some(Holder::Transmit) => Err(Error::InvalidArgument(format!(
                "frame {frame} is posted for transmit: it comes back through Fetch::completions"
            ))),
            None => Err(Error::InvalidArgument(format!(
                "frame {frame} is out of range: this filter has frames 0..{}",
                self.total()
            ))),
        }
    }
}

/// How the bytes of delivered frames reach the client.
#[derive(Debug)]
pub(crate) enum Bytes {
    /// Emulated mode: the bytes travel in the RPC reply and are copied into
    /// the client's own page buffers, one per frame (allocated on first use).
    Emulated {
        pages: Vec<Vec<u8>>,
        frame_size: Option<u32>,
    },
    /// Shared mode: the bytes are already in the client's exchange region;
    /// nothing is copied except small slots (into the caller's buffer) and
    /// what the caller asks to own.
    Shared(Box<crate::shared::SharedRegion>),
}

/// The size of an emulated page written for transmit when the server did
/// not say its frame size (a 1514-byte frame fits).
const DEFAULT_TX_FRAME: u32 = 2048;

const NOT_IN_SHARED: &str = "an emulated-mode reply arrived for a filter in shared mode";

impl Bytes {
    pub(crate) fn emulated(frames: u32, frame_size: Option<u32>) -> Self {
        Bytes::Emulated {
            pages: vec![Vec::new(); frames as usize],
            frame_size,
        }
    }

    /// Places a large frame's bytes (from the reply) into client frame
    /// `frame`; returns the captured length.
    pub(crate) fn store_large(&mut self, frame: u32, length: u32, reply: &[u8]) -> Result<usize> {
        match self {
            Bytes::Emulated { pages, frame_size } => {
                check_length(length, reply)?;
                if let Some(size) = *frame_size {
                    if reply.len() > size as usize {
                        return Err(Error::Protocol(format!(
                            "frame {frame} came back with {} bytes, more than the {size}-byte frame size",
                            reply.len()
                        )));
                    }
                }
                let page = pages.get_mut(frame as usize).ok_or_else(|| {
                    Error::Protocol(format!("frame {frame} is outside the frame space"))
                })?;
                page.clear();
                page.extend_from_slice(reply);
                Ok(reply.len())
            }
            Bytes::Shared(_) => Err(Error::Protocol(NOT_IN_SHARED.into())),
        }
    }

    /// The captured bytes of client frame `frame`, `len` long.
    pub(crate) fn large(&self, frame: u32, len: usize) -> &[u8] {
        match self {
            Bytes::Emulated { pages, .. } => pages
                .get(frame as usize)
                .map(|p| &p[..len.min(p.len())])
                .unwrap_or(&[]),
            Bytes::Shared(region) => region.frame(frame, len),
        }
    }

    /// The whole of client frame `frame`, writable (to build a frame to
    /// transmit). Emulated pages grow to the frame size on first use.
    pub(crate) fn frame_mut(&mut self, frame: u32) -> Result<&mut [u8]> {
        match self {
            Bytes::Emulated { pages, frame_size } => {
                let size = frame_size.unwrap_or(DEFAULT_TX_FRAME) as usize;
                let page = pages.get_mut(frame as usize).ok_or_else(|| {
                    Error::InvalidArgument(format!("frame {frame} is outside the frame space"))
                })?;
                page.resize(size, 0);
                Ok(&mut page[..])
            }
            Bytes::Shared(region) => region.frame_mut(frame),
        }
    }

    /// Copies a small frame (delivered into `slot`) into `out`; returns its
    /// length.
    pub(crate) fn read_small(
        &self,
        _slot: u32,
        length: u32,
        reply: &[u8],
        out: &mut [u8],
    ) -> Result<usize> {
        match self {
            Bytes::Emulated { .. } => {
                check_length(length, reply)?;
                let capacity = out.len();
                let dst = out.get_mut(..reply.len()).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "the small buffer holds {capacity} bytes but the packet has {}: \
                         pass a buffer of at least the server's small threshold",
                        reply.len()
                    ))
                })?;
                dst.copy_from_slice(reply);
                Ok(reply.len())
            }
            Bytes::Shared(_) => Err(Error::Protocol(NOT_IN_SHARED.into())),
        }
    }
}

fn check_length(length: u32, reply: &[u8]) -> Result<()> {
    if reply.len() != length as usize {
        return Err(Error::Protocol(format!(
            "the reply announces {length} bytes but carries {}",
            reply.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_split_gives_the_client_the_upper_half() {
        let t = FrameTable::new(8);
        assert_eq!(
            t.counts(),
            FrameCounts {
                total: 8,
                server: 4,
                in_use: 0,
                spare: 4,
                transmitting: 0,
            }
        );
        assert_eq!(t.spare(), Some(4));
        assert_eq!(t.spares(10), vec![4, 5, 6, 7]);
        assert!(!t.owns(3));
        assert!(t.owns(4));
        assert!(t.check_offer(7).is_ok());
    }

    #[test]
    fn odd_frame_counts_round_the_server_half_down() {
        let t = FrameTable::new(5);
        assert_eq!(t.counts().server, 2);
        assert_eq!(t.spares(10), vec![2, 3, 4]);
    }

    #[test]
    fn offering_a_server_page_or_out_of_range_is_refused_locally() {
        let t = FrameTable::new(8);
        let e = t.check_offer(0).unwrap_err();
        assert!(e.to_string().contains("server holds it"), "{e}");
        let e = t.check_offer(8).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
    }

    #[test]
    fn exchange_swaps_one_frame_each_way() {
        let mut t = FrameTable::new(8);
        t.exchange(4, 0).unwrap();
        assert!(!t.owns(4));
        assert!(t.owns(0));
        assert_eq!(
            t.counts(),
            FrameCounts {
                total: 8,
                server: 4,
                in_use: 1,
                spare: 3,
                transmitting: 0,
            }
        );
        // The frame just received is in use, not spare.
        assert_eq!(t.spares(10), vec![5, 6, 7]);
        // Released, it goes to the back of the offer queue.
        t.release(0).unwrap();
        assert_eq!(t.spares(10), vec![5, 6, 7, 0]);
        assert!(t.release(0).is_err(), "double release");
        assert!(t.release(4).is_err(), "release of a server frame");
    }

    #[test]
    fn giving_back_the_page_just_read_is_allowed() {
        let mut t = FrameTable::new(4);
        t.exchange(2, 0).unwrap();
        // Frame 0 is in use; offer it directly (Frantz's pattern).
        t.check_offer(0).unwrap();
        t.exchange(0, 1).unwrap();
        assert!(t.owns(1) && !t.owns(0));
        assert_eq!(t.counts().server, 2);
    }

    #[test]
    fn the_server_may_hand_back_the_very_page_it_was_given() {
        // The server may put the packet straight into the offered page.
        let mut t = FrameTable::new(4);
        t.exchange(3, 3).unwrap();
        assert!(t.owns(3));
        assert_eq!(t.counts().in_use, 1);
        assert_eq!(t.counts().server, 2);
    }

    #[test]
    fn a_frame_the_server_did_not_hold_is_a_protocol_violation() {
        let mut t = FrameTable::new(8);
        let e = t.exchange(4, 5).unwrap_err();
        assert!(matches!(e, Error::Protocol(_)), "{e:?}");
        let e = t.exchange(4, 99).unwrap_err();
        assert!(matches!(e, Error::Protocol(_)), "{e:?}");
        // Nothing changed on failure.
        assert_eq!(t.counts().spare, 4);
    }

    #[test]
    fn ownership_is_conserved_over_many_exchanges() {
        let mut t = FrameTable::new(16);
        let mut server: Vec<u32> = (0..8).collect();
        for round in 0..100u32 {
            let give = t.spare().unwrap();
            let take = server.remove((round as usize * 7) % server.len());
            t.exchange(give, take).unwrap();
            server.push(give);
            t.release(take).unwrap();
            let c = t.counts();
            assert_eq!(c.server, 8);
            assert_eq!(c.spare + c.in_use, 8);
        }
    }

    #[test]
    fn emulated_bytes_copy_the_reply_into_the_frame() {
        let mut b = Bytes::emulated(4, Some(16));
        assert_eq!(b.store_large(1, 3, b"abc").unwrap(), 3);
        assert_eq!(b.large(1, 3), b"abc");
        assert!(matches!(
            b.store_large(1, 4, b"abc"),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            b.store_large(1, 17, &[0; 17]),
            Err(Error::Protocol(_))
        ));
        let mut out = [0u8; 2];
        assert!(matches!(
            b.read_small(0, 3, b"xyz", &mut out),
            Err(Error::InvalidArgument(_))
        ));
        let mut out = [0u8; 8];
        assert_eq!(b.read_small(0, 3, b"xyz", &mut out).unwrap(), 3);
        assert_eq!(&out[..3], b"xyz");
    }

    #[test]
    fn a_transmitted_frame_is_not_the_clients_until_it_completes() {
        let mut t = FrameTable::new(4);
        let f = t.take_for_tx().unwrap();
        assert_eq!(f, 2);
        assert!(t.check_tx(f).is_ok());
        t.transmitting(f);
        assert_eq!(t.counts().transmitting, 1);
        assert!(t.check_tx(f).is_err());
        assert!(t.check_offer(f).is_err());
        assert!(t.release(f).is_err());
        assert!(t.transmitted(3).is_err(), "3 was never posted");
        t.transmitted(f).unwrap();
        assert!(t.transmitted(f).is_err(), "completed twice");
        assert_eq!(t.counts().spare, 2);
        assert_eq!(t.spares(2), vec![3, 2]);
    }
}
