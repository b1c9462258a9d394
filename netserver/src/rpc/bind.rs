//! `NetServer.bind` and the `Binding` capability: a port of the server's IP,
//! optionally with an application MAC, and the (emulated-mode) transmit.

use std::rc::Rc;

use netserver_schema::netserver_capnp::{binding, binding_info, net_server, Transport as WireT};

use super::{failed, FetchImpl, This};
use crate::control::{Authority, ControlPlane, Installed};
use crate::host::{MacAddr, Transport};
use crate::hostpath::HostControl;

fn transport_of(t: Result<WireT, capnp::NotInSchema>) -> capnp::Result<Transport> {
    match t {
        Ok(WireT::Udp) => Ok(Transport::Udp),
        Ok(WireT::Tcp) => Ok(Transport::Tcp),
        Err(capnp::NotInSchema(n)) => Err(failed(format_args!(
            "transport {n} is not one this server knows (udp, tcp)"
        ))),
    }
}

fn wire_transport(t: Transport) -> WireT {
    match t {
        Transport::Udp => WireT::Udp,
        Transport::Tcp => WireT::Tcp,
    }
}

fn host_of(cp: &ControlPlane) -> capnp::Result<&HostControl> {
    cp.host()
        .filter(|h| h.config().is_some())
        .ok_or_else(|| failed(crate::hostpath::BindError::NoHost))
}

/// The filter `bind` installs for a port.
pub fn bind_expression(ip: std::net::Ipv4Addr, transport: Transport, port: u16) -> String {
    format!("dst host {ip} and {transport} dst port {port}")
}

/// `NetServer.bind`, for the client `authority` names.
pub(crate) async fn bind(
    cp: &Rc<ControlPlane>,
    authority: Authority,
    params: net_server::BindParams,
    mut results: net_server::BindResults,
) -> capnp::Result<()> {
    let p = params.get()?;
    let transport = transport_of(p.get_transport())?;
    let port = p.get_port();
    if port == 0 {
        return Err(failed("port 0 cannot be bound: name the port to bind"));
    }
    let (own_mac, filter) = if p.has_options() {
        let o = p.get_options()?;
        let filter = if o.has_filter() {
            super::install_options(o.get_filter()?)?
        } else {
            Default::default()
        };
        (o.get_own_mac(), filter)
    } else {
        (false, Default::default())
    };
    let host = host_of(cp)?;
    let ip = host
        .config()
        .map(|c| c.ip)
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
    let expression = bind_expression(ip, transport, port);
    let installed = cp.install(&expression, filter, authority).map_err(failed)?;
    let tag = installed.tag;
    let bound = match host.bind(tag, transport, port, own_mac).await {
        Ok(b) => b,
        Err(e) => {
            let _ = cp.remove(tag);
            return Err(failed(e));
        }
    };
    tracing::info!(
        tag = format_args!("{tag:#018x}"),
        %transport,
        port,
        mac = %bound.mac,
        own_mac = bound.own_mac,
        "port bound"
    );
    let fetch = capnp_rpc::new_client(FetchImpl::new(cp.clone(), installed.clone()));
    let binding: binding::Client = capnp_rpc::new_client(BindingImpl {
        cp: cp.clone(),
        installed,
        transport,
        port,
        mac: bound.mac,
        own_mac: bound.own_mac,
        ip,
    });
    let mut r = results.get();
    r.set_fetch(fetch);
    r.set_binding(binding);
    Ok(())
}

/// Serves one `Binding`. Dropping it unbinds the port.
pub struct BindingImpl {
    cp: Rc<ControlPlane>,
    installed: Rc<Installed>,
    transport: Transport,
    port: u16,
    mac: MacAddr,
    own_mac: bool,
    ip: std::net::Ipv4Addr,
}

impl BindingImpl {
    fn host(&self) -> capnp::Result<&HostControl> {
        host_of(&self.cp)
    }
}

impl Drop for BindingImpl {
    fn drop(&mut self) {
        if let Some(h) = self.cp.host() {
            h.unbind(self.installed.tag, self.transport, self.port);
        }
    }
}

/// Fills a `BindingInfo`.
pub(crate) fn fill_binding_info(
    mut b: binding_info::Builder<'_>,
    mac: MacAddr,
    own_mac: bool,
    ip: std::net::Ipv4Addr,
    transport: Transport,
    port: u16,
    tag: u64,
) {
    b.set_mac(&mac.0);
    b.set_own_mac(own_mac);
    b.set_ip(&ip.octets());
    b.set_transport(wire_transport(transport));
    b.set_port(port);
    b.set_tag(tag);
}

impl binding::Server for BindingImpl {
    async fn info(
        self: This<Self>,
        _: binding::InfoParams,
        mut results: binding::InfoResults,
    ) -> capnp::Result<()> {
        fill_binding_info(
            results.get().init_info(),
            self.mac,
            self.own_mac,
            self.ip,
            self.transport,
            self.port,
            self.installed.tag,
        );
        Ok(())
    }

    async fn send(
        self: This<Self>,
        params: binding::SendParams,
        _: binding::SendResults,
    ) -> capnp::Result<()> {
        let frame = params.get()?.get_frame()?.to_vec();
        let host = self.host()?;
        host.transmit(
            self.installed.tag,
            self.transport,
            self.port,
            frame,
            Vec::new(),
        )
        .await
        .map_err(failed)
    }

    async fn send_parts(
        self: This<Self>,
        params: binding::SendPartsParams,
        _: binding::SendPartsResults,
    ) -> capnp::Result<()> {
        let p = params.get()?;
        let (header, payload) = (p.get_header()?.to_vec(), p.get_payload()?.to_vec());
        let host = self.host()?;
        host.transmit(
            self.installed.tag,
            self.transport,
            self.port,
            header,
            payload,
        )
        .await
        .map_err(failed)
    }

    async fn unbind(
        self: This<Self>,
        _: binding::UnbindParams,
        _: binding::UnbindResults,
    ) -> capnp::Result<()> {
        self.host()?
            .unbind(self.installed.tag, self.transport, self.port);
        Ok(())
    }
}
