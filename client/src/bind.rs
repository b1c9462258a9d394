//! Binding a port of the server's IP and sending from it.
//!
//! [`Client::bind`] asks the server (started with `--ip`) for a UDP or TCP
//! port, optionally with a MAC of the application's own (random, locally
//! administered, probed for collisions on the link before use). It returns
//! the [`Fetch`] through which the port's frames arrive and a [`Binding`]
//! through which frames leave: the server sends a frame only if its source
//! MAC, IPv4 address, protocol and source port are the binding's, and
//! refuses (and counts) anything else.
//!
//! Frames leave from the application's own pages: [`Fetch::transmit`] and
//! [`Fetch::transmit_parts`] post a page (or a header page and a payload
//! page) on the shared-mode tx ring, and the page comes back with the
//! verdict in [`Fetch::completions`]; in emulated mode the same calls carry
//! the bytes in the RPC. [`Binding::send`] / [`Binding::send_parts`] send
//! bytes from anywhere over the RPC in either mode.
//!
//! The operator side is here too: firewall rules
//! ([`Operator::add_rule`]), the host's statistics ([`Operator::host_stats`])
//! and the emulated wire ([`Operator::transmitted`]).

use std::net::Ipv4Addr;

use netserver_schema::netserver_capnp::{
    binding, binding_info, RuleAction as WireAction, Transport as WireT,
};

use crate::stats::DropCount;
use crate::{Client, Error, Fetch, InstallOptions, Operator, Result};

/// The transport of a bound port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn to_schema(self) -> WireT {
        match self {
            Transport::Udp => WireT::Udp,
            Transport::Tcp => WireT::Tcp,
        }
    }

    fn from_schema(t: std::result::Result<WireT, capnp::NotInSchema>) -> Result<Transport> {
        match t {
            Ok(WireT::Udp) => Ok(Transport::Udp),
            Ok(WireT::Tcp) => Ok(Transport::Tcp),
            Err(e) => Err(Error::Protocol(format!("unknown transport {}", e.0))),
        }
    }

    /// The IP protocol number.
    pub fn protocol(self) -> u8 {
        match self {
            Transport::Udp => 17,
            Transport::Tcp => 6,
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        })
    }
}

/// Options of [`Client::bind`].
#[derive(Debug, Clone, Default)]
pub struct BindOptions {
    /// Give the application a MAC of its own.
    pub own_mac: bool,
    /// The options of the filter the bind installs.
    pub filter: InstallOptions,
}

/// What a binding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingInfo {
    /// The MAC frames must leave from.
    pub mac: [u8; 6],
    /// Whether `mac` is the application's own (else the host's canonical).
    pub own_mac: bool,
    pub ip: Ipv4Addr,
    pub transport: Transport,
    pub port: u16,
    /// The tag of the filter the bind installed.
    pub tag: u64,
}

impl BindingInfo {
    fn read(r: binding_info::Reader<'_>) -> Result<BindingInfo> {
        let mac: [u8; 6] = r
            .get_mac()?
            .try_into()
            .map_err(|_| Error::Protocol("BindingInfo.mac is not 6 bytes".into()))?;
        let ip: [u8; 4] = r
            .get_ip()?
            .try_into()
            .map_err(|_| Error::Protocol("BindingInfo.ip is not 4 bytes".into()))?;
        Ok(BindingInfo {
            mac,
            own_mac: r.get_own_mac(),
            ip: Ipv4Addr::from(ip),
            transport: Transport::from_schema(r.get_transport())?,
            port: r.get_port(),
            tag: r.get_tag(),
        })
    }
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// A bound port: where the application's frames may leave from. Dropping
/// it (or the connection closing) unbinds the port.
pub struct Binding {
    cap: binding::Client,
    info: BindingInfo,
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding").field("info", &self.info).finish()
    }
}

impl Binding {
    pub fn info(&self) -> &BindingInfo {
        &self.info
    }

    /// Sends one whole Ethernet frame (emulated mode: the bytes travel in
    /// the RPC). A frame whose source does not match the binding is refused
    /// with the reason ([`Error::Refused`]).
    pub async fn send(&self, frame: &[u8]) -> Result<()> {
        let mut request = self.cap.send_request();
        request.get().set_frame(frame);
        request.send().promise.await?;
        Ok(())
    }

    /// Sends `header` followed by `payload` as one frame (scatter-gather).
    pub async fn send_parts(&self, header: &[u8], payload: &[u8]) -> Result<()> {
        let mut request = self.cap.send_parts_request();
        request.get().set_header(header);
        request.get().set_payload(payload);
        request.send().promise.await?;
        Ok(())
    }

    /// Releases the port now.
    pub async fn unbind(self) -> Result<()> {
        self.cap.unbind_request().send().promise.await?;
        Ok(())
    }
}

impl Client {
    /// Binds `transport` port `port` of the server's IP. With
    /// `options.own_mac` this takes about a second (the MAC probe).
    pub async fn bind(
        &self,
        transport: Transport,
        port: u16,
        options: &BindOptions,
    ) -> Result<(Fetch, Binding)> {
        if port == 0 {
            return Err(Error::InvalidArgument("port 0 cannot be bound".into()));
        }
        let (conn, server, info) = self.parts();
        let geometry = options.filter.resolve(info)?;
        let mut request = server.bind_request();
        {
            let mut r = request.get();
            r.set_transport(transport.to_schema());
            r.set_port(port);
            let mut o = r.init_options();
            o.set_own_mac(options.own_mac);
            options.filter.fill(&geometry, o.init_filter());
        }
        let reply = request.send().promise.await?;
        let reply = reply.get()?;
        let fetch_cap = reply.get_fetch()?;
        let cap = reply.get_binding()?;
        let info_reply = cap.info_request().send().promise.await?;
        let info = BindingInfo::read(info_reply.get()?.get_info()?)?;
        tracing::debug!(%transport, port, mac = %format_mac(&info.mac), "bound");
        let fetch = Fetch::new(conn.clone(), fetch_cap, info.tag, geometry);
        // `options.filter.shared` attaches an exchange region, as for install.
        let fetch = options.filter.finish(fetch, self.parts().2).await?;
        Ok((fetch, Binding { cap, info }))
    }
}

/// What a firewall rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    Drop,
    Count,
}

/// A firewall rule and its counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleStats {
    pub id: u32,
    pub action: RuleAction,
    pub expression: String,
    pub packets: u64,
    pub bytes: u64,
}

/// The server's control plane, as `Operator.hostStats` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStats {
    pub configured: bool,
    pub mac: Option<[u8; 6]>,
    pub ip: Option<Ipv4Addr>,
    pub prefix_length: u8,
    pub control_replies: u64,
    pub mac_fast_path: u64,
    pub tx_sent: u64,
    pub tx_refused: Vec<DropCount>,
    pub tx_errors: u64,
    pub host_sent: u64,
    /// Client frames taken from shared-mode tx rings.
    pub tx_ring: u64,
    /// Tx-ring frames the server sent from a copy of the client's page.
    pub tx_copied: u64,
    pub bindings: Vec<BindingInfo>,
    pub neighbours: u32,
}

impl HostStats {
    /// Refusals for `reason` (`wrong_source_mac`, …).
    pub fn refused_for(&self, reason: &str) -> u64 {
        self.tx_refused
            .iter()
            .find(|d| d.reason == reason)
            .map_or(0, |d| d.count)
    }

    /// All refusals.
    pub fn refused(&self) -> u64 {
        self.tx_refused.iter().map(|d| d.count).sum()
    }
}

impl Operator {
    /// Adds a firewall rule (pcap-filter expression); returns its id.
    pub async fn add_rule(&self, action: RuleAction, expression: &str) -> Result<u32> {
        let mut request = self.capability().add_rule_request();
        request.get().set_action(match action {
            RuleAction::Drop => WireAction::Drop,
            RuleAction::Count => WireAction::Count,
        });
        request.get().set_expression(expression);
        let reply = request.send().promise.await?;
        Ok(reply.get()?.get_id())
    }

    pub async fn remove_rule(&self, id: u32) -> Result<()> {
        let mut request = self.capability().remove_rule_request();
        request.get().set_id(id);
        request.send().promise.await?;
        Ok(())
    }

    /// Every firewall rule with its counters.
    pub async fn rules(&self) -> Result<Vec<RuleStats>> {
        let reply = self.capability().rules_request().send().promise.await?;
        let mut out = Vec::new();
        for r in reply.get()?.get_rules()?.iter() {
            out.push(RuleStats {
                id: r.get_id(),
                action: match r.get_action() {
                    Ok(WireAction::Drop) => RuleAction::Drop,
                    Ok(WireAction::Count) => RuleAction::Count,
                    Err(e) => return Err(Error::Protocol(format!("unknown rule action {}", e.0))),
                },
                expression: r.get_expression()?.to_string()?,
                packets: r.get_packets(),
                bytes: r.get_bytes(),
            });
        }
        Ok(out)
    }

    /// The control plane's state and counters.
    pub async fn host_stats(&self) -> Result<HostStats> {
        let reply = self
            .capability()
            .host_stats_request()
            .send()
            .promise
            .await?;
        let s = reply.get()?.get_stats()?;
        let mac = <[u8; 6]>::try_from(s.get_mac()?).ok();
        let ip = <[u8; 4]>::try_from(s.get_ip()?).ok().map(Ipv4Addr::from);
        let mut tx_refused = Vec::new();
        for d in s.get_tx_refused()?.iter() {
            tx_refused.push(DropCount {
                reason: d.get_reason()?.to_string()?,
                count: d.get_count(),
            });
        }
        let mut bindings = Vec::new();
        for b in s.get_bindings()?.iter() {
            bindings.push(BindingInfo::read(b)?);
        }
        Ok(HostStats {
            configured: s.get_configured(),
            mac,
            ip,
            prefix_length: s.get_prefix_length(),
            control_replies: s.get_control_replies(),
            mac_fast_path: s.get_mac_fast_path(),
            tx_sent: s.get_tx_sent(),
            tx_refused,
            tx_errors: s.get_tx_errors(),
            host_sent: s.get_host_sent(),
            tx_ring: s.get_tx_ring(),
            tx_copied: s.get_tx_copied(),
            bindings,
            neighbours: s.get_neighbours(),
        })
    }

    /// Emulated backend: takes up to `max` frames the server sent.
    pub async fn transmitted(&self, max: u32) -> Result<Vec<Vec<u8>>> {
        let mut request = self.capability().transmitted_request();
        request.get().set_max(max);
        let reply = request.send().promise.await?;
        let mut out = Vec::new();
        for f in reply.get()?.get_frames()?.iter() {
            out.push(f?.to_vec());
        }
        Ok(out)
    }
}
