//! The fetch capability on the client side: Frantz's `fetch`, its batch
//! form, and a stream of owned packets.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::Stream;

use netserver_schema::{fetch, fetched};

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::frames::{Bytes, FrameCounts, FrameTable};
use crate::shared::{Grant, SharedRegion, RING_ENTRIES};
use crate::stats::FilterStats;

/// Longest single sleep on the doorbell before the library checks that the
/// capability still works (a revoked region is never rung again).
const LIVENESS: Duration = Duration::from_secs(1);

fn region_error(e: exchange::ClientError) -> Error {
    Error::Protocol(e.to_string())
}

fn meta_rx(info: &exchange::RxInfo) -> Meta {
    Meta {
        wire_len: info.wire_len,
        timestamp_ns: info.timestamp_ns,
    }
}

/// The sizes a filter was installed with (zeros resolved against the
/// server's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Page frames in the filter's frame space.
    pub frames: u32,
    /// Small slots.
    pub small_slots: u32,
    /// Frames of at most this many bytes are delivered small.
    pub small_threshold: u32,
    /// Bytes in a page frame.
    pub frame_size: u32,
}

/// When and how long a fetched frame was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Length on the wire (≥ the captured length when the capture was cut).
    pub wire_len: u32,
    /// When the server received it, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
}

/// What one [`Fetch::fetch`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// A small frame, copied into the caller's small buffer: `len` bytes.
    Small { len: usize, meta: Meta },
    /// A large frame, now in client frame `frame` (read it with
    /// [`Fetch::frame`]); the offered page went to the server.
    Large { frame: u32, len: usize, meta: Meta },
    /// Nothing was waiting; the offered page is still the client's.
    Empty,
}

/// How a packet reached the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Copied into a small slot.
    Small,
    /// Exchanged in a page frame.
    Large,
}

impl std::fmt::Display for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Delivery::Small => "small",
            Delivery::Large => "large",
        })
    }
}

/// A received packet, owned by the caller (its bytes were copied out of the
/// slot or frame, which went back to the library).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Tag of the filter that received it.
    pub tag: u64,
    pub timestamp_ns: u64,
    pub wire_len: u32,
    pub delivery: Delivery,
    /// The captured bytes.
    pub data: Vec<u8>,
}

impl Packet {
    /// The receive time.
    pub fn timestamp(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.timestamp_ns)
    }

    /// A tcpdump-like one-line summary: time, wire length, small/large and
    /// a decode of the headers.
    pub fn one_line(&self) -> String {
        crate::decode::one_line(self.timestamp_ns, self.wire_len, self.delivery, &self.data)
    }
}

/// A fetch capability: one installed filter, its tag, and the client's side
/// of its frame space.
///
/// The filter lives as long as this value: dropping it (or [`Fetch::close`],
/// or the connection closing) removes it on the server and frees every frame
/// and slot it held.
pub struct Fetch {
    conn: Rc<Connection>,
    cap: fetch::Client,
    pub(crate) tag: u64,
    geometry: Geometry,
    pub(crate) table: FrameTable,
    lens: Vec<u32>,
    pub(crate) bytes: Bytes,
    /// Finished transmits not yet taken by [`Fetch::completions`].
    pub(crate) tx_done: VecDeque<crate::transmit::TxDone>,
    next_slot: u32,
    /// Entries of each ring of a shared-mode region.
    ring_entries: u32,
}

impl std::fmt::Debug for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetch")
            .field("tag", &format_args!("{:#018x}", self.tag))
            .field("geometry", &self.geometry)
            .field("frames", &self.table.counts())
            .field("connection", &self.conn)
            .finish()
    }
}

impl Fetch {
    pub(crate) fn new(
        conn: Rc<Connection>,
        cap: fetch::Client,
        tag: u64,
        geometry: Geometry,
    ) -> Self {
        Fetch {
            conn,
            cap,
            tag,
            geometry,
            table: FrameTable::new(geometry.frames),
            lens: vec![0; geometry.frames as usize],
            bytes: Bytes::emulated(
                geometry.frames,
                (geometry.frame_size != 0).then_some(geometry.frame_size),
            ),
            next_slot: 0,
            ring_entries: RING_ENTRIES,
            tx_done: VecDeque::new(),
        }
    }

    pub(crate) fn set_ring_entries(&mut self, n: u32) {
        self.ring_entries = n;
    }

    /// The filter's 64-bit tag (epoch in the high 16 bits).
    pub fn tag(&self) -> u64 {
        self.tag
    }

    /// The sizes this filter was installed with.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// How many frames each side holds.
    pub fn frame_counts(&self) -> FrameCounts {
        self.table.counts()
    }

    /// A page the client owns and is not using: what to offer next.
    /// `None` when every client frame holds an unreleased packet.
    pub fn spare_page(&self) -> Option<u32> {
        self.table.spare()
    }

    /// The underlying capability, for callers that speak the schema
    /// directly (it bypasses this library's ownership bookkeeping: use it
    /// for tests of the server's own checks, or to delegate the filter).
    pub fn capability(&self) -> &fetch::Client {
        &self.cap
    }

    /// Shared mode: the region's header and ring words and its layout — for
    /// tests of the server's defences, which scribble over them. Writing
    /// them breaks this client's own exchange.
    #[doc(hidden)]
    pub fn region_words(&self) -> Option<(&[std::sync::atomic::AtomicU32], &exchange::Layout)> {
        match &self.bytes {
            Bytes::Shared(sr) => Some((sr.region.shared_words(), sr.region.layout())),
            Bytes::Emulated { .. } => None,
        }
    }

    /// Whether this filter receives through an exchange region (shared mode).
    pub fn is_shared(&self) -> bool {
        matches!(self.bytes, Bytes::Shared(_))
    }

    /// Switches this filter to shared mode: creates a sealed `memfd` region
    /// (this client pays for it: `frames` page frames of the server's frame
    /// size, small slots, and four rings as long as the filter's queue limit
    /// — in shared mode the rx ring is the filter's queue), asks the server for
    /// a one-time token (`attachRegion`), passes the region on the server's
    /// side socket and posts the frames the server holds on the fill ring.
    /// Every call of this `Fetch` then works on the region. Fails with
    /// [`Error::Shared`] when this host cannot (no memfd, the side socket
    /// unreachable: the server is elsewhere) and [`Error::Refused`] /
    /// [`Error::Unsupported`] when the server will not; emulated mode keeps
    /// working in both cases.
    pub async fn attach_shared(&mut self) -> Result<()> {
        if self.is_shared() {
            return Ok(());
        }
        let frames = self.geometry.frames;
        let ring = self.ring_entries;
        let small_slots = ring.max(self.geometry.small_slots).next_power_of_two();
        let mut request = self.cap.attach_region_request();
        request.get().set_ring_entries(ring);
        request.get().set_small_slots(small_slots);
        request.get().set_frames(frames);
        let reply = request.send().promise.await?;
        let r = reply.get()?;
        let limits = r.get_limits()?;
        let grant = Grant {
            token: r.get_token()?.to_vec(),
            side_path: r
                .get_side_path()?
                .to_string()
                .map_err(|e| Error::Protocol(e.to_string()))?,
            frame_size: limits.get_frame_size(),
            small_slot_size: limits.get_small_slot_size(),
            ring_entries: ring,
            small_slots,
            frames,
        };
        let region = SharedRegion::attach(grant, &self.table.server_frames()).await?;
        tracing::debug!(
            tag = format_args!("{:#018x}", self.tag),
            "exchange region attached"
        );
        self.bytes = Bytes::Shared(Box::new(region));
        Ok(())
    }

    /// Frantz's fetch: takes the next frame, if any. A small frame is copied
    /// into `small` (which must hold at least the server's small threshold);
    /// a large one arrives in a server frame that becomes the client's,
    /// and `page` (a frame the client owns) goes to the server in exchange.
    pub async fn fetch(&mut self, small: &mut [u8], page: u32) -> Result<Fetched> {
        if small.len() < self.geometry.small_threshold as usize {
            return Err(Error::InvalidArgument(format!(
                "the small buffer holds {} bytes, less than the server's small threshold of {}",
                small.len(),
                self.geometry.small_threshold
            )));
        }
        self.table.check_offer(page)?;
        if let Bytes::Shared(sr) = &mut self.bytes {
            // No system call: the rx ring is read in shared memory.
            return match sr.region.recv(small).map_err(region_error)? {
                None => Ok(Fetched::Empty),
                Some(exchange::Received::Small { len, info }) => Ok(Fetched::Small {
                    len: len.min(small.len()),
                    meta: meta_rx(&info),
                }),
                Some(exchange::Received::Large {
                    frame,
                    offset,
                    len,
                    info,
                }) => {
                    let index = frame.index();
                    self.table.exchange(page, index)?;
                    sr.give(page)?;
                    sr.tokens[index as usize] = Some(frame);
                    sr.offsets[index as usize] = offset;
                    self.lens[index as usize] = len as u32;
                    Ok(Fetched::Large {
                        frame: index,
                        len,
                        meta: meta_rx(&info),
                    })
                }
            };
        }
        let slot = self.next_slot;
        let mut request = self.cap.fetch_request();
        request.get().set_small_slot(slot);
        request.get().set_page(page);
        let reply = request.send().promise.await?;
        let result = reply.get()?.get_result()?;
        let meta = meta_of(result);
        let data = result.get_data()?;
        match result.which()? {
            fetched::Empty(()) => Ok(Fetched::Empty),
            fetched::Small(s) => {
                if s.get_slot() != slot {
                    return Err(Error::Protocol(format!(
                        "asked for small slot {slot}, the server used {}",
                        s.get_slot()
                    )));
                }
                self.advance_slot(1);
                let len = self.bytes.read_small(slot, s.get_length(), data, small)?;
                Ok(Fetched::Small { len, meta })
            }
            fetched::Large(l) => {
                let frame = l.get_frame();
                self.table.exchange(page, frame)?;
                let len = self.bytes.store_large(frame, l.get_length(), data)?;
                self.lens[frame as usize] = l.get_length();
                Ok(Fetched::Large { frame, len, meta })
            }
        }
    }

    /// [`fetch`](Self::fetch), waiting up to `timeout` (`None`: forever) for
    /// a packet: in shared mode asleep on the region's eventfd (the server
    /// rings it only when this client asked), in emulated mode polling every
    /// few milliseconds. `Fetched::Empty` when the time is up.
    pub async fn fetch_wait(
        &mut self,
        small: &mut [u8],
        page: u32,
        timeout: Option<Duration>,
    ) -> Result<Fetched> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let got = self.fetch(small, page).await?;
            if got != Fetched::Empty {
                return Ok(got);
            }
            let left = match deadline {
                None => LIVENESS,
                Some(d) => d.saturating_duration_since(tokio::time::Instant::now()),
            };
            if left.is_zero() {
                return Ok(Fetched::Empty);
            }
            self.idle(left).await?;
        }
    }

    /// Waits up to `max` for packets without fetching: on the region's
    /// eventfd in shared mode (checking the capability still works when it
    /// wakes with nothing, so a revocation is reported), a plain sleep in
    /// emulated mode.
    pub async fn idle(&mut self, max: Duration) -> Result<()> {
        match &mut self.bytes {
            Bytes::Shared(sr) => {
                if !sr.wait(max.min(LIVENESS)).await? {
                    self.cap.tag_request().send().promise.await?;
                }
                Ok(())
            }
            Bytes::Emulated { .. } => {
                tokio::time::sleep(max.min(Duration::from_millis(5))).await;
                Ok(())
            }
        }
    }

    /// Lends the next packet's bytes to `f` in place — in shared mode
    /// straight out of the small slot or the client's frame, with no
    /// copy — then gives the frame back to the server. Waits up to `timeout`
    /// (`None`: forever); `Ok(None)` when nothing came. In emulated mode the
    /// bytes are the ones the RPC reply carried.
    pub async fn with_next<R>(
        &mut self,
        timeout: Option<Duration>,
        f: impl FnOnce(&[u8], Meta, Delivery) -> R,
    ) -> Result<Option<R>> {
        // `f` runs once, on the first packet; `lend` is how every path calls it.
        let mut f = Some(f);
        let mut lend = move |bytes: &[u8], meta: Meta, delivery: Delivery| {
            f.take().map(|f| f(bytes, meta, delivery))
        };
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            match &mut self.bytes {
                Bytes::Shared(sr) => {
                    let sr = &mut **sr;
                    // A small packet is lent straight out of its slot (no
                    // copy); a large one arrives as a frame, read after.
                    let mut lent = None;
                    let mut large = None;
                    sr.region
                        .recv_batch_in_place(1, |p| match p {
                            exchange::Packet::Small { data, info } => {
                                lent = lend(data, meta_rx(&info), Delivery::Small);
                            }
                            exchange::Packet::Large {
                                frame,
                                offset,
                                len,
                                info,
                            } => large = Some((frame, offset, len, info)),
                        })
                        .map_err(region_error)?;
                    if lent.is_some() {
                        return Ok(lent);
                    }
                    if let Some((frame, offset, len, info)) = large {
                        let bytes = sr.region.frame(&frame);
                        let end = (offset + len).min(bytes.len());
                        let r = lend(
                            &bytes[offset.min(end)..end],
                            meta_rx(&info),
                            Delivery::Large,
                        );
                        sr.give_token(frame)?;
                        return Ok(r);
                    }
                }
                Bytes::Emulated { .. } => {
                    if let Some(p) = self.fetch_batch(1).await?.pop() {
                        let meta = Meta {
                            wire_len: p.wire_len,
                            timestamp_ns: p.timestamp_ns,
                        };
                        return Ok(lend(&p.data, meta, p.delivery));
                    }
                }
            }
            let left = match deadline {
                None => LIVENESS,
                Some(d) => d.saturating_duration_since(tokio::time::Instant::now()),
            };
            if left.is_zero() {
                return Ok(None);
            }
            self.idle(left).await?;
        }
    }

    /// The bytes of a frame the client owns (the last packet delivered in it).
    pub fn frame(&self, frame: u32) -> Result<&[u8]> {
        if !self.table.owns(frame) {
            return Err(Error::InvalidArgument(format!(
                "frame {frame} is not the client's (the server holds it, or it is out of range)"
            )));
        }
        Ok(self.bytes.large(frame, self.lens[frame as usize] as usize))
    }

    /// The application is done with `frame`; it may be offered again.
    pub fn release(&mut self, frame: u32) -> Result<()> {
        self.table.release(frame)
    }

    /// Fetches up to `max` waiting packets in one call and returns them as
    /// owned packets (frames are released as their bytes are copied out).
    /// An empty vector means nothing was waiting.
    pub async fn fetch_batch(&mut self, max: u32) -> Result<Vec<Packet>> {
        if max == 0 {
            return Err(Error::InvalidArgument(
                "a batch of 0 packets: ask for at least one".into(),
            ));
        }
        let tag = self.tag;
        if let Bytes::Shared(sr) = &mut self.bytes {
            // One look at the rx ring for the whole batch; each large frame
            // is copied out (the caller asked for owned packets) and goes
            // straight back to the server on the fill ring.
            let mut packets = Vec::new();
            let mut larges = Vec::new();
            sr.region
                .recv_batch_in_place(max as usize, |p| {
                    let (info, delivery, data) = match p {
                        exchange::Packet::Small { data, info } => {
                            (info, Delivery::Small, data.to_vec())
                        }
                        exchange::Packet::Large {
                            frame,
                            offset,
                            len,
                            info,
                        } => {
                            larges.push((packets.len(), frame, offset, len));
                            (info, Delivery::Large, Vec::new())
                        }
                    };
                    packets.push(Packet {
                        tag,
                        timestamp_ns: info.timestamp_ns,
                        wire_len: info.wire_len,
                        delivery,
                        data,
                    });
                })
                .map_err(region_error)?;
            for (i, frame, offset, len) in larges {
                let bytes = sr.region.frame(&frame);
                let end = (offset + len).min(bytes.len());
                packets[i].data = bytes[offset.min(end)..end].to_vec();
                sr.give_token(frame)?;
            }
            return Ok(packets);
        }
        let slots: Vec<u32> = (0..max.min(self.geometry.small_slots))
            .map(|i| (self.next_slot + i) % self.geometry.small_slots)
            .collect();
        let pages = self.table.spares(max as usize);
        if pages.is_empty() {
            tracing::warn!(
                tag = format_args!("{:#018x}", self.tag),
                "no spare page to offer: release frames; large packets wait until then"
            );
        }
        let mut request = self.cap.fetch_batch_request();
        request.get().set_max(max);
        {
            let mut list = request.get().init_small_slots(slots.len() as u32);
            for (i, slot) in slots.iter().enumerate() {
                list.set(i as u32, *slot);
            }
        }
        {
            let mut list = request.get().init_pages(pages.len() as u32);
            for (i, page) in pages.iter().enumerate() {
                list.set(i as u32, *page);
            }
        }
        let reply = request.send().promise.await?;
        let results = reply.get()?.get_results()?;
        if results.len() > max {
            return Err(Error::Protocol(format!(
                "asked for at most {max} frames, got {}",
                results.len()
            )));
        }
        let mut packets = Vec::with_capacity(results.len() as usize);
        let (mut smalls, mut larges) = (0usize, 0usize);
        for result in results.iter() {
            let meta = meta_of(result);
            let data = result.get_data()?;
            match result.which()? {
                fetched::Empty(()) => continue,
                fetched::Small(s) => {
                    let expected = slots.get(smalls).copied();
                    if expected != Some(s.get_slot()) {
                        return Err(Error::Protocol(format!(
                            "small frame {smalls} of the batch used slot {}, expected {expected:?}",
                            s.get_slot()
                        )));
                    }
                    smalls += 1;
                    let mut buf = vec![0u8; data.len()];
                    let len =
                        self.bytes
                            .read_small(s.get_slot(), s.get_length(), data, &mut buf)?;
                    buf.truncate(len);
                    packets.push(self.packet(meta, Delivery::Small, buf));
                }
                fetched::Large(l) => {
                    let given = pages.get(larges).copied().ok_or_else(|| {
                        Error::Protocol(format!(
                            "the batch delivered more large frames than the {} pages offered",
                            pages.len()
                        ))
                    })?;
                    larges += 1;
                    let frame = l.get_frame();
                    self.table.exchange(given, frame)?;
                    let len = self.bytes.store_large(frame, l.get_length(), data)?;
                    self.lens[frame as usize] = l.get_length();
                    let buf = self.bytes.large(frame, len).to_vec();
                    self.table.release(frame)?;
                    packets.push(self.packet(meta, Delivery::Large, buf));
                }
            }
        }
        self.advance_slot(smalls as u32);
        Ok(packets)
    }

    /// Received packets as a stream, fetching in batches of `batch`. When
    /// nothing is waiting it sleeps `poll` (emulated mode has no push
    /// notification) or, in shared mode, on the region's eventfd (at most
    /// `poll`, so keep it short only in emulated mode). Each packet is
    /// copied out of its slot or frame into an owned [`Packet`]; use
    /// [`with_next`](Self::with_next) to read packets in place instead. The
    /// stream ends after yielding an error.
    pub fn packets(
        &mut self,
        batch: u32,
        poll: Duration,
    ) -> impl Stream<Item = Result<Packet>> + '_ {
        struct State<'a> {
            fetch: &'a mut Fetch,
            ready: VecDeque<Packet>,
            failed: bool,
        }
        let state = State {
            fetch: self,
            ready: VecDeque::new(),
            failed: false,
        };
        futures::stream::unfold(state, move |mut state| async move {
            if state.failed {
                return None;
            }
            loop {
                if let Some(packet) = state.ready.pop_front() {
                    return Some((Ok(packet), state));
                }
                match state.fetch.fetch_batch(batch).await {
                    Ok(packets) if packets.is_empty() => {
                        if let Err(e) = state.fetch.idle(poll).await {
                            state.failed = true;
                            return Some((Err(e), state));
                        }
                    }
                    Ok(packets) => state.ready.extend(packets),
                    Err(e) => {
                        state.failed = true;
                        return Some((Err(e), state));
                    }
                }
            }
        })
    }

    /// This filter's counters.
    pub async fn stats(&self) -> Result<FilterStats> {
        let reply = self.cap.stats_request().send().promise.await?;
        FilterStats::read(reply.get()?.get_stats()?)
    }

    /// Removes the filter now; frames still queued are dropped (`closed`).
    pub async fn close(self) -> Result<()> {
        self.cap.close_request().send().promise.await?;
        Ok(())
    }

    fn packet(&self, meta: Meta, delivery: Delivery, data: Vec<u8>) -> Packet {
        Packet {
            tag: self.tag,
            timestamp_ns: meta.timestamp_ns,
            wire_len: meta.wire_len,
            delivery,
            data,
        }
    }

    fn advance_slot(&mut self, n: u32) {
        self.next_slot = (self.next_slot + n) % self.geometry.small_slots;
    }
}

fn meta_of(result: fetched::Reader<'_>) -> Meta {
    Meta {
        wire_len: result.get_wire_length(),
        timestamp_ns: result.get_timestamp_ns(),
    }
}
