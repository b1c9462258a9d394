//! Pinning threads to CPUs (`sched_setaffinity`), as DPDK and AF_XDP
//! applications pin their polling threads: a data path that the scheduler
//! moves onto its clients' core shares that core with them.

use std::io;

use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

/// Pins the calling thread to `cpu`. Fails with `InvalidInput` when `cpu`
/// is not one this process may run on.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    check_allowed(cpu)?;
    let mut set = CpuSet::new();
    set.set(cpu);
    sched_setaffinity(None, &set).map_err(io::Error::from)
}

/// `Ok` if the calling thread may run on `cpu`; `InvalidInput` naming the
/// CPUs it may run on otherwise.
pub fn check_allowed(cpu: usize) -> io::Result<()> {
    let allowed = allowed_cpus()?;
    if allowed.contains(&cpu) {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("CPU {cpu} is not one this process may run on (allowed: {allowed:?})"),
    ))
}

/// The CPUs the calling thread may run on, in order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let set = sched_getaffinity(None).map_err(io::Error::from)?;
    Ok((0..CpuSet::MAX_CPU)
        .filter(|&cpu| set.is_set(cpu))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_pins_to_an_allowed_cpu_and_refuses_another() {
        let allowed = allowed_cpus().unwrap();
        let last = *allowed.last().expect("at least one CPU");
        std::thread::spawn(move || {
            pin_current_thread(last).unwrap();
            assert_eq!(allowed_cpus().unwrap(), [last]);
            let err = pin_current_thread(CpuSet::MAX_CPU - 1).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("may run on"), "{err}");
        })
        .join()
        .unwrap();
    }
}
