# netserver: the public API of the network server domain.
#
# One process (the server) owns a network interface. Clients install packet
# filters written in pcap-filter syntax and receive, for each filter, a Fetch
# capability through which they get exactly the frames their filter claimed.
#
# Two Unix sockets serve two bootstrap capabilities:
#
#   PATH            (mode 0666)  bootstraps `NetServer`: any local user.
#   PATH.operator   (mode 0600)  bootstraps `Operator`: only the user the
#                                server runs as (file permissions are the
#                                authority; there is no other way to get it).
#
# Frames move in one of two ways, behind the same Fetch capability:
#
#   emulated mode  the frame bytes travel in the RPC reply (`Fetched.data`);
#                  no shared memory, no privileges.
#   shared mode    the client attached an exchange region (`attachRegion`);
#                  frames are written into the client's own memory and
#                  announced on its rx ring; `Fetched.data` stays empty.
#
# Frame indices, small-slot indices and tags are meaningful only to the server
# that issued them: a tag carries a per-start random epoch in its high 16
# bits, so anything presented to a restarted server fails with a "stale" error.
@0xaaff8d9f34199795;

# ---------------------------------------------------------------------------
# Ordinary clients
# ---------------------------------------------------------------------------

interface NetServer {
  # The bootstrap capability of the client socket.

  installFilter @0 (expression :Text, options :FilterOptions) -> (fetch :Fetch);
  # Compiles `expression` (pcap-filter syntax, as tcpdump takes it) and
  # installs it. Fails with a message naming the position of a syntax error,
  # the limit a filter exceeds, or the conflict with an installed filter:
  # an exclusive filter identical to one installed (it would receive
  # nothing), or one that would take frames another client's exclusive
  # filter claims (more specific on frames both match; filters installed
  # over the same connection are one client's and may narrow each other).
  # Monitor mode is refused here: use `Operator.installFilter`.
  # The filter lives as long as the returned capability: dropping the last
  # reference, calling `Fetch.close`, or the connection closing removes it
  # and frees every frame and slot it held.

  info @1 () -> (info :ServerInfo);
  # What this server runs with: limits, sizes, its epoch.

  bind @2 (transport :Transport, port :UInt16, options :BindOptions)
      -> (fetch :Fetch, binding :Binding);
  # Binds `transport` port `port` of the server's IP (`serve --ip`): installs
  # the filter `dst host IP and TRANSPORT dst port PORT` (returned as
  # `fetch`) and, with `options.ownMac`, gives the application a MAC of its
  # own — random, locally administered, probed for collisions on the link,
  # then announced; the call returns once the MAC is in use (about a
  # second). Frames to that MAC reach `fetch` by destination MAC alone.
  # `binding` sends frames from the bound MAC/IP/port (anything else is
  # refused and counted). Dropping `binding` unbinds the port; dropping
  # `fetch` removes the filter. Fails when the server has no IP, the port
  # is bound already, or no free MAC was found.
}

enum Transport {
  udp @0;
  tcp @1;
}

struct BindOptions {
  ownMac @0 :Bool = false;
  # Give the application its own MAC (else it shares the canonical one).
  filter @1 :FilterOptions;
  # Options of the filter `bind` installs (queue limit, frames, …).
}

interface Binding {
  # A bound port: where the application's frames may leave from.

  info @0 () -> (info :BindingInfo);

  send @1 (frame :Data) -> ();
  # Emulated-mode transmit (fbufs-style through the RPC): sends one whole
  # Ethernet frame. Its source MAC, IPv4 address, protocol and source port
  # must be the binding's; otherwise it is refused with the reason and
  # counted (`HostStats.txRefused`), and nothing leaves the interface.

  sendParts @2 (header :Data, payload :Data) -> ();
  # Scatter-gather: `header` then `payload` leave as one frame (a header
  # page and a payload page). Same checks as `send`.

  unbind @3 () -> ();
  # Releases the port (and, with its last port, the application MAC) now.
}

struct BindingInfo {
  mac @0 :Data;
  # 6 bytes: the MAC frames of this binding leave from.
  ownMac @1 :Bool;
  # Whether `mac` is the application's own (else the canonical MAC).
  ip @2 :Data;
  # 4 bytes: the server's IPv4 address.
  transport @3 :Transport;
  port @4 :UInt16;
  tag @5 :UInt64;
  # The tag of the filter `bind` installed.
}

struct FilterOptions {
  mode @0 :FilterMode = exclusive;

  queueLimit @1 :UInt32 = 0;
  # Most frames waiting in this filter's own queue before they spill into the
  # server's overflow pool. 0: the server default (`ServerInfo.queueLimit`).

  frames @2 :UInt32 = 0;
  # Size of this filter's frame space in emulated mode (how many page frames
  # exist, numbered 0..frames-1). The server starts holding the first
  # `frames / 2`; the client owns the rest and gives one in each `fetch`.
  # 0: the server default (`ServerInfo.defaultFrames`).

  smallSlots @3 :UInt32 = 0;
  # Number of small slots (numbered 0..smallSlots-1). 0: server default.
}

enum FilterMode {
  exclusive @0;
  # Each matching frame goes to this filter only (the most specific of the
  # installed exclusive filters wins; ties go to the one installed first).
  monitor @1;
  # A copy of every frame that matches, beside whatever exclusive filter gets
  # it. Needs operator authority.
}

interface Fetch {
  # The fetch capability: bound to one installed filter and its 64-bit tag.

  tag @0 () -> (tag :UInt64);
  # The filter's tag: epoch in the high 16 bits, a counter below; never 0,
  # never reused within a run of the server.

  fetch @1 (smallSlot :UInt32, page :UInt32) -> (result :Fetched);
  # Frantz's fetch: take the next frame, if any. A frame of at most
  # `ServerInfo.smallThreshold` bytes is copied into `smallSlot`; a larger
  # one is delivered in a page frame the server held, and `page` (a frame the
  # client owns) becomes the server's in exchange. If the next frame is
  # small, or nothing is waiting, `page` stays the client's.
  # Errors: `smallSlot` out of range; `page` out of range or not the
  # client's (the server keeps its own ownership table).

  fetchBatch @2 (max :UInt32, smallSlots :List(UInt32), pages :List(UInt32))
      -> (results :List(Fetched));
  # Up to `max` frames in one call. Small frames use `smallSlots` in order,
  # large ones consume `pages` in order; the batch stops early when either
  # list runs out or nothing more is waiting (no `empty` entries).

  stats @3 () -> (stats :FilterStats);
  # This filter's counters.

  close @4 () -> ();
  # Removes the filter now; frames still queued are dropped (reason
  # `closed`). Later calls on this capability fail.

  attachRegion @5 (ringEntries :UInt32, smallSlots :UInt32, frames :UInt32)
      -> (token :Data, sidePath :Text, limits :RegionLimits);
  # Shared mode: asks to attach an exchange region of the given geometry.
  # The client then connects to the Unix socket at `sidePath`, sends `token`
  # and, with SCM_RIGHTS, its sealed memfd and two eventfds (see the exchange
  # crate's documentation for the layout). The token works once, for 30 s;
  # the side socket has the client socket's permissions, and the token is its
  # only authority. The region's geometry must be exactly: rx, tx and
  # completion rings of `ringEntries` entries, a fill ring of
  # max(ringEntries, frames rounded up to a power of two) entries, `smallSlots` small slots of
  # `limits.smallSlotSize` bytes, `frames` frames of `limits.frameSize`
  # bytes. The server answers on the side socket with one line, `ok` or
  # `error: WHY`. From then on the filter's packets arrive on the rx ring
  # (`fetch`/`fetchBatch` are refused) and the frames the client posts on the
  # fill ring are the pages it gives. A region that breaks the protocol
  # too often is revoked: every later call fails with the reason.
}

struct RegionLimits {
  maxRingEntries @0 :UInt32;
  maxSmallSlots @1 :UInt32;
  maxFrames @2 :UInt32;
  frameSize @3 :UInt32;
  smallSlotSize @4 :UInt32;
}

struct Fetched {
  # Where a fetched frame is.
  union {
    empty @0 :Void;
    # Nothing was waiting.
    small :group {
      slot @1 :UInt32;
      # The small slot the frame was copied into (the one the client named).
      length @2 :UInt32;
      # Captured bytes in the slot.
    }
    large :group {
      frame @3 :UInt32;
      # The page frame that now holds the frame and is now the client's.
      length @4 :UInt32;
      # Captured bytes in the frame.
    }
  }
  wireLength @5 :UInt32;
  # The frame's length on the wire (≥ length when the capture was cut short).
  timestampNs @6 :UInt64;
  # When the server received it, nanoseconds since the Unix epoch.
  data @7 :Data;
  # Emulated mode: the bytes of the slot or frame. Empty in shared mode.
}

struct FilterStats {
  tag @0 :UInt64;
  expression @1 :Text;
  mode @2 :FilterMode;
  packets @3 :UInt64;
  # Frames delivered to the client (small + large).
  bytes @4 :UInt64;
  # Captured bytes delivered.
  small @5 :UInt64;
  # Frames delivered by copy into a small slot.
  large @6 :UInt64;
  # Frames delivered in a page frame (exchange).
  zeroCopy @7 :UInt64;
  # Large frames written once, straight into the client's frame.
  copied @8 :UInt64;
  # Large frames read into a server frame first and copied once.
  queued @9 :UInt64;
  # Frames waiting in the filter's queue now.
  overflow @10 :UInt64;
  # Frames waiting in the server's overflow pool for this filter now.
  dropped @11 :UInt64;
  # Frames that matched this filter and were dropped (all reasons).
  drops @12 :List(DropCount);
  # `dropped`, by reason.
  refused @13 :UInt64;
  # Client requests refused (bad page or slot index, ring misuse), including
  # every protocol violation in an attached exchange region.
  violations @14 :List(DropCount);
  # Shared mode: the region's protocol violations by kind (`reason` is the
  # exchange crate's violation name), all counted in `refused` too.
  revoked @15 :Text;
  # Shared mode: empty while the capability works; otherwise why the server
  # revoked it (too many protocol violations in the exchange region).
  shared @16 :Bool;
  # Whether an exchange region is attached (shared mode).
}

struct DropCount {
  reason @0 :Text;
  # `queue_full` (queue and overflow pool both full), `closed` (filter removed
  # with frames queued), `no_filter` (no filter claimed the frame),
  # `firewall` (an operator rule dropped it), `no_frame` (shared mode: the
  # client posted no free frame), `overloaded` (shared mode: the client fell
  # behind for longer than a burst — the overflow pool could not take one of
  # its frames, or it spilled its share of the pool within a second — so for
  # a cool-down of 1 s its frames are not spilled and are dropped when its rx
  # ring and its own free frames are full).
  count @1 :UInt64;
}

struct ServerInfo {
  version @0 :Text;
  epoch @1 :UInt16;
  # High 16 bits of every tag this run issues.
  backend @2 :Text;
  # `emulated`, `pcap:FILE`, `af_packet:IFACE`, `tap:NAME`, …
  smallThreshold @3 :UInt32;
  # Frames of at most this many bytes go to small slots.
  frameSize @4 :UInt32;
  # Bytes in a page frame.
  queueLimit @5 :UInt32;
  # Default per-filter queue limit.
  defaultFrames @6 :UInt32;
  defaultSmallSlots @7 :UInt32;
  sharedMode @8 :Bool;
  # Whether `attachRegion` is offered.
}

# ---------------------------------------------------------------------------
# Operator
# ---------------------------------------------------------------------------

interface Operator {
  # The bootstrap capability of the owner-only operator socket.

  inject @0 (frames :List(InjectedFrame)) -> (accepted :UInt32);
  # Emulated backend: pushes frames into the emulated NIC, in order, as if
  # received. Fails on other backends.

  listFilters @1 () -> (filters :List(FilterStats));
  # Every installed filter with its counters.

  stats @2 () -> (stats :GlobalStats);
  # Server-wide counters; the accounting identity holds in every snapshot.

  shutdown @3 () -> ();
  # Stops the server after replying.

  installFilter @4 (expression :Text, options :FilterOptions) -> (fetch :Fetch);
  # Like `NetServer.installFilter`, and monitor mode is allowed; the
  # operator's filters may overlap any client's.

  filterStats @5 (tag :UInt64) -> (stats :FilterStats);
  # One filter's counters by tag. A tag from an earlier run of the server
  # fails with "stale: the server restarted".

  removeFilter @6 (tag :UInt64) -> ();
  # Removes a filter by tag (same errors as `filterStats`).

  addRule @7 (action :RuleAction, expression :Text) -> (id :UInt32);
  # Adds a firewall rule (pcap-filter expression). Rules run on every
  # received frame before any dispatch (destination-MAC fast path, control
  # plane, filters, zero-copy placement), in the order added; every
  # matching rule counts the frame and the first matching `drop` drops it
  # (counted as drop reason `firewall`).

  removeRule @8 (id :UInt32) -> ();

  rules @9 () -> (rules :List(RuleStats));
  # Every rule with its counters.

  hostStats @10 () -> (stats :HostStats);
  # The control plane: identity, bindings, transmit and fast-path counters.

  transmitted @11 (max :UInt32) -> (frames :List(Data));
  # Emulated backend: takes up to `max` frames the server sent on the
  # emulated wire (replies, probes, client sends), oldest first.
}

enum RuleAction {
  drop @0;
  count @1;
}

struct RuleStats {
  id @0 :UInt32;
  action @1 :RuleAction;
  expression @2 :Text;
  packets @3 :UInt64;
  bytes @4 :UInt64;
}

struct HostStats {
  configured @0 :Bool;
  # Whether the server is a host (`serve --ip`); the rest is empty if not.
  mac @1 :Data;
  ip @2 :Data;
  prefixLength @3 :UInt8;
  controlReplies @4 :UInt64;
  # Replies the control plane sent (ARP, xarp, ICMP echo).
  macFastPath @5 :UInt64;
  # Frames dispatched by destination MAC alone (application MACs).
  txSent @6 :UInt64;
  # Client frames sent after the anti-spoofing check.
  txRefused @7 :List(DropCount);
  # Client frames refused, by reason (`wrong_source_mac`, …).
  txErrors @8 :UInt64;
  # Frames the backend failed to send (including backends that cannot send).
  hostSent @9 :UInt64;
  # Frames the control plane originated (probes, announcements, ARP requests).
  bindings @10 :List(BindingInfo);
  neighbours @11 :UInt32;
  # Entries in the ARP cache.
  txRing @12 :UInt64;
  # Client frames taken from shared-mode tx rings (each one completed:
  # sent, refused or failed; refusals are also in `txRefused`).
  txCopied @13 :UInt64;
  # Tx-ring frames sent from a server copy of the client's page (not zero copy).
}

struct InjectedFrame {
  data @0 :Data;
  wireLength @1 :UInt32;
  # 0: the same as the data length.
}

struct GlobalStats {
  received @0 :UInt64;
  # Frames the backend produced.
  deliveredSmall @1 :UInt64;
  deliveredLarge @2 :UInt64;
  control @3 :UInt64;
  # Frames the server kept for its own control plane (ARP, ICMP, …).
  queued @4 :UInt64;
  # Frames waiting in filters' queues now.
  overflow @5 :UInt64;
  # Frames waiting in the overflow pool now.
  dropped @6 :UInt64;
  # Frames dropped, all reasons (see `drops`).
  drops @7 :List(DropCount);
  # received = deliveredSmall + deliveredLarge + control + queued + overflow + dropped
  filters @8 :UInt32;
  # Filters installed now.
  epoch @9 :UInt16;
  uptimeNs @10 :UInt64;
}
