//! `NetServer`: the bootstrap capability of the client socket.

use std::rc::Rc;

use netserver_schema::netserver_capnp::net_server;

use super::This;
use crate::control::{Authority, ControlPlane};

/// Serves `NetServer` to one connection.
pub struct NetServerImpl {
    cp: Rc<ControlPlane>,
    /// This connection's number: the filters it installs are one client's
    /// (see [`Authority::Client`]).
    connection: u64,
}

impl NetServerImpl {
    pub fn new(cp: Rc<ControlPlane>, connection: u64) -> NetServerImpl {
        NetServerImpl { cp, connection }
    }

    fn authority(&self) -> Authority {
        Authority::Client {
            connection: self.connection,
        }
    }
}

impl net_server::Server for NetServerImpl {
    async fn install_filter(
        self: This<Self>,
        params: net_server::InstallFilterParams,
        mut results: net_server::InstallFilterResults,
    ) -> capnp::Result<()> {
        let p = params.get()?;
        let options = if p.has_options() {
            Some(p.get_options()?)
        } else {
            None
        };
        let fetch = super::install(&self.cp, p.get_expression()?, options, self.authority())?;
        results.get().set_fetch(fetch);
        Ok(())
    }

    async fn info(
        self: This<Self>,
        _: net_server::InfoParams,
        mut results: net_server::InfoResults,
    ) -> capnp::Result<()> {
        super::fill_info(results.get().init_info(), &self.cp);
        Ok(())
    }

    async fn bind(
        self: This<Self>,
        params: net_server::BindParams,
        results: net_server::BindResults,
    ) -> capnp::Result<()> {
        super::bind::bind(&self.cp, self.authority(), params, results).await
    }
}
