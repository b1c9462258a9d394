//! The operator's side of the host: firewall rules, host statistics, the
//! emulated wire's transmitted frames. `Operator` methods call in here.

use netserver_schema::netserver_capnp::{operator, RuleAction as WireAction};

use super::failed;
use crate::control::ControlPlane;
use crate::host::firewall::RuleAction;
use crate::hostpath::HostControl;

fn host(cp: &ControlPlane) -> capnp::Result<&HostControl> {
    cp.host()
        .ok_or_else(|| failed("this server runs without the host control plane"))
}

pub(crate) fn add_rule(
    cp: &ControlPlane,
    params: operator::AddRuleParams,
    mut results: operator::AddRuleResults,
) -> capnp::Result<()> {
    let p = params.get()?;
    let action = match p.get_action() {
        Ok(WireAction::Drop) => RuleAction::Drop,
        Ok(WireAction::Count) => RuleAction::Count,
        Err(capnp::NotInSchema(n)) => {
            return Err(failed(format_args!(
                "rule action {n} is not one this server knows (drop, count)"
            )))
        }
    };
    let expression = p
        .get_expression()?
        .to_str()
        .map_err(|_| failed("the rule expression is not valid UTF-8"))?;
    let id = host(cp)?.add_rule(action, expression).map_err(failed)?;
    results.get().set_id(id);
    Ok(())
}

pub(crate) fn remove_rule(
    cp: &ControlPlane,
    params: operator::RemoveRuleParams,
) -> capnp::Result<()> {
    host(cp)?
        .remove_rule(params.get()?.get_id())
        .map_err(failed)
}

pub(crate) fn rules(cp: &ControlPlane, mut results: operator::RulesResults) -> capnp::Result<()> {
    let rules = host(cp)?.rules();
    let mut list = results.get().init_rules(rules.len() as u32);
    for (i, r) in rules.iter().enumerate() {
        let mut b = list.reborrow().get(i as u32);
        b.set_id(r.id);
        b.set_action(match r.action {
            RuleAction::Drop => WireAction::Drop,
            RuleAction::Count => WireAction::Count,
        });
        b.set_expression(r.expression.as_str());
        b.set_packets(r.packets);
        b.set_bytes(r.bytes);
    }
    Ok(())
}

pub(crate) async fn host_stats(
    cp: &ControlPlane,
    mut results: operator::HostStatsResults,
) -> capnp::Result<()> {
    let host = host(cp)?;
    let snapshot = host.snapshot().await;
    let counters = host.counters();
    let mut b = results.get().init_stats();
    if let Some(c) = host.config() {
        b.set_configured(true);
        b.set_mac(&c.mac.0);
        b.set_ip(&c.ip.octets());
        b.set_prefix_length(c.prefix_len);
    }
    b.set_control_replies(counters.control_replies);
    b.set_mac_fast_path(counters.mac_fast_path);
    b.set_tx_sent(counters.tx_sent);
    b.set_tx_errors(counters.tx_errors);
    b.set_host_sent(counters.host_sent);
    b.set_tx_ring(counters.tx_ring);
    b.set_tx_copied(counters.tx_copied);
    b.set_neighbours(u32::try_from(snapshot.neighbours).unwrap_or(u32::MAX));
    {
        let mut list = b
            .reborrow()
            .init_tx_refused(counters.tx_refused.len() as u32);
        for (i, (reason, count)) in counters.refused_by_reason().enumerate() {
            let mut d = list.reborrow().get(i as u32);
            d.set_reason(reason.name());
            d.set_count(count);
        }
    }
    let ip = host
        .config()
        .map(|c| c.ip)
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
    let canonical = host.config().map(|c| c.mac);
    let mut list = b.init_bindings(snapshot.bindings.len() as u32);
    for (i, binding) in snapshot.bindings.iter().enumerate() {
        let mac = binding.mac.or(canonical).unwrap_or_default();
        super::bind::fill_binding_info(
            list.reborrow().get(i as u32),
            mac,
            binding.mac.is_some(),
            ip,
            binding.transport,
            binding.port,
            binding.owner,
        );
    }
    Ok(())
}

pub(crate) fn transmitted(
    cp: &ControlPlane,
    params: operator::TransmittedParams,
    mut results: operator::TransmittedResults,
) -> capnp::Result<()> {
    let Some(injector) = cp.injector() else {
        return Err(failed(format_args!(
            "transmitted works only on the emulated backend; this server runs `{}`",
            cp.backend()
        )));
    };
    let max = params.get()?.get_max().min(4096) as usize;
    let mut frames = Vec::new();
    injector.take_transmitted(max, &mut |f| frames.push(f.to_vec()));
    let mut list = results.get().init_frames(frames.len() as u32);
    for (i, f) in frames.iter().enumerate() {
        list.set(i as u32, f);
    }
    Ok(())
}
