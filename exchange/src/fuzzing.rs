//! Fuzzing entry points: each `cargo fuzz` target in `exchange/fuzz/` is one
//! call into this module, so the targets stay trivial and the decoding of
//! fuzz input is built and linted with the library.
//!
//! Not a stable API.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::layout::{
    RegionHeader, RingLayout, CACHE_LINE, HEADER_SIZE, HEADER_WORDS, MAGIC, MIN_FRAME_SIZE,
    MIN_SMALL_SLOT_SIZE, PAGE_SIZE, RING_CTRL_SIZE, RX_SMALL, VERSION,
};
use crate::{
    ClientRegion, FrameState, Geometry, Layout, Limits, PlaceError, RingId, RxMeta, ServerConfig,
    ServerFrame, ServerRegion, TxPacket, Violation,
};

/// `header` target: any 128 bytes as a header (optionally mended so that the
/// later checks are reached, then spoiled in one word). `Layout::from_header`
/// never panics, accepts exactly the headers the wire specification (README
/// §3, §4) accepts, and what it accepts satisfies every layout invariant the
/// server relies on.
pub fn header(data: &[u8]) {
    let limits = ServerConfig::default().limits;
    let mut input = Reader::new(data);
    let mut words = [0u32; HEADER_WORDS];
    for w in &mut words {
        *w = input.le_word();
    }
    let mut header = RegionHeader::from_words(&words);
    assert_eq!(header.to_words(), words, "header words do not round-trip");
    let mend = input.byte();
    if mend & 3 != 0 {
        if mend & 2 != 0 {
            mend_geometry(&mut header, &limits);
        }
        mend_derived(&mut header, &limits);
        let mut words = header.to_words();
        // One word spoiled (or none when the index is past the end).
        if let Some(w) = words.get_mut(usize::from(input.byte())) {
            *w ^= input.word();
        }
        header = RegionHeader::from_words(&words);
    }
    let spec = spec_accepts(&header, &limits);
    match Layout::from_header(&header, &limits) {
        Ok(layout) => {
            assert!(
                spec,
                "accepted a header the specification refuses: {header:?}"
            );
            check_layout(&layout, &limits);
            assert_eq!(layout.header(), header, "accepted header is not canonical");
            assert_eq!(Layout::new(layout.geometry, &limits), Ok(layout));
        }
        Err(e) => assert!(!spec, "refused a valid header ({e}): {header:?}"),
    }
}

/// Offsets and size of a layout computed straight from README §3, in `u128`
/// (no overflow to think about): ring offsets, small slots, frames, size.
struct SpecLayout {
    rings: [u64; 4],
    small: u64,
    frames: u64,
    size: u64,
}

fn pow2_within(v: u32, max: u32) -> bool {
    v.is_power_of_two() && v <= max
}

fn spec_layout(g: &Geometry, lim: &Limits) -> Option<SpecLayout> {
    let rings = [
        (g.rx_entries, 32u128),
        (g.fill_entries, 4),
        (g.tx_entries, 32),
        (g.completion_entries, 16),
    ];
    let ok = rings
        .iter()
        .all(|(n, _)| pow2_within(*n, lim.max_ring_entries))
        && g.completion_entries >= g.tx_entries
        && pow2_within(g.small_slot_count, lim.max_small_slots)
        && g.small_slot_count >= g.rx_entries
        && g.small_slot_size % 64 == 0
        && g.small_slot_size >= 64
        && g.small_slot_size <= lim.max_small_slot_size
        && g.frame_count >= 1
        && g.frame_count <= lim.max_frames
        && pow2_within(g.frame_size, lim.max_frame_size)
        && g.frame_size >= 2048;
    if !ok {
        return None;
    }
    let up = |v: u128, a: u128| v.div_ceil(a) * a;
    let mut at = 4096u128;
    let mut offsets = [0u64; 4];
    for (offset, (n, entry)) in offsets.iter_mut().zip(rings) {
        let start = up(at, 64);
        *offset = start as u64;
        at = start + 128 + u128::from(n) * entry;
    }
    let small = up(at, 64);
    let frames = up(
        small + u128::from(g.small_slot_count) * u128::from(g.small_slot_size),
        4096,
    );
    let size = up(
        frames + u128::from(g.frame_count) * u128::from(g.frame_size),
        4096,
    );
    (size <= u128::from(lim.max_region_bytes)).then_some(SpecLayout {
        rings: offsets,
        small: small as u64,
        frames: frames as u64,
        size: size as u64,
    })
}

/// README §4: magic, version, header size, the geometry rules, every offset
/// and the size as §3 computes them, and zero reserved words.
fn spec_accepts(h: &RegionHeader, lim: &Limits) -> bool {
    let Some(s) = spec_layout(&h.geometry(), lim) else {
        return false;
    };
    h.magic == *b"NSXCHNG\0"
        && h.version == 1
        && h.header_size == 4096
        && h.region_size == s.size
        && [h.rx_offset, h.fill_offset, h.tx_offset, h.completion_offset] == s.rings
        && h.small_offset == s.small
        && h.frame_offset == s.frames
        && h.reserved == [0; 3]
}

/// Turns each geometry field into a valid one (under `lim`) derived from it.
fn mend_geometry(h: &mut RegionHeader, lim: &Limits) {
    let pow2 = |v: u32, max: u32| 1u32 << (v % (max.trailing_zeros() + 1));
    h.rx_entries = pow2(h.rx_entries, lim.max_ring_entries);
    h.fill_entries = pow2(h.fill_entries, lim.max_ring_entries);
    h.tx_entries = pow2(h.tx_entries, lim.max_ring_entries);
    h.completion_entries = pow2(h.completion_entries, lim.max_ring_entries).max(h.tx_entries);
    h.small_slot_count = pow2(h.small_slot_count, lim.max_small_slots).max(h.rx_entries);
    h.small_slot_size =
        MIN_SMALL_SLOT_SIZE * (1 + h.small_slot_size % (lim.max_small_slot_size / 64));
    h.frame_count = 1 + h.frame_count % lim.max_frames;
    let sizes = lim.max_frame_size.trailing_zeros() - MIN_FRAME_SIZE.trailing_zeros() + 1;
    h.frame_size = MIN_FRAME_SIZE << (h.frame_size % sizes);
}

/// Writes the fields derived from the geometry as the specification computes
/// them (when the geometry is valid), so the offset comparisons are reached.
fn mend_derived(h: &mut RegionHeader, lim: &Limits) {
    h.magic = MAGIC;
    h.version = VERSION;
    h.header_size = HEADER_SIZE as u32;
    h.reserved = [0; 3];
    if let Some(s) = spec_layout(&h.geometry(), lim) {
        [h.rx_offset, h.fill_offset, h.tx_offset, h.completion_offset] = s.rings;
        h.small_offset = s.small;
        h.frame_offset = s.frames;
        h.region_size = s.size;
    }
}

/// What `layout.rs` promises about an accepted layout: every part inside the
/// region, in order, aligned, without overlap; the geometry rules hold.
fn check_layout(l: &Layout, lim: &Limits) {
    let g = &l.geometry;
    let size = l.region_size;
    assert!(size as u64 <= lim.max_region_bytes && size % PAGE_SIZE == 0);
    let rings: [(&RingLayout, RingId); 4] = [
        (&l.rx, RingId::Rx),
        (&l.fill, RingId::Fill),
        (&l.tx, RingId::Tx),
        (&l.completion, RingId::Completion),
    ];
    // The header page, then the rings in order, each after the previous one.
    let mut end = HEADER_SIZE;
    assert_eq!(l.rx.offset, HEADER_SIZE);
    for (ring, id) in rings {
        assert!(ring.offset >= end, "{id} ring overlaps what precedes it");
        assert_eq!(ring.offset % CACHE_LINE, 0, "{id} ring not 64-aligned");
        assert_eq!(ring.entry_size, id.entry_size());
        assert!(pow2_within(ring.entries, lim.max_ring_entries));
        assert_eq!(ring.entries, ring_entries(g, id));
        for word in [ring.producer(), ring.need_wakeup(), ring.consumer()] {
            assert!(word % 4 == 0 && word >= ring.offset && word < ring.entries_offset());
        }
        assert_ne!(ring.producer() / CACHE_LINE, ring.consumer() / CACHE_LINE);
        assert_eq!(ring.entries_offset(), ring.offset + RING_CTRL_SIZE);
        end = ring.end();
    }
    assert!(l.completion.entries >= l.tx.entries);
    // Small slots after the rings (the atomic view ends at `small_offset`).
    assert!(l.small_offset >= end && l.small_offset % CACHE_LINE == 0);
    assert!(pow2_within(g.small_slot_count, lim.max_small_slots));
    assert!(g.small_slot_count >= g.rx_entries);
    assert!(g.small_slot_size >= MIN_SMALL_SLOT_SIZE && g.small_slot_size % 64 == 0);
    assert!(g.small_slot_size <= lim.max_small_slot_size);
    let last_slot = l.small_slot(g.small_slot_count - 1);
    assert_eq!(
        last_slot + l.small_slot_size(),
        l.small_offset + g.small_slot_count as usize * l.small_slot_size()
    );
    assert!(last_slot + l.small_slot_size() <= l.frame_offset);
    // Frames: page-aligned start, power-of-two size, all inside the region.
    assert_eq!(l.frame_offset % PAGE_SIZE, 0);
    assert!(g.frame_count >= 1 && g.frame_count <= lim.max_frames);
    assert!(pow2_within(g.frame_size, lim.max_frame_size) && g.frame_size >= MIN_FRAME_SIZE);
    let last_frame = l.frame(g.frame_count - 1);
    assert_eq!(last_frame % l.frame_size().min(PAGE_SIZE), 0);
    assert!(last_frame + l.frame_size() <= size);
    assert!(
        size - (last_frame + l.frame_size()) < PAGE_SIZE,
        "region has a spare page"
    );
}

fn ring_entries(g: &Geometry, id: RingId) -> u32 {
    match id {
        RingId::Rx => g.rx_entries,
        RingId::Fill => g.fill_entries,
        RingId::Tx => g.tx_entries,
        RingId::Completion => g.completion_entries,
    }
}

/// Most operations one `session` run performs.
pub const MAX_SESSION_OPS: usize = 400;

/// `session` target: a server attached to a real region (memfd, `SCM_RIGHTS`,
/// eventfds) driven by a fuzz-chosen sequence of hostile client writes into
/// the rings and of server operations. The server never panics; after every
/// step only the frame transitions the operation allows happened, the frame
/// table agrees with the frames the driver holds (taken, in flight), and no
/// frame on the free list is held or delivered.
pub fn session(data: &[u8]) {
    let mut input = Reader::new(data);
    let shape = input.byte();
    let geometry = Geometry {
        rx_entries: 1 << (shape & 3),
        fill_entries: 1 << ((shape >> 2) & 3),
        tx_entries: 1 << ((shape >> 4) & 3),
        completion_entries: 1 << (((shape >> 4) & 3) + ((shape >> 6) & 1)),
        small_slot_count: 1 << (shape & 3),
        small_slot_size: 64,
        frame_count: 1 + u32::from(input.byte() % 16),
        frame_size: 2048,
    };
    let config = ServerConfig {
        revoke_after: match input.byte() {
            0..=63 => 0,
            b @ 64..=127 => u64::from(b % 16) + 1,
            _ => 1024,
        },
        max_tx_len: if input.byte() & 1 == 0 { 65535 } else { 3000 },
        ..ServerConfig::default()
    };
    let (client, _frames, server) = ServerRegion::pair(geometry, &config).expect("attach region");
    let mut s = Session {
        layout: *client.layout(),
        client,
        server,
        config,
        held: Vec::new(),
        in_flight: Vec::new(),
        stranded: 0,
        stranded_packets: 0,
        rx_pushed: 0,
        rx_published: 0,
        completions_pushed: 0,
        completions_published: 0,
        violations: 0,
    };
    for _ in 0..MAX_SESSION_OPS {
        if input.is_empty() {
            break;
        }
        s.step(&mut input);
        s.check();
    }
    s.finish();
}

struct Session {
    client: ClientRegion,
    server: ServerRegion,
    layout: Layout,
    config: ServerConfig,
    /// Frames the server handed out with `take_frame`, not yet given back.
    held: Vec<ServerFrame>,
    /// Tx packets popped and not yet completed.
    in_flight: Vec<TxPacket>,
    /// Frames left in flight by a failed `complete_tx` (the client broke its
    /// completion consumer index): they stay `InFlightTx` for good.
    stranded: usize,
    /// Packets whose completion could not be posted: each keeps one unit of
    /// completion-ring room promised for good.
    stranded_packets: u32,
    /// Rx entries the server wrote (its private producer index).
    rx_pushed: u32,
    /// Rx entries published.
    rx_published: u32,
    /// Completions the server wrote (its private producer index).
    completions_pushed: u32,
    /// Completions published.
    completions_published: u32,
    /// Violation total after the previous step.
    violations: u64,
}

/// A frame state change seen across one operation: `(frame, before, after)`.
type Change = (u32, FrameState, FrameState);

impl Session {
    fn words(&self) -> &[AtomicU32] {
        self.client.shared_words()
    }

    fn load(&self, offset: usize) -> u32 {
        self.words()[offset / 4].load(Ordering::Acquire)
    }

    fn store(&self, offset: usize, v: u32) {
        self.words()[offset / 4].store(v, Ordering::Release);
    }

    fn states(&self) -> Vec<FrameState> {
        let t = self.server.frames();
        (0..t.count())
            .map(|i| t.state(i).expect("in range"))
            .collect()
    }

    fn changes(&self, before: &[FrameState]) -> Vec<Change> {
        before
            .iter()
            .zip(self.states())
            .enumerate()
            .filter(|(_, (b, a))| *b != a)
            .map(|(i, (b, a))| (i as u32, *b, a))
            .collect()
    }

    fn ring(&self, which: u8) -> RingLayout {
        *self.layout.ring(match which % 4 {
            0 => RingId::Rx,
            1 => RingId::Fill,
            2 => RingId::Tx,
            _ => RingId::Completion,
        })
    }

    /// A value for a client write: raw, a frame-ish number, or near the word's
    /// current value or the ring's other index.
    fn value(&self, input: &mut Reader<'_>, current: u32, partner: u32) -> u32 {
        let frames = self.layout.geometry.frame_count;
        match input.byte() % 6 {
            0 => input.word(),
            1 => u32::from(input.byte()) % (frames + 2),
            2 => current.wrapping_add(input.byte() as i8 as u32),
            3 => partner.wrapping_add(input.byte() as i8 as u32),
            4 => u32::MAX - u32::from(input.byte()),
            _ => u32::from(input.byte() & 1),
        }
    }

    fn step(&mut self, input: &mut Reader<'_>) {
        let before = self.states();
        let free_before = self.server.free_frames();
        let revoked = self.server.is_revoked();
        let frames = self.layout.geometry.frame_count;
        match input.byte() % 17 {
            // Hostile client: any word of a ring's control block or entries.
            0 => {
                let ring = self.ring(input.byte());
                let pick = input.half() as usize;
                let entry_words = ring.entries as usize * ring.entry_size / 4;
                let offset = if pick % 4 == 0 {
                    [ring.producer(), ring.need_wakeup(), ring.consumer()][(pick / 4) % 3]
                } else {
                    ring.entries_offset() + 4 * ((pick / 4) % entry_words)
                };
                let partner = if offset == ring.producer() {
                    self.load(ring.consumer())
                } else {
                    self.load(ring.producer())
                };
                let v = self.value(input, self.load(offset), partner);
                self.store(offset, v);
                self.check_unchanged(&before);
            }
            // Client posts a frame index on the fill ring (at its producer).
            1 => {
                let ring = self.layout.fill;
                let producer = self.load(ring.producer());
                let frame = self.value(input, 0, 0);
                let slot = (producer & (ring.entries - 1)) as usize;
                self.store(ring.entries_offset() + 4 * slot, frame);
                self.store(ring.producer(), producer.wrapping_add(1));
                self.check_unchanged(&before);
            }
            // Client posts a tx descriptor (at its producer).
            2 => {
                let ring = self.layout.tx;
                let producer = self.load(ring.producer());
                let small = |input: &mut Reader<'_>| u32::from(input.byte()) % (frames + 1);
                let len = |input: &mut Reader<'_>| match input.byte() {
                    0 => 0,
                    b @ 1..=250 => u32::from(b) * 9,
                    _ => input.word(),
                };
                let desc = [
                    small(input),
                    u32::from(input.byte()) * 16,
                    len(input),
                    u32::from(input.byte() % 5 / 2),
                    small(input),
                    u32::from(input.byte()) * 16,
                    len(input),
                    0,
                ];
                let slot = (producer & (ring.entries - 1)) as usize;
                for (i, w) in desc.iter().enumerate() {
                    self.store(ring.entries_offset() + 32 * slot + 4 * i, *w);
                }
                self.store(ring.producer(), producer.wrapping_add(1));
                self.check_unchanged(&before);
            }
            // Client consumes some of what the server published (rx or
            // completion), or claims more than that.
            3 | 4 => {
                let ring = if input.byte() & 1 == 0 {
                    self.layout.rx
                } else {
                    self.layout.completion
                };
                let consumer = self.load(ring.consumer());
                let producer = self.load(ring.producer());
                let v = match input.byte() % 4 {
                    0 | 1 => producer,
                    2 => consumer.wrapping_add(1),
                    _ => producer.wrapping_add(input.byte() as i8 as u32),
                };
                self.store(ring.consumer(), v);
                self.check_unchanged(&before);
            }
            5 => {
                let r = self.server.refill();
                let changes = self.changes(&before);
                match r {
                    Ok(n) => {
                        assert!(!revoked);
                        assert_eq!(changes.len(), n, "refill accepted {n}: {changes:?}");
                        for c in &changes {
                            assert!(matches!(c, (_, FrameState::Client, FrameState::ServerFree)));
                        }
                        assert_eq!(self.server.free_frames(), free_before + n);
                    }
                    Err(v) => {
                        assert!(!revoked || matches!(v, Violation::Revoked { .. }));
                        assert!(changes.is_empty());
                    }
                }
            }
            6 => {
                let r = self.server.take_frame();
                let changes = self.changes(&before);
                match r {
                    Ok(f) => {
                        assert!(!revoked);
                        let i = f.index();
                        assert_eq!(
                            changes,
                            [(i, FrameState::ServerFree, FrameState::ServerHolding)]
                        );
                        assert_eq!(self.server.free_frames(), free_before - 1);
                        self.held.push(f);
                    }
                    Err(PlaceError::NoFreeFrame) => {
                        assert!(!revoked && free_before == 0 && changes.is_empty());
                    }
                    Err(PlaceError::Violation(Violation::Revoked { .. })) => {
                        assert!(revoked && changes.is_empty());
                    }
                    Err(e) => panic!("take_frame: {e}"),
                }
            }
            7 => {
                // Mostly inside the 2048-byte frame, sometimes past it.
                let offset = usize::from(input.byte()) * 8;
                let len = usize::from(input.half()) % 2600;
                if let Some(at) = self.pick_at(input) {
                    let data = [0x5a; 4096];
                    let f = &self.held[at];
                    let r = self.server.write_frame(f, offset, &data[..len.min(4096)]);
                    let fits = offset + len.min(4096) <= self.server.frame_capacity();
                    assert_eq!(r.is_ok(), fits, "write_frame at {offset}+{len}: {r:?}");
                }
                self.check_unchanged(&before);
            }
            8 => {
                let offset = u16::from(input.byte()) * 4;
                let len = usize::from(input.half()) % 2600;
                let meta = RxMeta {
                    tag: u64::from(input.byte()),
                    wire_len: u32::from(input.half()),
                    ..RxMeta::default()
                };
                let Some(at) = self.pick_at(input) else {
                    return self.check_unchanged(&before);
                };
                let f = self.held.swap_remove(at);
                let i = f.index();
                let r = self.server.deliver_frame(f, offset, len, &meta);
                let changes = self.changes(&before);
                if r.is_ok() {
                    assert_eq!(
                        changes,
                        [(i, FrameState::ServerHolding, FrameState::Client)]
                    );
                    assert_eq!(self.server.free_frames(), free_before);
                    self.check_rx_entry(i, len, offset, false);
                    self.rx_pushed = self.rx_pushed.wrapping_add(1);
                } else {
                    assert_eq!(
                        changes,
                        [(i, FrameState::ServerHolding, FrameState::ServerFree)]
                    );
                    assert_eq!(self.server.free_frames(), free_before + 1);
                }
            }
            9 => {
                if let Some(at) = self.pick_at(input) {
                    let f = self.held.swap_remove(at);
                    let i = f.index();
                    self.server.release_frame(f);
                    let changes = self.changes(&before);
                    assert_eq!(
                        changes,
                        [(i, FrameState::ServerHolding, FrameState::ServerFree)]
                    );
                    assert_eq!(self.server.free_frames(), free_before + 1);
                }
            }
            10 => {
                let len = usize::from(input.byte());
                let r = self
                    .server
                    .deliver_small(&[0xa5; 256][..len], &RxMeta::default());
                if r.is_ok() {
                    assert!(!revoked && len <= self.server.small_capacity());
                    let slot = self.rx_pushed & (self.layout.geometry.small_slot_count - 1);
                    self.check_rx_entry(slot, len, 0, true);
                    self.rx_pushed = self.rx_pushed.wrapping_add(1);
                }
                self.check_unchanged(&before);
            }
            11 => {
                self.publish();
                self.check_unchanged(&before);
            }
            12 => {
                let r = self.server.tx_budget();
                if let Ok(n) = r {
                    assert!(!revoked);
                    let taken = self.in_flight.len() as u32 + self.stranded_packets;
                    assert!(n + taken <= self.layout.completion.entries);
                }
                self.check_unchanged(&before);
            }
            13 => {
                let r = self.server.pop_tx();
                let changes = self.changes(&before);
                match r {
                    Ok(Some(p)) => {
                        assert!(!revoked);
                        let mut expect: Vec<Change> = std::iter::once(p.first())
                            .chain(p.second())
                            .map(|(f, _, _)| (f, FrameState::Client, FrameState::InFlightTx))
                            .collect();
                        expect.sort_unstable_by_key(|c| c.0);
                        assert_eq!(changes, expect);
                        for (_, offset, len) in std::iter::once(p.first()).chain(p.second()) {
                            let end = offset as usize + len as usize;
                            assert!(len >= 1 && end <= self.server.frame_capacity());
                        }
                        assert!(p.len() <= self.config.max_tx_len as usize);
                        let mut out = [0u8; 128];
                        assert_eq!(self.server.read_tx(&p, &mut out), p.len().min(128));
                        let (raw, raw2) = self.server.tx_raw(&p);
                        assert_eq!(raw.len() + raw2.map_or(0, |r| r.len()), p.len());
                        let skip = usize::from(input.half());
                        let rest: usize = self
                            .server
                            .tx_raw_after(&p, skip)
                            .iter()
                            .flatten()
                            .map(|r| r.len())
                            .sum();
                        assert_eq!(rest, p.len().saturating_sub(skip));
                        self.in_flight.push(p);
                    }
                    Ok(None) => assert!(!revoked && changes.is_empty()),
                    Err(v) => {
                        assert!(!revoked || matches!(v, Violation::Revoked { .. }));
                        assert!(changes.is_empty());
                    }
                }
            }
            14 => {
                let at = usize::from(input.byte());
                if !self.in_flight.is_empty() {
                    let p = self.in_flight.swap_remove(at % self.in_flight.len());
                    let segments: Vec<u32> = std::iter::once(p.first())
                        .chain(p.second())
                        .map(|s| s.0)
                        .collect();
                    let r = self.server.complete_tx(p, 0, input.word());
                    let changes = self.changes(&before);
                    if r.is_ok() {
                        self.completions_pushed = self.completions_pushed.wrapping_add(1);
                        let mut expect: Vec<Change> = segments
                            .iter()
                            .map(|f| (*f, FrameState::InFlightTx, FrameState::Client))
                            .collect();
                        expect.sort_unstable_by_key(|c| c.0);
                        assert_eq!(changes, expect);
                    } else {
                        assert!(changes.is_empty());
                        self.stranded += segments.len();
                        self.stranded_packets += 1;
                    }
                }
            }
            15 => {
                if let Ok(sleep) = self.server.arm_wakeup() {
                    assert!(!revoked);
                    if sleep {
                        self.server.drain_wakeups().expect("eventfd read");
                    }
                }
                self.check_unchanged(&before);
            }
            _ => {
                if let Ok(n) = self.server.rx_free() {
                    assert!(!revoked && n <= self.layout.rx.entries);
                }
                self.check_unchanged(&before);
            }
        }
    }

    /// `publish`, and the producer indices it wrote are the server's own.
    fn publish(&mut self) {
        self.server.publish().expect("eventfd write");
        if self.rx_pushed != self.rx_published {
            assert_eq!(self.load(self.layout.rx.producer()), self.rx_pushed);
            self.rx_published = self.rx_pushed;
        }
        if self.completions_pushed != self.completions_published {
            let producer = self.load(self.layout.completion.producer());
            assert_eq!(producer, self.completions_pushed);
            self.completions_published = self.completions_pushed;
        }
    }

    fn check_unchanged(&self, before: &[FrameState]) {
        assert!(self.changes(before).is_empty());
    }

    fn pick_at(&self, input: &mut Reader<'_>) -> Option<usize> {
        let at = usize::from(input.byte());
        (!self.held.is_empty()).then(|| at % self.held.len())
    }

    /// The rx entry the server just wrote names what it delivered.
    fn check_rx_entry(&self, index: u32, len: usize, offset: u16, small: bool) {
        let ring = self.layout.rx;
        let slot = (self.rx_pushed & (ring.entries - 1)) as usize;
        let at = ring.entries_offset() + 32 * slot;
        // The client may scribble these words only between operations.
        assert_eq!(self.load(at + 16), index);
        assert_eq!(self.load(at + 20) as usize, len);
        let last = self.load(at + 28);
        assert_eq!(last as u16, offset);
        assert_eq!((last >> 16) as u16 & RX_SMALL != 0, small);
        if !small {
            assert!(index < self.layout.geometry.frame_count);
        }
    }

    /// After every step: the table agrees with what the driver holds.
    fn check(&mut self) {
        let t = self.server.frames();
        let count = |s| t.count_in(s);
        assert_eq!(
            count(FrameState::Client)
                + count(FrameState::ServerFree)
                + count(FrameState::ServerHolding)
                + count(FrameState::InFlightTx),
            t.count() as usize
        );
        assert_eq!(count(FrameState::ServerFree), t.free_count());
        assert_eq!(count(FrameState::ServerHolding), self.held.len());
        let mut seen = vec![false; t.count() as usize];
        for f in &self.held {
            assert_eq!(t.state(f.index()), Some(FrameState::ServerHolding));
            assert!(!std::mem::replace(&mut seen[f.index() as usize], true));
        }
        let mut in_flight = self.stranded;
        for p in &self.in_flight {
            for (f, _, _) in std::iter::once(p.first()).chain(p.second()) {
                assert_eq!(t.state(f), Some(FrameState::InFlightTx));
                assert!(!std::mem::replace(&mut seen[f as usize], true));
                in_flight += 1;
            }
        }
        assert_eq!(count(FrameState::InFlightTx), in_flight);
        let total = t.violations().total();
        assert!(total >= self.violations, "violation count went down");
        self.violations = total;
        let limit = self.config.revoke_after;
        assert_eq!(t.is_revoked(), limit != 0 && total >= limit);
    }

    /// At the end: the free list holds exactly the `ServerFree` frames, each
    /// once; every held frame goes back; every in-flight packet completes.
    fn finish(mut self) {
        if !self.server.is_revoked() {
            let free: Vec<u32> = (0..self.server.frames().count())
                .filter(|i| self.server.frames().state(*i) == Some(FrameState::ServerFree))
                .collect();
            let mut drained = Vec::new();
            while let Ok(f) = self.server.take_frame() {
                drained.push(f.index());
                self.held.push(f);
            }
            drained.sort_unstable();
            assert_eq!(
                drained, free,
                "free list differs from the ServerFree frames"
            );
        }
        for f in std::mem::take(&mut self.held) {
            self.server.release_frame(f);
        }
        // The client takes every completion, then each packet in flight
        // completes: tx_budget promised the room.
        self.publish();
        let c = self.layout.completion;
        self.store(c.consumer(), self.completions_pushed);
        for p in std::mem::take(&mut self.in_flight) {
            self.server.complete_tx(p, 0, 0).expect("room was promised");
        }
        let t = self.server.frames();
        assert_eq!(t.count_in(FrameState::ServerHolding), 0);
        assert_eq!(t.count_in(FrameState::InFlightTx), self.stranded);
    }
}

/// A cursor over the fuzz input; reads past the end give zeros.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { rest: data }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((first, rest)) => {
                self.rest = rest;
                *first
            }
            None => 0,
        }
    }

    fn half(&mut self) -> u16 {
        u16::from(self.byte()) << 8 | u16::from(self.byte())
    }

    fn word(&mut self) -> u32 {
        u32::from(self.half()) << 16 | u32::from(self.half())
    }

    /// Four bytes as a little-endian word (header bytes in memory order).
    fn le_word(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mended_header_is_accepted() {
        // Zero geometry mended to the smallest valid one, derived fields
        // written, no word spoiled: the Ok path and its checks run.
        let mut h = RegionHeader::default();
        let limits = Limits::default();
        mend_geometry(&mut h, &limits);
        mend_derived(&mut h, &limits);
        assert!(spec_accepts(&h, &limits));
        assert!(Layout::from_header(&h, &limits).is_ok());
        let mut input = [0u8; HEADER_WORDS * 4 + 2];
        input[HEADER_WORDS * 4] = 2;
        input[HEADER_WORDS * 4 + 1] = 0xff;
        header(&input);
        header(&[]);
    }

    #[test]
    fn sessions_run() {
        // xorshift bytes: a few fixed sessions through every operation.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in [0, 1, 64, 600, 2000] {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            session(&data);
        }
    }
}
