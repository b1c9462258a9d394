//! `Operator`: the bootstrap capability of the owner-only operator socket.

use std::rc::Rc;
use std::time::{Duration, Instant};

use netserver_schema::netserver_capnp::operator;

use super::{failed, This};
use crate::control::{Authority, ControlPlane};

/// How long `inject` waits for room in the receive ring without progress
/// before it returns what it accepted so far.
const INJECT_STALL: Duration = Duration::from_secs(10);

/// Serves `Operator` to one connection.
pub struct OperatorImpl {
    cp: Rc<ControlPlane>,
}

impl OperatorImpl {
    pub fn new(cp: Rc<ControlPlane>) -> OperatorImpl {
        OperatorImpl { cp }
    }
}

impl operator::Server for OperatorImpl {
    async fn inject(
        self: This<Self>,
        params: operator::InjectParams,
        mut results: operator::InjectResults,
    ) -> capnp::Result<()> {
        let Some(injector) = self.cp.injector().cloned() else {
            return Err(failed(format_args!(
                "inject works only on the emulated backend; this server runs `{}` (start it with --backend emulated)",
                self.cp.backend()
            )));
        };
        let p = params.get()?;
        let frames = p.get_frames()?;
        let mut accepted = 0u32;
        for f in frames.iter() {
            let data = f.get_data()?;
            let mut last_progress = Instant::now();
            // The emulated wire does not lose frames: wait for room.
            while injector.inject(data, f.get_wire_length()).is_err() {
                injector.wake();
                if last_progress.elapsed() > INJECT_STALL {
                    tracing::warn!(
                        accepted,
                        "inject: receive ring stayed full; returning early"
                    );
                    results.get().set_accepted(accepted);
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                if injector.room() > 0 {
                    last_progress = Instant::now();
                }
            }
            accepted += 1;
            if accepted.is_multiple_of(32) {
                injector.wake();
            }
        }
        injector.wake();
        results.get().set_accepted(accepted);
        Ok(())
    }

    async fn list_filters(
        self: This<Self>,
        _: operator::ListFiltersParams,
        mut results: operator::ListFiltersResults,
    ) -> capnp::Result<()> {
        let filters = self.cp.filters();
        let mut list = results.get().init_filters(filters.len() as u32);
        for (i, f) in filters.iter().enumerate() {
            super::fill_installed_stats(list.reborrow().get(i as u32), f);
        }
        Ok(())
    }

    async fn stats(
        self: This<Self>,
        _: operator::StatsParams,
        mut results: operator::StatsResults,
    ) -> capnp::Result<()> {
        super::fill_global_stats(results.get().init_stats(), &self.cp);
        Ok(())
    }

    async fn shutdown(
        self: This<Self>,
        _: operator::ShutdownParams,
        _: operator::ShutdownResults,
    ) -> capnp::Result<()> {
        tracing::info!("shutdown requested by the operator");
        self.cp.request_shutdown();
        Ok(())
    }

    async fn install_filter(
        self: This<Self>,
        params: operator::InstallFilterParams,
        mut results: operator::InstallFilterResults,
    ) -> capnp::Result<()> {
        let p = params.get()?;
        let options = if p.has_options() {
            Some(p.get_options()?)
        } else {
            None
        };
        let fetch = super::install(&self.cp, p.get_expression()?, options, Authority::Operator)?;
        results.get().set_fetch(fetch);
        Ok(())
    }

    async fn filter_stats(
        self: This<Self>,
        params: operator::FilterStatsParams,
        mut results: operator::FilterStatsResults,
    ) -> capnp::Result<()> {
        let tag = params.get()?.get_tag();
        let installed = self.cp.lookup(tag).map_err(failed)?;
        super::fill_installed_stats(results.get().init_stats(), &installed);
        Ok(())
    }

    async fn remove_filter(
        self: This<Self>,
        params: operator::RemoveFilterParams,
        _: operator::RemoveFilterResults,
    ) -> capnp::Result<()> {
        let tag = params.get()?.get_tag();
        self.cp.remove(tag).map_err(failed)
    }

    async fn add_rule(
        self: This<Self>,
        params: operator::AddRuleParams,
        results: operator::AddRuleResults,
    ) -> capnp::Result<()> {
        super::firewall::add_rule(&self.cp, params, results)
    }

    async fn remove_rule(
        self: This<Self>,
        params: operator::RemoveRuleParams,
        _: operator::RemoveRuleResults,
    ) -> capnp::Result<()> {
        super::firewall::remove_rule(&self.cp, params)
    }

    async fn rules(
        self: This<Self>,
        _: operator::RulesParams,
        results: operator::RulesResults,
    ) -> capnp::Result<()> {
        super::firewall::rules(&self.cp, results)
    }

    async fn host_stats(
        self: This<Self>,
        _: operator::HostStatsParams,
        results: operator::HostStatsResults,
    ) -> capnp::Result<()> {
        super::firewall::host_stats(&self.cp, results).await
    }

    async fn transmitted(
        self: This<Self>,
        params: operator::TransmittedParams,
        results: operator::TransmittedResults,
    ) -> capnp::Result<()> {
        super::firewall::transmitted(&self.cp, params, results)
    }
}
