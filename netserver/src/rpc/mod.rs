//! The Cap'n Proto capabilities: thin wrappers that decode a request, call
//! the control plane and encode the answer. Errors a client caused come back
//! as `capnp::Error::failed` with the error's message, which says what was
//! wrong and what to do.

pub mod bind;
mod fetch;
mod firewall;
mod netserver;
mod operator;

use std::rc::Rc;

use capnp::capability::Rc as CapRc;
use netserver_schema::netserver_capnp as schema;

use crate::control::{ControlPlane, InstallOptions, Installed};
use crate::exchange::{Fetched, Location};
use crate::filter::{Filter, Mode};
use crate::stats::Snapshot;

pub use fetch::FetchImpl;
pub use netserver::NetServerImpl;
pub use operator::OperatorImpl;

/// Limits for reading messages from untrusted clients.
pub fn reader_options() -> capnp::message::ReaderOptions {
    let mut o = capnp::message::ReaderOptions::new();
    // 32 MiB of words per message: an `inject` of a few thousand full-size
    // frames fits; a client cannot make the server traverse more.
    o.traversal_limit_in_words(Some(4 * 1024 * 1024));
    o.nesting_limit(16);
    o
}

/// A client-caused error as an RPC error.
pub(crate) fn failed(e: impl std::fmt::Display) -> capnp::Error {
    capnp::Error::failed(e.to_string())
}

pub(crate) fn install_options(
    r: schema::filter_options::Reader<'_>,
) -> capnp::Result<InstallOptions> {
    let mode = match r.get_mode() {
        Ok(schema::FilterMode::Exclusive) => Mode::Exclusive,
        Ok(schema::FilterMode::Monitor) => Mode::Monitor,
        Err(capnp::NotInSchema(n)) => {
            return Err(failed(format_args!(
                "FilterOptions.mode {n} is not a mode this server knows (exclusive, monitor)"
            )))
        }
    };
    Ok(InstallOptions {
        mode,
        queue_limit: r.get_queue_limit(),
        frames: r.get_frames(),
        small_slots: r.get_small_slots(),
    })
}

/// Shared by `NetServer.installFilter` and `Operator.installFilter`.
pub(crate) fn install(
    cp: &Rc<ControlPlane>,
    expression: capnp::text::Reader<'_>,
    options: Option<schema::filter_options::Reader<'_>>,
    authority: crate::control::Authority,
) -> capnp::Result<schema::fetch::Client> {
    let expression = expression
        .to_str()
        .map_err(|_| failed("the filter expression is not valid UTF-8"))?;
    let options = match options {
        Some(o) => install_options(o)?,
        None => InstallOptions::default(),
    };
    let installed = cp.install(expression, options, authority).map_err(failed)?;
    Ok(capnp_rpc::new_client(FetchImpl::new(cp.clone(), installed)))
}

pub(crate) fn fill_fetched(mut b: schema::fetched::Builder<'_>, f: &Fetched<'_>) {
    match f.location {
        Location::Small { slot } => {
            let mut s = b.reborrow().init_small();
            s.set_slot(slot);
            s.set_length(f.len);
        }
        Location::Large { frame } => {
            let mut l = b.reborrow().init_large();
            l.set_frame(frame);
            l.set_length(f.len);
        }
    }
    b.set_wire_length(f.wire_len);
    b.set_timestamp_ns(f.ts_ns);
    b.set_data(f.data);
}

fn fill_drops(mut list: capnp::struct_list::Builder<'_, schema::drop_count::Owned>, s: &Snapshot) {
    for (i, (reason, count)) in s.drops_by_reason().enumerate() {
        let mut d = list.reborrow().get(i as u32);
        d.set_reason(reason.name());
        d.set_count(count);
    }
}

pub(crate) fn fill_filter_stats(mut b: schema::filter_stats::Builder<'_>, f: &Filter) {
    let s = f.counters.snapshot();
    b.set_tag(f.tag);
    b.set_expression(f.expression.as_str());
    b.set_mode(match f.mode {
        Mode::Exclusive => schema::FilterMode::Exclusive,
        Mode::Monitor => schema::FilterMode::Monitor,
    });
    b.set_packets(s.delivered());
    b.set_bytes(s.bytes);
    b.set_small(s.delivered_small);
    b.set_large(s.delivered_large);
    b.set_zero_copy(s.zero_copy);
    b.set_copied(s.copied);
    b.set_queued(s.queued);
    b.set_overflow(s.overflow);
    b.set_dropped(s.dropped());
    b.set_refused(s.refused);
    b.set_shared(f.transport() == crate::filter::Transport::Shared);
    b.set_revoked(f.revoked().unwrap_or(""));
    let violations = f.violations();
    let mut list = b.reborrow().init_violations(violations.len() as u32);
    for (i, (kind, count)) in violations.into_iter().enumerate() {
        let mut d = list.reborrow().get(i as u32);
        d.set_reason(kind);
        d.set_count(count);
    }
    let n = s.drops_by_reason().count() as u32;
    fill_drops(b.init_drops(n), &s);
}

pub(crate) fn fill_installed_stats(b: schema::filter_stats::Builder<'_>, i: &Installed) {
    fill_filter_stats(b, &i.filter());
}

pub(crate) fn fill_global_stats(mut b: schema::global_stats::Builder<'_>, cp: &ControlPlane) {
    let s = cp.snapshot();
    b.set_received(s.received);
    b.set_delivered_small(s.delivered_small);
    b.set_delivered_large(s.delivered_large);
    b.set_control(s.control);
    b.set_queued(s.queued);
    b.set_overflow(s.overflow);
    b.set_dropped(s.dropped());
    b.set_filters(cp.filter_count() as u32);
    b.set_epoch(cp.epoch());
    b.set_uptime_ns(cp.uptime_ns());
    let n = s.drops_by_reason().count() as u32;
    fill_drops(b.init_drops(n), &s);
}

pub(crate) fn fill_info(mut b: schema::server_info::Builder<'_>, cp: &ControlPlane) {
    let c = &cp.config;
    b.set_version(env!("CARGO_PKG_VERSION"));
    b.set_epoch(cp.epoch());
    b.set_backend(cp.backend());
    b.set_small_threshold(c.small_threshold);
    b.set_frame_size(c.frame_size);
    b.set_queue_limit(c.queue_limit);
    b.set_default_frames(c.default_frames);
    b.set_default_small_slots(c.default_small_slots);
    b.set_shared_mode(cp.shared_mode());
}

/// Keeps `CapRc` in scope for the submodules' method signatures.
pub(crate) type This<T> = CapRc<T>;
