//! Shared mode on the client side: the exchange region behind [`crate::Fetch`].
//!
//! The client creates a sealed `memfd` region (it pays for the storage),
//! asks the server for a one-time token with `Fetch.attachRegion`, connects
//! to the side socket the server named, sends the token with the memfd and
//! two eventfds, and reads the server's one-line answer. It then posts the
//! frames the server holds at the start (the lower half, as in emulated
//! mode) on the fill ring. From then on a packet is taken off the rx ring
//! with no system call when one is waiting; an idle client sleeps on the
//! server→client eventfd through tokio (`AsyncFd`), so the RPC connection on
//! the same thread keeps running.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use exchange::{ClientRegion, Frame, Geometry};
use tokio::io::unix::AsyncFd;

use crate::error::{Error, Result};

/// Ring entries the library asks for when the queue limit is unknown.
pub(crate) const RING_ENTRIES: u32 = 256;

/// How long the library waits for the server's answer on the side socket.
const ANSWER_DEADLINE: Duration = Duration::from_secs(10);

/// The client's region, the tokens of the frames it owns, and the doorbell.
pub(crate) struct SharedRegion {
    pub(crate) region: ClientRegion,
    /// `Some` for every frame the client owns now (by index).
    pub(crate) tokens: Vec<Option<Frame>>,
    /// Where the last packet delivered in each frame starts.
    pub(crate) offsets: Vec<usize>,
    /// Reused for posting pages on the fill ring (no allocation per packet).
    pub(crate) give: Vec<Frame>,
    doorbell: AsyncFd<OwnedFd>,
}

impl std::fmt::Debug for SharedRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRegion")
            .field("geometry", &self.region.layout().geometry)
            .finish_non_exhaustive()
    }
}

fn shared(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Shared(format!("{what}: {e}"))
}

/// Registers the doorbell with tokio's reactor. tokio 1.54 deprecates the
/// safe constructor because some `AsRawFd` types may change or close their
/// descriptor while registered; an `OwnedFd` owned by the `AsyncFd` cannot
/// (it closes only on drop, after deregistration), which is exactly the
/// condition the unsafe `register` asks callers to promise.
#[allow(deprecated)]
fn watch(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    AsyncFd::new(fd)
}

/// What `attachRegion` answered.
pub(crate) struct Grant {
    pub(crate) token: Vec<u8>,
    pub(crate) side_path: String,
    pub(crate) frame_size: u32,
    pub(crate) small_slot_size: u32,
    pub(crate) ring_entries: u32,
    pub(crate) small_slots: u32,
    pub(crate) frames: u32,
}

impl SharedRegion {
    /// Creates the region, passes it on the side socket and posts the frames
    /// the server holds (`server_frames`) on the fill ring.
    pub(crate) async fn attach(grant: Grant, server_frames: &[u32]) -> Result<SharedRegion> {
        let geometry = Geometry {
            rx_entries: grant.ring_entries,
            fill_entries: grant.ring_entries.max(grant.frames.next_power_of_two()),
            tx_entries: grant.ring_entries,
            completion_entries: grant.ring_entries,
            small_slot_count: grant.small_slots,
            small_slot_size: grant.small_slot_size,
            frame_count: grant.frames,
            frame_size: grant.frame_size,
        };
        let (mut region, frames) =
            ClientRegion::create(geometry).map_err(|e| shared("cannot create the region", e))?;
        let side = std::os::unix::net::UnixStream::connect(&grant.side_path).map_err(|e| {
            shared(
                &format!(
                    "cannot connect to the side socket {} (is the server on this host?)",
                    grant.side_path
                ),
                e,
            )
        })?;
        region
            .send_to(side.as_fd(), &grant.token)
            .map_err(|e| shared("cannot pass the region to the server", e))?;
        side.set_nonblocking(true)
            .map_err(|e| shared("side socket", e))?;
        let mut side =
            tokio::net::UnixStream::from_std(side).map_err(|e| shared("side socket", e))?;
        let mut answer = Vec::new();
        let read = async {
            use tokio::io::AsyncReadExt;
            side.read_to_end(&mut answer).await
        };
        tokio::time::timeout(ANSWER_DEADLINE, read)
            .await
            .map_err(|_| Error::Shared("the server did not answer on the side socket".into()))?
            .map_err(|e| shared("reading the server's answer", e))?;
        let answer = String::from_utf8_lossy(&answer).trim().to_string();
        if answer != "ok" {
            let why = answer
                .strip_prefix("error: ")
                .unwrap_or(&answer)
                .to_string();
            return Err(Error::Refused { message: why });
        }
        let doorbell = region
            .wait_fd()
            .try_clone_to_owned()
            .and_then(watch)
            .map_err(|e| shared("cannot watch the doorbell", e))?;
        let mut tokens: Vec<Option<Frame>> = frames.into_iter().map(Some).collect();
        let mut give: Vec<Frame> = server_frames
            .iter()
            .filter_map(|i| tokens.get_mut(*i as usize).and_then(Option::take))
            .collect();
        let server_start = give.len();
        let posted = region
            .fill(&mut give)
            .map_err(|e| Error::Protocol(e.to_string()))?;
        if !give.is_empty() {
            return Err(Error::Shared(format!(
                "only {posted} of {server_start} frames fit the fill ring"
            )));
        }
        Ok(SharedRegion {
            region,
            offsets: vec![0; tokens.len()],
            tokens,
            give,
            doorbell,
        })
    }

    /// Gives frame `page` (owned) to the server on the fill ring.
    pub(crate) fn give(&mut self, page: u32) -> Result<()> {
        let token = self
            .tokens
            .get_mut(page as usize)
            .and_then(Option::take)
            .ok_or_else(|| Error::Protocol(format!("no token for client frame {page}")))?;
        self.give_token(token)
    }

    /// Posts a frame token on the fill ring.
    pub(crate) fn give_token(&mut self, token: Frame) -> Result<()> {
        self.give.push(token);
        self.region
            .fill(&mut self.give)
            .map_err(|e| Error::Protocol(e.to_string()))?;
        if let Some(t) = self.give.pop() {
            // The fill ring holds every frame the server may hold: a full
            // ring here is a bookkeeping bug.
            self.give.push(t);
            return Err(Error::Protocol("the fill ring is full".into()));
        }
        Ok(())
    }

    /// The bytes of client frame `frame` from `offset`, `len` long.
    pub(crate) fn frame(&self, frame: u32, len: usize) -> &[u8] {
        match self.tokens.get(frame as usize).and_then(Option::as_ref) {
            Some(t) => {
                let off = self.offsets[frame as usize];
                let b = self.region.frame(t);
                &b[off.min(b.len())..(off + len).min(b.len())]
            }
            None => &[],
        }
    }

    /// The whole of client frame `frame` (owned), writable.
    pub(crate) fn frame_mut(&mut self, frame: u32) -> Result<&mut [u8]> {
        let region = &self.region;
        match self.tokens.get_mut(frame as usize).and_then(Option::as_mut) {
            Some(t) => Ok(region.frame_mut(t)),
            None => Err(Error::Protocol(format!(
                "no token for client frame {frame}"
            ))),
        }
    }

    /// Posts `first` (and `second`) — `(frame, len)` from offset 0 — on the
    /// tx ring. `Ok(false)`: the ring is full (nothing was posted).
    pub(crate) fn post_tx(
        &mut self,
        first: (u32, usize),
        second: Option<(u32, usize)>,
    ) -> Result<bool> {
        let mut take = |frame: u32| {
            self.tokens
                .get_mut(frame as usize)
                .and_then(Option::take)
                .ok_or_else(|| Error::Protocol(format!("no token for client frame {frame}")))
        };
        let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let second_index = second.map(|s| s.0 as usize);
        let frame = take(first.0)?;
        let second = match second {
            Some((f2, l2)) => match take(f2) {
                Ok(t) => Some((t, 0, len(l2))),
                Err(e) => {
                    self.tokens[first.0 as usize] = Some(frame);
                    return Err(e);
                }
            },
            None => None,
        };
        let req = exchange::TxRequest {
            frame,
            offset: 0,
            len: len(first.1),
            second,
        };
        match self
            .region
            .transmit(req)
            .map_err(|e| Error::Protocol(e.to_string()))?
        {
            Ok(()) => Ok(true),
            Err(req) => {
                self.tokens[first.0 as usize] = Some(req.frame);
                if let (Some(i2), Some((t, _, _))) = (second_index, req.second) {
                    self.tokens[i2] = Some(t);
                }
                Ok(false)
            }
        }
    }

    /// Takes finished transmits: each frame's token comes back.
    pub(crate) fn completions(
        &mut self,
        mut f: impl FnMut(u32, Option<u32>, u32, u32),
    ) -> Result<usize> {
        let tokens = &mut self.tokens;
        self.region
            .completions(|c| {
                let (i, i2) = (c.frame.index(), c.frame2.as_ref().map(|t| t.index()));
                f(i, i2, c.status, c.len);
                if let Some(slot) = tokens.get_mut(i as usize) {
                    *slot = Some(c.frame);
                }
                if let (Some(i2), Some(t)) = (i2, c.frame2) {
                    if let Some(slot) = tokens.get_mut(i2 as usize) {
                        *slot = Some(t);
                    }
                }
            })
            .map_err(|e| Error::Protocol(e.to_string()))
    }

    /// Sleeps until completions may be ready or `timeout` passes, without
    /// blocking the thread. Returns whether completions are ready.
    pub(crate) async fn wait_completion(&mut self, timeout: Duration) -> Result<bool> {
        let armed = self
            .region
            .prepare_wait_completion()
            .map_err(|e| Error::Protocol(e.to_string()))?;
        if !armed {
            return Ok(true);
        }
        if let Ok(Ok(mut guard)) = tokio::time::timeout(timeout, self.doorbell.readable()).await {
            guard.clear_ready();
        }
        self.region
            .finish_wait_completion()
            .map_err(|e| Error::Protocol(e.to_string()))
    }

    /// Sleeps until rx entries may be ready or `timeout` passes, without
    /// blocking the thread. Returns whether entries are ready.
    pub(crate) async fn wait(&mut self, timeout: Duration) -> Result<bool> {
        let armed = self
            .region
            .prepare_wait_rx()
            .map_err(|e| Error::Protocol(e.to_string()))?;
        if !armed {
            return Ok(true);
        }
        if let Ok(Ok(mut guard)) = tokio::time::timeout(timeout, self.doorbell.readable()).await {
            guard.clear_ready();
        }
        self.region
            .finish_wait_rx()
            .map_err(|e| Error::Protocol(e.to_string()))
    }
}
