//! Real-mode test scaffolding: uniquely named network namespaces joined by a
//! veth pair, made with iproute2 and removed on drop (also when the test
//! panics), so real-mode tests never touch the host's interfaces.
//!
//! ```text
//!  netns <tag>-s-<pid>-<n>            netns <tag>-p-<pid>-<n>
//!  ┌────────────────────┐             ┌────────────────────┐
//!  │ server  (af_packet)│── veth ─────│ peer  (tcpreplay)  │
//!  │ iface SERVER_IF    │             │ iface PEER_IF      │
//!  └────────────────────┘             └────────────────────┘
//! ```
//!
//! Tests call [`real_mode_or_skip`] first: it prints why the test cannot run
//! here (not root, no `ip`, namespaces refused, a tool missing) and returns
//! `None`, except under `CI=true`, where it panics instead — CI installs
//! everything, so a skip there would hide a failure.

use std::io;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The server-side interface inside [`VethLab::server`].
pub const SERVER_IF: &str = "nsv0";
/// The peer-side interface inside [`VethLab::peer`].
pub const PEER_IF: &str = "nsv1";

/// True when running under CI (`CI=true`), where real-mode tests must run.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn run(cmd: &mut Command) -> io::Result<Output> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn have_tool(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        || Path::new("/usr/sbin").join(tool).is_file()
        || Path::new("/sbin").join(tool).is_file()
}

/// Why real-mode tests cannot run here, or `None` when they can: root, the
/// `ip` tool and the other `tools`, and permission to create a namespace.
pub fn unavailable_because(tools: &[&str]) -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not running as root (real-mode tests create network namespaces)".into());
    }
    for tool in std::iter::once(&"ip").chain(tools) {
        if !have_tool(tool) {
            return Some(format!(
                "`{tool}` is not installed (Debian: apt-get install iproute2 tcpreplay)"
            ));
        }
    }
    match Netns::new("probe") {
        Ok(ns) => {
            drop(ns);
            None
        }
        Err(e) => Some(format!("cannot create a network namespace: {e}")),
    }
}

/// Builds a [`VethLab`] for test `test`, or prints why it skips and returns
/// `None`. Under `CI=true` a reason to skip is a failure: it panics.
pub fn real_mode_or_skip(test: &str, tools: &[&str], mtu: u32) -> Option<VethLab> {
    let lab = match unavailable_because(tools) {
        None => VethLab::new(test, mtu).map_err(|e| format!("cannot build the veth lab: {e}")),
        Some(reason) => Err(reason),
    };
    match lab {
        Ok(lab) => Some(lab),
        Err(reason) if in_ci() => {
            panic!("{test}: real-mode test cannot run under CI=true: {reason}")
        }
        Err(reason) => {
            // Straight to the process's stderr: the test harness captures
            // `eprintln!` of passing tests, and a skip must be seen.
            use std::io::Write;
            let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {reason}");
            None
        }
    }
}

/// A network namespace made with `ip netns add`, deleted on drop after the
/// processes left inside it are killed.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `<tag>-<pid>-<n>` (unique in this host) with
    /// loopback up and IPv6 off, so the kernel sends nothing on its own
    /// (no DAD, no router or MLD solicitations) and tests see only their
    /// traffic.
    pub fn new(tag: &str) -> io::Result<Netns> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let tag: String = tag
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(24)
            .collect();
        let name = format!(
            "{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        Ok(ns)
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.run(move || std::fs::write(path, value))
    }

    /// Runs `ip -n NAME args…`.
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args)).map(drop)
    }

    /// Waits until interface `ifname` in this namespace is up and can
    /// send: its operational state is `UP` and its queueing discipline is
    /// no longer `noop`. After `ip link set up` the kernel attaches the
    /// real one asynchronously (linkwatch); until then, frames sent
    /// through it are silently dropped.
    pub fn wait_link_up(&self, ifname: &str, patience: std::time::Duration) -> io::Result<()> {
        let start = std::time::Instant::now();
        loop {
            let out = run(Command::new("ip")
                .arg("-n")
                .arg(&self.name)
                .args(["-o", "link", "show", "dev", ifname]))?;
            let line = String::from_utf8_lossy(&out.stdout);
            if line.contains("state UP") && !line.contains("qdisc noop") {
                return Ok(());
            }
            if start.elapsed() > patience {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{ifname} in {} not up after {patience:?}: {}",
                        self.name,
                        line.trim()
                    ),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// A command that runs `program` inside the namespace
    /// (`ip netns exec NAME program`); add arguments and spawn it.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `f` on a thread inside the namespace and returns its result.
    /// Sockets it opens stay in the namespace after it returns, whichever
    /// thread uses them.
    ///
    /// # Panics
    /// If `f` panics (the panic is forwarded), or the namespace cannot be
    /// entered.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                crate::sys::netns::enter(&self.name)
                    .unwrap_or_else(|e| panic!("cannot enter netns {}: {e}", self.name));
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Spawns a long-lived thread inside the namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let name = self.name.clone();
        std::thread::spawn(move || {
            crate::sys::netns::enter(&name)
                .unwrap_or_else(|e| panic!("cannot enter netns {name}: {e}"));
            f()
        })
    }

    fn pids(&self) -> Vec<i32> {
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .stderr(Stdio::null())
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes a test started in the namespace (servers, tcpreplay)
        // would keep it alive; they are the test's own, found by namespace.
        for pid in self.pids() {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!(
                "warning: could not delete network namespace {}: {e}",
                self.name
            );
        }
    }
}

/// Two namespaces joined by a veth pair: [`SERVER_IF`] in `server`,
/// [`PEER_IF`] in `peer`, both up, with the given MTU.
#[derive(Debug)]
pub struct VethLab {
    /// Where the server under test runs.
    pub server: Netns,
    /// Where traffic comes from (tcpreplay, a sender).
    pub peer: Netns,
}

impl VethLab {
    /// Builds the lab; everything is removed when it drops.
    pub fn new(tag: &str, mtu: u32) -> io::Result<VethLab> {
        let server = Netns::new(&format!("{tag}-s"))?;
        let peer = Netns::new(&format!("{tag}-p"))?;
        let mtu = mtu.to_string();
        run(Command::new("ip").args([
            "link",
            "add",
            SERVER_IF,
            "netns",
            server.name(),
            "mtu",
            &mtu,
            "type",
            "veth",
            "peer",
            "name",
            PEER_IF,
            "netns",
            peer.name(),
            "mtu",
            &mtu,
        ]))?;
        server.ip(&["link", "set", SERVER_IF, "up"])?;
        peer.ip(&["link", "set", PEER_IF, "up"])?;
        let patience = std::time::Duration::from_secs(10);
        server.wait_link_up(SERVER_IF, patience)?;
        peer.wait_link_up(PEER_IF, patience)?;
        Ok(VethLab { server, peer })
    }

    /// Replays `pcap` out of the peer interface with tcpreplay, as fast as
    /// it can, and waits for it to finish.
    pub fn replay(&self, pcap: &Path, extra: &[&str]) -> io::Result<String> {
        let out = run(self
            .peer
            .command("tcpreplay")
            .arg(format!("--intf1={PEER_IF}"))
            .args(extra)
            .arg(pcap))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
