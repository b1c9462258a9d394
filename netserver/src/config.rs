//! What a server runs with: sizes, limits, backend.

use std::path::PathBuf;

use crate::backend::BackendSpec;

/// The server's configuration (`netserver serve` flags).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Client socket; the operator socket is this plus `.operator`.
    pub socket: PathBuf,
    pub backend: BackendSpec,
    /// pcap replay: frames per second (`None`: as fast as taken).
    pub rate: Option<f64>,
    /// pcap replay: start over at the end.
    pub repeat: bool,
    /// Frames of at most this many bytes go to small slots.
    pub small_threshold: u32,
    /// Bytes in a page frame (and the longest frame kept; longer ones are cut).
    pub frame_size: u32,
    /// Default per-filter queue limit.
    pub queue_limit: u32,
    /// Frames the server's overflow pool holds at most, all filters together.
    pub overflow_limit: u32,
    /// Default frames in a filter's frame space.
    pub default_frames: u32,
    /// Default small slots of a filter.
    pub default_small_slots: u32,
    /// Most frames a filter may ask for.
    pub max_frames: u32,
    /// Most small slots a filter may ask for.
    pub max_small_slots: u32,
    /// Highest per-filter queue limit a filter may ask for.
    pub max_queue_limit: u32,
    /// Most filters installed at once.
    pub max_filters: u32,
    /// Frames in the backend's receive ring.
    pub rx_ring: u32,
    /// The CPU the data-path thread is pinned to (`None`: the scheduler's
    /// choice).
    pub datapath_cpu: Option<usize>,
    /// af_packet: the zero-copy receive drains with the batched receive
    /// after this many frames in a row were already queued when peeked (and
    /// the socket holds `backlog_bytes`); 0: never. See
    /// [`crate::backend::af_packet`].
    pub backlog_frames: u32,
    /// af_packet: receive memory (bytes) the socket must hold for that switch.
    pub backlog_bytes: u32,
    /// Shared mode: protocol violations after which an exchange region (and
    /// its fetch capability) is revoked.
    pub revoke_after: u64,
    /// The host's identity on the link (`--ip`, `--mac`), if it is a host.
    pub host: Option<HostIdentity>,
}

/// `serve --ip A.B.C.D/LEN [--mac M]`: the server as a host on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostIdentity {
    pub ip: std::net::Ipv4Addr,
    pub prefix_len: u8,
    /// The canonical MAC; `None`: the interface's (af_packet), else random.
    pub mac: Option<crate::host::MacAddr>,
    /// Seeds the draw of application MACs (tests make collisions
    /// deterministic with it); `None`: from the OS.
    pub mac_seed: Option<u64>,
}

impl HostIdentity {
    /// Parses `A.B.C.D/LEN` (the prefix length is required).
    pub fn parse_ip(s: &str) -> Result<(std::net::Ipv4Addr, u8), String> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected A.B.C.D/LEN, e.g. 10.0.0.1/24"))?;
        let ip = ip
            .parse()
            .map_err(|e| format!("{s:?}: bad IPv4 address: {e}"))?;
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| (1..=32).contains(l))
            .ok_or_else(|| format!("{s:?}: the prefix length must be 1..=32"))?;
        Ok((ip, len))
    }

    /// Parses a MAC `aa:bb:cc:dd:ee:ff` (unicast).
    pub fn parse_mac(s: &str) -> Result<crate::host::MacAddr, String> {
        let mut octets = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for o in &mut octets {
            *o = parts
                .next()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| format!("{s:?}: expected a MAC like 02:00:00:00:00:01"))?;
        }
        if parts.next().is_some() {
            return Err(format!("{s:?}: expected six octets"));
        }
        if octets[0] & 1 != 0 {
            return Err(format!("{s:?}: a group (multicast) MAC cannot be a host's"));
        }
        Ok(crate::host::MacAddr(octets))
    }
}

impl Config {
    /// Defaults for a server on `socket`.
    pub fn new(socket: PathBuf) -> Config {
        Config {
            socket,
            backend: BackendSpec::Emulated,
            rate: None,
            repeat: false,
            small_threshold: 128,
            frame_size: 4096,
            queue_limit: 256,
            overflow_limit: 1024,
            default_frames: 64,
            default_small_slots: 64,
            max_frames: 4096,
            max_small_slots: 65_536,
            max_queue_limit: 65_536,
            max_filters: 1024,
            rx_ring: 1024,
            datapath_cpu: None,
            backlog_frames: crate::backend::af_packet::DEFAULT_BACKLOG_FRAMES,
            backlog_bytes: crate::backend::af_packet::DEFAULT_BACKLOG_BYTES,
            host: None,
            revoke_after: 1024,
        }
    }

    /// The side socket where shared-mode clients pass their region.
    pub fn attach_socket(&self) -> PathBuf {
        let mut s = self.socket.clone().into_os_string();
        s.push(".attach");
        s.into()
    }

    /// Bytes in a region's small slot: the small threshold, rounded up to
    /// the exchange's 64-byte slot granule.
    pub fn small_slot_size(&self) -> u32 {
        self.small_threshold
            .div_ceil(exchange::layout::MIN_SMALL_SLOT_SIZE)
            .max(1)
            * exchange::layout::MIN_SMALL_SLOT_SIZE
    }

    /// Whether this server's sizes fit an exchange region (shared mode):
    /// its frame size is a region frame size (a power of two, 2048..=65536)
    /// and a small frame fits a region slot.
    pub fn shared_mode(&self) -> bool {
        let limits = exchange::Limits::default();
        self.frame_size.is_power_of_two()
            && (exchange::layout::MIN_FRAME_SIZE..=limits.max_frame_size).contains(&self.frame_size)
            && self.small_slot_size() <= limits.max_small_slot_size
    }

    /// The limits a client's region must respect.
    pub fn region_limits(&self) -> exchange::Limits {
        let d = exchange::Limits::default();
        exchange::Limits {
            max_frames: self.max_frames.min(d.max_frames),
            max_frame_size: self.frame_size,
            max_small_slot_size: self.small_slot_size(),
            ..d
        }
    }

    /// The operator socket's path.
    pub fn operator_socket(&self) -> PathBuf {
        let mut s = self.socket.clone().into_os_string();
        s.push(netserver_schema::OPERATOR_SOCKET_SUFFIX);
        s.into()
    }

    /// Checks the sizes fit together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |flag: &'static str, message: String| Err(ConfigError { flag, message });
        if self.frame_size < 64 || self.frame_size > 1 << 20 {
            return bad(
                "--frame-size",
                format!("{} is not within 64..=1048576 bytes", self.frame_size),
            );
        }
        if self.small_threshold == 0 || self.small_threshold >= self.frame_size {
            return bad(
                "--small-threshold",
                format!(
                    "{} must be at least 1 and below the frame size ({})",
                    self.small_threshold, self.frame_size
                ),
            );
        }
        for (flag, v) in [
            ("--queue-limit", self.queue_limit),
            ("--overflow-limit", self.overflow_limit),
            ("--rx-ring", self.rx_ring),
            ("--max-filters", self.max_filters),
            ("--default-small-slots", self.default_small_slots),
        ] {
            if v == 0 {
                return bad(flag, "must be at least 1".into());
            }
        }
        if self.default_frames < 2 || self.default_frames > self.max_frames {
            return bad(
                "--default-frames",
                format!(
                    "{} is not within 2..={} (--max-frames)",
                    self.default_frames, self.max_frames
                ),
            );
        }
        if self.queue_limit > self.max_queue_limit {
            return bad(
                "--queue-limit",
                format!("{} exceeds {}", self.queue_limit, self.max_queue_limit),
            );
        }
        if let Some(r) = self.rate {
            if !(r > 0.0 && r.is_finite()) {
                return bad(
                    "--rate",
                    format!("{r} is not a positive number of frames per second"),
                );
            }
        }
        Ok(())
    }
}

/// A flag value the server cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag}: {message}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_operator_socket_is_beside() {
        let c = Config::new("/tmp/x.sock".into());
        c.validate().unwrap();
        assert_eq!(c.operator_socket(), PathBuf::from("/tmp/x.sock.operator"));
    }

    #[test]
    fn threshold_must_be_below_frame_size() {
        let mut c = Config::new("/tmp/x.sock".into());
        c.small_threshold = 4096;
        let e = c.validate().unwrap_err();
        assert_eq!(e.flag, "--small-threshold");
    }
}
