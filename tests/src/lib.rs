//! Helpers shared by the end-to-end tests: start a real `netserver` process
//! on a private socket, run `nsctl` processes against it, read the bundled
//! captures and libpcap's verdicts on them.
//!
//! The binaries are found beside the test executable
//! (`target/<profile>/netserver`, `target/<profile>/nsctl`); `cargo test
//! --workspace` builds them. Everything started here is killed on drop.

#![deny(unsafe_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use netclient::capture::CapturedFrame;

/// How clients exchange frames with the server. The same test bodies run in
/// every mode; the NIC is the emulated one in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Frame bytes travel in the RPC replies.
    Emulated,
    /// Each client attaches an exchange region (shared memory, rings).
    Shared,
}

impl Mode {
    /// Extra `netserver serve` arguments for this mode.
    pub fn server_args(self) -> Vec<String> {
        vec!["--backend".into(), "emulated".into()]
    }

    /// `--mode` of `nsctl install` and the test clients.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Emulated => "emulated",
            Mode::Shared => "shared",
        }
    }

    /// Extra `nsctl install` arguments for this mode.
    pub fn install_args(self) -> Vec<String> {
        vec!["--mode".into(), self.name().into()]
    }

    /// Library install options for this mode.
    pub fn options(self) -> netclient::InstallOptions {
        netclient::InstallOptions::default().shared(self == Mode::Shared)
    }
}

/// How long to wait for anything a healthy system does in well under a
/// second (generous: debug builds on a loaded 2-core machine).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Path of a workspace binary built beside the test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the workspace first (`cargo build --workspace`, \
         or run the tests with `cargo test --workspace`)",
        path.display()
    );
    path
}

/// This package's `data/` directory (captures, oracle, licences).
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../filters/tests/data")
}

/// A bundled capture by file name (e.g. `tcpdump-edns-opts.pcap`).
pub fn pcap_path(file: &str) -> PathBuf {
    data_dir().join("pcaps").join(file)
}

/// Every frame of a bundled capture.
pub fn capture(file: &str) -> Vec<CapturedFrame> {
    netclient::capture::read_pcap(&pcap_path(file)).expect("bundled capture reads")
}

fn oracle_table() -> &'static HashMap<(String, String), Vec<bool>> {
    static TABLE: OnceLock<HashMap<(String, String), Vec<bool>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let text = std::fs::read_to_string(data_dir().join("oracle.tsv")).expect("oracle.tsv");
        let mut table = HashMap::new();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() != 4 || !cols[2].chars().all(|c| c.is_ascii_digit()) {
                continue; // REJECTS_ALL rows carry no bitmap
            }
            let file = cols[0].trim_start_matches("pcaps/").to_string();
            let bits = cols[3].chars().map(|c| c == '1').collect();
            table.insert((file, cols[1].to_string()), bits);
        }
        table
    })
}

/// libpcap's verdict per packet of `file` for `expression`.
pub fn oracle(file: &str, expression: &str) -> Vec<bool> {
    oracle_table()
        .get(&(file.to_string(), expression.to_string()))
        .unwrap_or_else(|| panic!("no oracle row for {file} × {expression:?}"))
        .clone()
}

/// The frames of `file` that libpcap says `expression` matches, in order.
pub fn expected(file: &str, expression: &str) -> Vec<CapturedFrame> {
    let frames = capture(file);
    let bits = oracle(file, expression);
    assert_eq!(frames.len(), bits.len(), "oracle bitmap length for {file}");
    frames
        .into_iter()
        .zip(bits)
        .filter_map(|(f, b)| b.then_some(f))
        .collect()
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "ns-e2e-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `netserver serve` process on a private socket, killed on drop.
pub struct Server {
    child: Option<Child>,
    mode: Mode,
    /// Real mode: `ip netns exec NAME` (the server runs in that network
    /// namespace; its sockets are files, visible from outside).
    netns: Option<String>,
    /// `--backend` (default: the mode's, the emulated NIC).
    backend: Option<String>,
    extra: Vec<String>,
    socket: PathBuf,
    log: PathBuf,
    starts: u32,
    dir: TempDir,
}

impl Server {
    /// Starts a server in `mode` and waits until both sockets accept.
    pub fn start(mode: Mode) -> Server {
        Server::start_with(mode, &[])
    }

    /// Like [`Server::start`], with extra `serve` arguments.
    pub fn start_with(mode: Mode, extra: &[&str]) -> Server {
        Server::launch(mode, None, None, extra)
    }

    /// Real mode: a server in network namespace `netns` on the real
    /// interface `iface` (`--backend af_packet:IFACE`), for shared-mode
    /// clients. The server is the namespace's process; the test's clients
    /// reach its sockets through the file system from any namespace.
    pub fn start_af_packet(netns: &str, iface: &str, extra: &[&str]) -> Server {
        Server::launch(
            Mode::Shared,
            Some(netns.to_string()),
            Some(format!("af_packet:{iface}")),
            extra,
        )
    }

    fn launch(
        mode: Mode,
        netns: Option<String>,
        backend: Option<String>,
        extra: &[&str],
    ) -> Server {
        let dir = TempDir::new("server");
        let mut server = Server {
            child: None,
            mode,
            netns,
            backend,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            socket: dir.path().join("ns.sock"),
            log: PathBuf::new(),
            starts: 0,
            dir,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        self.starts += 1;
        self.log = self.dir.path().join(format!("server-{}.log", self.starts));
        let log = std::fs::File::create(&self.log).expect("server log");
        let mut command = match &self.netns {
            // `ip netns exec` execs the program: the child is the server.
            Some(netns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", netns]).arg(binary("netserver"));
                c
            }
            None => Command::new(binary("netserver")),
        };
        command.arg("serve").arg("--socket").arg(&self.socket);
        match &self.backend {
            Some(backend) => command.args(["--backend", backend]),
            None => command.args(self.mode.server_args()),
        };
        command
            .args(&self.extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        let child = command.spawn().expect("spawn netserver");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let child = self.child.as_mut().expect("a started server");
        if let Err(e) = netserver::testing::wait_serving(child, &self.socket, PATIENCE) {
            panic!("{e}; its log:\n{}", self.log_text());
        }
    }

    /// The client socket path (the operator socket is this + ".operator").
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The mode the server runs in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// What the server has logged so far (current run).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the server and starts a new one on the same socket.
    pub fn restart(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(netclient::operator_socket_path(&self.socket));
        self.spawn();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `nsctl ARGS --socket <this server>` to completion.
    pub fn nsctl(&self, args: &[&str]) -> Finished {
        self.spawn_nsctl(args).wait(PATIENCE)
    }

    /// Starts `nsctl ARGS --socket <this server>` in the background.
    pub fn spawn_nsctl(&self, args: &[&str]) -> ClientProcess {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if args.first() == Some(&"install") {
            all.extend(self.mode.install_args());
        }
        all.push("--socket".into());
        all.push(self.socket.display().to_string());
        ClientProcess::spawn(binary("nsctl"), &all)
    }

    /// Starts the `e2e-hold-client` test client: installs `expression` and
    /// holds the capability without ever fetching.
    pub fn spawn_hold_client(&self, expression: &str, queue_limit: u32) -> ClientProcess {
        ClientProcess::spawn(
            binary("e2e-hold-client"),
            &[
                "--socket".into(),
                self.socket.display().to_string(),
                "--expr".into(),
                expression.into(),
                "--queue-limit".into(),
                queue_limit.to_string(),
                "--mode".into(),
                self.mode.name().into(),
            ],
        )
    }

    /// Starts the `e2e-scribbler` test client: installs `expression` in
    /// shared mode, then scribbles over its own rings until revoked.
    pub fn spawn_scribbler(&self, expression: &str) -> ClientProcess {
        ClientProcess::spawn(
            binary("e2e-scribbler"),
            &[
                "--socket".into(),
                self.socket.display().to_string(),
                "--expr".into(),
                expression.into(),
            ],
        )
    }

    /// A fresh file path inside the server's temp dir.
    pub fn temp_file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- netserver log ----\n{}\n---- end ----",
                self.log_text()
            );
        }
    }
}

/// A finished process with its output.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Panics with the output unless the process exited 0.
    pub fn success(self) -> Finished {
        assert!(
            self.status.success(),
            "process failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// The last line of stdout.
    pub fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or("")
    }
}

/// A background process (an `nsctl` client), killed on drop. Its stdout and
/// stderr are collected by threads so it never blocks on a full pipe.
pub struct ClientProcess {
    child: Option<Child>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    stderr_lines: mpsc::Receiver<String>,
    readers: Vec<std::thread::JoinHandle<()>>,
    command: String,
}

impl ClientProcess {
    pub fn spawn(program: PathBuf, args: &[String]) -> ClientProcess {
        let command = format!("{} {}", program.display(), args.join(" "));
        let mut child = Command::new(&program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command}: {e}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, stderr_lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout pipe");
        let out_buf = stdout.clone();
        let t1 = std::thread::spawn(move || {
            // Line by line, so that a test can watch a client's progress.
            let mut out = BufReader::new(out);
            let mut line = String::new();
            while matches!(out.read_line(&mut line), Ok(n) if n > 0) {
                out_buf.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let err = child.stderr.take().expect("stderr pipe");
        let err_buf = stderr.clone();
        let t2 = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                {
                    let mut b = err_buf.lock().unwrap();
                    b.push_str(&line);
                    b.push('\n');
                }
                let _ = tx.send(line);
            }
        });
        ClientProcess {
            child: Some(child),
            stdout,
            stderr,
            stderr_lines,
            readers: vec![t1, t2],
            command,
        }
    }

    /// Waits for a stderr line containing `needle` and returns it.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "`{}` closed stderr (exited?) without printing a line containing {needle:?}; \
                     stderr:\n{}",
                    self.command,
                    self.stderr.lock().unwrap()
                ),
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "`{}` printed no stderr line containing {needle:?} within {timeout:?}; \
                     stderr so far:\n{}",
                    self.command,
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }

    /// Waits for `nsctl install`'s `installed tag=0x…` line; returns the tag.
    pub fn wait_installed(&mut self) -> u64 {
        let line = self.wait_for_stderr("installed tag=", PATIENCE);
        assert!(
            !(self.command.contains("--mode shared") && line.contains("mode=emulated")),
            "asked for shared mode, fell back to emulated: {line}\nstderr:\n{}",
            self.stderr.lock().unwrap()
        );
        let hex = line
            .split("tag=0x")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("unparsable install line {line:?}"));
        u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad tag in {line:?}"))
    }

    /// Waits until the process has printed at least `n` complete lines on
    /// stdout (e.g. `nsctl install` without `--quiet`: one per packet).
    pub fn wait_for_stdout_lines(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.stdout.lock().unwrap().matches('\n').count();
            if seen >= n {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "`{}` printed {seen} of {n} stdout lines within {timeout:?}; \
                     stderr so far:\n{}",
                    self.command,
                    self.stderr.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM (`nsctl install` then prints its summary, finishes its
    /// `--write` file and exits 0); reap it with [`wait`](Self::wait).
    pub fn terminate(&self) {
        if let Some(pid) = self
            .child
            .as_ref()
            .and_then(|c| rustix::process::Pid::from_raw(c.id() as i32))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }

    /// The OS process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the process (SIGKILL: no chance to clean up) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let mut child = self.child.take().expect("process already reaped");
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                for t in self.readers.drain(..) {
                    let _ = t.join();
                }
                panic!(
                    "`{}` did not exit within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                    self.command,
                    self.stdout.lock().unwrap(),
                    self.stderr.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for t in self.readers.drain(..) {
            let _ = t.join();
        }
        let stdout = std::mem::take(&mut *self.stdout.lock().unwrap());
        let stderr = std::mem::take(&mut *self.stderr.lock().unwrap());
        Finished {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `probe` until it returns `Some`, or panics after `timeout` with
/// `what` and the last value seen.
pub fn eventually<T: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: not reached within {timeout:?}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(25)),
        }
    }
}

/// Runs an async block of netclient calls on a fresh current-thread runtime
/// with a `LocalSet` (what capnp-rpc needs).
pub fn run<F: std::future::Future>(future: F) -> F::Output {
    netclient::block_on(future).expect("tokio runtime")
}

/// Parses `packets=N small=S large=L`.
pub fn parse_summary(line: &str) -> Option<(u64, u64, u64)> {
    let mut fields = HashMap::new();
    for part in line.split_whitespace() {
        let (k, v) = part.split_once('=')?;
        fields.insert(k, v.parse::<u64>().ok()?);
    }
    Some((
        *fields.get("packets")?,
        *fields.get("small")?,
        *fields.get("large")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oracle_rows_match_their_captures() {
        let bits = oracle("tcpdump-edns-opts.pcap", "udp dst port 53");
        assert_eq!(bits.len(), capture("tcpdump-edns-opts.pcap").len());
        assert_eq!(bits.iter().filter(|b| **b).count(), 21);
        let e = expected("tcpdump-edns-opts.pcap", "udp dst port 53");
        assert_eq!(e.len(), 21);
    }

    #[test]
    fn summary_line_parses() {
        assert_eq!(parse_summary("packets=3 small=1 large=2"), Some((3, 1, 2)));
        assert_eq!(parse_summary("packets=3 small=1"), None);
        assert_eq!(parse_summary("hello"), None);
    }
}
