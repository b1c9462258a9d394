//! `Fetch`: the capability bound to one installed filter.

use std::rc::Rc;

use netserver_schema::netserver_capnp::fetch;

use super::{failed, fill_fetched, This};
use crate::control::{ControlPlane, Installed};
use crate::exchange::{Fetched, Location};

/// Most frames one `fetchBatch` returns.
pub const MAX_BATCH: u32 = 1024;

/// Serves one filter's `Fetch`. Dropping it (last reference released, or
/// the connection closed) removes the filter.
pub struct FetchImpl {
    cp: Rc<ControlPlane>,
    installed: Rc<Installed>,
}

impl FetchImpl {
    pub fn new(cp: Rc<ControlPlane>, installed: Rc<Installed>) -> FetchImpl {
        FetchImpl { cp, installed }
    }
}

impl Drop for FetchImpl {
    fn drop(&mut self) {
        let tag = self.installed.tag;
        if self.cp.lookup(tag).is_ok() {
            tracing::debug!(
                tag = format_args!("{tag:#018x}"),
                "fetch capability released"
            );
            let _ = self.cp.remove(tag);
        }
    }
}

/// An owned copy of a fetched frame, for building a list after the fact.
struct Owned {
    location: Location,
    len: u32,
    wire_len: u32,
    ts_ns: u64,
    data: Vec<u8>,
}

impl FetchImpl {
    /// A revoked capability fails every call with the reason.
    fn check_revoked(&self) -> capnp::Result<()> {
        match self.installed.filter().revoked() {
            Some(why) => Err(failed(why)),
            None => Ok(()),
        }
    }
}

impl fetch::Server for FetchImpl {
    async fn tag(
        self: This<Self>,
        _: fetch::TagParams,
        mut results: fetch::TagResults,
    ) -> capnp::Result<()> {
        self.check_revoked()?;
        results.get().set_tag(self.installed.tag);
        Ok(())
    }

    async fn fetch(
        self: This<Self>,
        params: fetch::FetchParams,
        mut results: fetch::FetchResults,
    ) -> capnp::Result<()> {
        self.check_revoked()?;
        let p = params.get()?;
        let mut r = results.get().init_result();
        let got = self
            .installed
            .exchange
            .borrow_mut()
            .fetch(p.get_small_slot(), p.get_page(), &mut |f| {
                fill_fetched(r.reborrow(), &f)
            })
            .map_err(failed)?;
        if !got {
            r.set_empty(());
        }
        Ok(())
    }

    async fn fetch_batch(
        self: This<Self>,
        params: fetch::FetchBatchParams,
        mut results: fetch::FetchBatchResults,
    ) -> capnp::Result<()> {
        self.check_revoked()?;
        let p = params.get()?;
        let slots: Vec<u32> = p.get_small_slots()?.iter().collect();
        let pages: Vec<u32> = p.get_pages()?.iter().collect();
        let max = p.get_max().min(MAX_BATCH);
        let mut got: Vec<Owned> = Vec::new();
        self.installed
            .exchange
            .borrow_mut()
            .fetch_batch(max, &slots, &pages, &mut |f| {
                got.push(Owned {
                    location: f.location,
                    len: f.len,
                    wire_len: f.wire_len,
                    ts_ns: f.ts_ns,
                    data: f.data.to_vec(),
                })
            })
            .map_err(failed)?;
        let mut list = results.get().init_results(got.len() as u32);
        for (i, o) in got.iter().enumerate() {
            fill_fetched(
                list.reborrow().get(i as u32),
                &Fetched {
                    location: o.location,
                    len: o.len,
                    wire_len: o.wire_len,
                    ts_ns: o.ts_ns,
                    data: &o.data,
                },
            );
        }
        Ok(())
    }

    async fn stats(
        self: This<Self>,
        _: fetch::StatsParams,
        mut results: fetch::StatsResults,
    ) -> capnp::Result<()> {
        self.check_revoked()?;
        super::fill_installed_stats(results.get().init_stats(), &self.installed);
        Ok(())
    }

    async fn close(
        self: This<Self>,
        _: fetch::CloseParams,
        _: fetch::CloseResults,
    ) -> capnp::Result<()> {
        // Closing twice, or after the operator removed the filter, is fine.
        let _ = self.cp.remove(self.installed.tag);
        Ok(())
    }

    async fn attach_region(
        self: This<Self>,
        params: fetch::AttachRegionParams,
        mut results: fetch::AttachRegionResults,
    ) -> capnp::Result<()> {
        self.check_revoked()?;
        let p = params.get()?;
        let grant = self
            .cp
            .attach_region(
                &self.installed,
                p.get_ring_entries(),
                p.get_small_slots(),
                p.get_frames(),
            )
            .map_err(failed)?;
        let mut r = results.get();
        r.set_token(&grant.token);
        r.set_side_path(grant.side_path.to_string_lossy().as_ref());
        let mut l = r.init_limits();
        l.set_max_ring_entries(grant.limits.max_ring_entries);
        l.set_max_small_slots(grant.limits.max_small_slots);
        l.set_max_frames(grant.limits.max_frames);
        l.set_frame_size(grant.frame_size);
        l.set_small_slot_size(grant.small_slot_size);
        Ok(())
    }
}
