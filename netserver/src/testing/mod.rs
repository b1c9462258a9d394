//! Support for tests: a started `netserver serve` process, network
//! namespaces and veth pairs. Not part of the server; public so that the
//! workspace's end-to-end tests can use it too.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

pub mod netns;

/// Why a started `netserver serve` process is not serving.
#[derive(Debug, thiserror::Error)]
pub enum NotServing {
    /// It exited during startup (a bad option, a missing interface, …).
    #[error("netserver exited during startup ({0})")]
    Exited(ExitStatus),
    /// Its sockets did not accept a connection in time.
    #[error("netserver did not accept connections on {} and {} within {patience:?}", .socket.display(), .operator.display())]
    TimedOut {
        /// The client socket.
        socket: PathBuf,
        /// The operator socket.
        operator: PathBuf,
        /// How long it was given.
        patience: Duration,
    },
}

/// Waits until the `netserver serve` process `child` accepts connections on
/// both of its sockets, `socket` and `socket.operator`, or says why not.
/// (A socket path appears only once it listens, so accepting is the test;
/// an exit is noticed at once instead of after `patience`.)
pub fn wait_serving(
    child: &mut Child,
    socket: &Path,
    patience: Duration,
) -> Result<(), NotServing> {
    let operator = PathBuf::from(format!("{}.operator", socket.display()));
    let start = Instant::now();
    loop {
        let accepts = |p: &Path| std::os::unix::net::UnixStream::connect(p).is_ok();
        if accepts(socket) && accepts(&operator) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(NotServing::Exited(status));
        }
        if start.elapsed() > patience {
            return Err(NotServing::TimedOut {
                socket: socket.to_path_buf(),
                operator,
                patience,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
