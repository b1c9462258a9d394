//! Transmit from the client's own pages, fbufs-style.
//!
//! A bound application ([`crate::Client::bind`]) writes a frame into one of
//! the pages of its [`Fetch`] and posts it:
//!
//! ```text
//! let page = fetch.tx_page().expect("a spare page");        // the client's
//! let n = build_frame(fetch.frame_mut(page)?);              // write it in place
//! fetch.transmit(&binding, page, n).await?;                 // posted: not yours now
//! fetch.completions(|done| assert_eq!(done.status, TxStatus::Sent))?;  // yours again
//! ```
//!
//! **From `transmit` until the page comes back in [`Fetch::completions`] it
//! is not the client's to touch**: the library refuses to write, offer or
//! release it meanwhile. A header page and a payload page may be posted as
//! one frame ([`Fetch::transmit_parts`], scatter-gather). The server checks
//! the frame's source MAC, IPv4 address and port against the binding;
//! a spoofed frame is refused with the reason ([`TxStatus::Refused`]),
//! counted in `Operator.hostStats`, and never leaves the interface. Either
//! way the page comes back.
//!
//! How the bytes move is the one difference between modes (the accounting
//! and the API are the same): in **shared mode** the descriptor goes on the
//! region's tx ring with no system call unless the server sleeps, and the
//! server sends from a copy of the client's page; in **emulated mode** the
//! page's bytes travel in `Binding.send` / `Binding.sendParts` and the
//! completion is recorded when the RPC answers.

use std::time::Duration;

use exchange::layout::{split_tx_status, TX_STATUS_FAILED, TX_STATUS_REFUSED, TX_STATUS_SENT};

use crate::bind::Binding;
use crate::error::{Error, Result};
use crate::fetch::Fetch;
use crate::frames::Bytes;

/// The server's refusal reasons, by code − 1 (the names of
/// `HostStats.txRefused`).
pub const TX_REFUSAL_REASONS: [&str; 8] = [
    "malformed",
    "too_long",
    "wrong_source_mac",
    "wrong_source_ip",
    "wrong_protocol",
    "wrong_source_port",
    "fragment",
    "not_bound",
];

/// How long a transmit waits for room on a full tx ring.
const RING_FULL_WAIT: Duration = Duration::from_secs(1);

/// How a transmit ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxStatus {
    /// The frame left the interface.
    Sent,
    /// The server refused it (a [`TX_REFUSAL_REASONS`] name, or `unknown`);
    /// it never left.
    Refused { reason: &'static str },
    /// The server's backend failed to send it.
    Failed,
}

impl TxStatus {
    fn from_word(status: u32) -> TxStatus {
        match split_tx_status(status) {
            (TX_STATUS_SENT, _) => TxStatus::Sent,
            (TX_STATUS_REFUSED, code) => TxStatus::Refused {
                reason: reason_name(code),
            },
            (TX_STATUS_FAILED, _) => TxStatus::Failed,
            _ => TxStatus::Failed,
        }
    }
}

fn reason_name(code: u16) -> &'static str {
    usize::from(code)
        .checked_sub(1)
        .and_then(|i| TX_REFUSAL_REASONS.get(i))
        .copied()
        .unwrap_or("unknown")
}

/// The reason of an emulated-mode refusal, from the server's message
/// (`frame refused (wrong_source_mac): …`).
fn reason_in(message: &str) -> Option<&'static str> {
    let rest = message.split("frame refused (").nth(1)?;
    let name = rest.split(')').next()?;
    Some(
        TX_REFUSAL_REASONS
            .iter()
            .find(|r| **r == name)
            .copied()
            .unwrap_or("unknown"),
    )
}

/// A finished transmit: its pages are the client's again (spare).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxDone {
    /// The (first) page.
    pub frame: u32,
    /// The payload page of a [`Fetch::transmit_parts`].
    pub frame2: Option<u32>,
    pub status: TxStatus,
    /// Bytes sent (0 unless sent).
    pub len: u32,
}

impl Fetch {
    /// A page the client owns to write a frame into (see
    /// [`frame_mut`](Self::frame_mut)); it is in use until transmitted or
    /// [`release`](Self::release)d. `None` when every client page is in use
    /// or posted (take [`completions`](Self::completions) first).
    pub fn tx_page(&mut self) -> Option<u32> {
        self.table.take_for_tx()
    }

    /// The whole of page `frame` (one the client owns), writable: build a
    /// frame in it from offset 0, then [`transmit`](Self::transmit) it.
    pub fn frame_mut(&mut self, frame: u32) -> Result<&mut [u8]> {
        self.table.check_tx(frame)?;
        self.bytes.frame_mut(frame)
    }

    fn check_binding(&self, binding: &Binding) -> Result<()> {
        if binding.info().tag != self.tag {
            return Err(Error::InvalidArgument(format!(
                "the binding's filter is {:#018x} but this fetch is {:#018x}: transmit through \
                 the Fetch that bind returned with the binding",
                binding.info().tag,
                self.tag
            )));
        }
        Ok(())
    }

    fn check_segment(&mut self, frame: u32, len: usize) -> Result<()> {
        let capacity = self.frame_mut(frame)?.len();
        if len == 0 || len > capacity {
            return Err(Error::InvalidArgument(format!(
                "{len} bytes of frame {frame}: send 1 to {capacity} bytes (the frame size)"
            )));
        }
        Ok(())
    }

    /// Posts the first `len` bytes of page `frame` for transmit from
    /// `binding` (which `bind` returned with this `Fetch`). The page is the
    /// server's until its [`TxDone`] comes back from
    /// [`completions`](Self::completions), with the verdict. An error here
    /// means nothing was posted and the page is still the client's.
    pub async fn transmit(&mut self, binding: &Binding, frame: u32, len: usize) -> Result<()> {
        self.post(binding, (frame, len), None).await
    }

    /// Posts `header_len` bytes of page `header` then `payload_len` bytes of
    /// page `payload` as one frame (scatter-gather); both pages come back
    /// in one [`TxDone`].
    pub async fn transmit_parts(
        &mut self,
        binding: &Binding,
        header: u32,
        header_len: usize,
        payload: u32,
        payload_len: usize,
    ) -> Result<()> {
        if header == payload {
            return Err(Error::InvalidArgument(format!(
                "header and payload are both in page {header}: use two pages, or transmit"
            )));
        }
        self.post(binding, (header, header_len), Some((payload, payload_len)))
            .await
    }

    async fn post(
        &mut self,
        binding: &Binding,
        first: (u32, usize),
        second: Option<(u32, usize)>,
    ) -> Result<()> {
        self.check_binding(binding)?;
        self.check_segment(first.0, first.1)?;
        if let Some((f, l)) = second {
            self.check_segment(f, l)?;
        }
        match &mut self.bytes {
            Bytes::Shared(sr) => {
                let deadline = tokio::time::Instant::now() + RING_FULL_WAIT;
                while !sr.post_tx(first, second)? {
                    // Full: the server still holds completions' worth of
                    // pages. Keep what came back for `completions`.
                    let mut done = Vec::new();
                    sr.completions(|f, f2, status, len| done.push((f, f2, status, len)))?;
                    for (f, f2, status, len) in done {
                        self.table.transmitted(f)?;
                        if let Some(f2) = f2 {
                            self.table.transmitted(f2)?;
                        }
                        self.tx_done.push_back(TxDone {
                            frame: f,
                            frame2: f2,
                            status: TxStatus::from_word(status),
                            len,
                        });
                    }
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() {
                        return Err(Error::Shared(
                            "the tx ring stayed full for a second: the server is not taking \
                             transmits (is the data path running?)"
                                .into(),
                        ));
                    }
                    sr.wait_completion(left.min(Duration::from_millis(50)))
                        .await?;
                }
            }
            Bytes::Emulated { .. } => {
                let header = self.bytes.large(first.0, first.1);
                let sent = match second {
                    None => binding.send(header).await,
                    Some((f2, l2)) => binding.send_parts(header, self.bytes.large(f2, l2)).await,
                };
                let len = first.1 + second.map_or(0, |s| s.1);
                let status = match sent {
                    Ok(()) => TxStatus::Sent,
                    Err(Error::Refused { message }) => match reason_in(&message) {
                        Some(reason) => TxStatus::Refused { reason },
                        None => TxStatus::Failed,
                    },
                    // The connection is gone: nothing was posted.
                    Err(e) => return Err(e),
                };
                self.tx_done.push_back(TxDone {
                    frame: first.0,
                    frame2: second.map(|s| s.0),
                    status,
                    len: if status == TxStatus::Sent {
                        u32::try_from(len).unwrap_or(u32::MAX)
                    } else {
                        0
                    },
                });
            }
        }
        self.table.transmitting(first.0);
        if let Some((f2, _)) = second {
            self.table.transmitting(f2);
        }
        Ok(())
    }

    /// Takes the finished transmits, oldest first, calling `f` with each:
    /// its pages are the client's again (spare: [`tx_page`](Self::tx_page)
    /// offers them next). No system call. Returns how many.
    pub fn completions(&mut self, mut f: impl FnMut(TxDone)) -> Result<usize> {
        let mut n = 0;
        if let Bytes::Shared(sr) = &mut self.bytes {
            let (table, queue) = (&mut self.table, &mut self.tx_done);
            let mut bad = None;
            sr.completions(|frame, frame2, status, len| {
                for page in std::iter::once(frame).chain(frame2) {
                    if let Err(e) = table.transmitted(page) {
                        bad.get_or_insert(e);
                    }
                }
                queue.push_back(TxDone {
                    frame,
                    frame2,
                    status: TxStatus::from_word(status),
                    len,
                });
            })?;
            if let Some(e) = bad {
                return Err(e);
            }
        }
        while let Some(done) = self.tx_done.pop_front() {
            if !self.is_shared() {
                self.table.transmitted(done.frame)?;
                if let Some(f2) = done.frame2 {
                    self.table.transmitted(f2)?;
                }
            }
            f(done);
            n += 1;
        }
        Ok(n)
    }

    /// Waits up to `timeout` until a transmit finished (shared mode: asleep
    /// on the region's eventfd). Returns whether one is ready.
    pub async fn wait_completions(&mut self, timeout: Duration) -> Result<bool> {
        if !self.tx_done.is_empty() {
            return Ok(true);
        }
        match &mut self.bytes {
            Bytes::Shared(sr) => sr.wait_completion(timeout).await,
            // Emulated: every transmit completed when its RPC answered.
            Bytes::Emulated { .. } => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exchange::layout::tx_status;

    #[test]
    fn status_words_and_reason_names() {
        assert_eq!(TxStatus::from_word(0), TxStatus::Sent);
        assert_eq!(
            TxStatus::from_word(tx_status(TX_STATUS_REFUSED, 3)),
            TxStatus::Refused {
                reason: "wrong_source_mac"
            }
        );
        assert_eq!(
            TxStatus::from_word(tx_status(TX_STATUS_REFUSED, 0)),
            TxStatus::Refused { reason: "unknown" }
        );
        assert_eq!(TxStatus::from_word(TX_STATUS_FAILED), TxStatus::Failed);
        assert_eq!(
            reason_in("frame refused (wrong_source_port): source port is not the bound port"),
            Some("wrong_source_port")
        );
        assert_eq!(reason_in("the data path is stopping"), None);
    }
}
