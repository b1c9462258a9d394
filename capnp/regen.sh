#!/usr/bin/env bash
# Regenerates src/netserver_capnp.rs from schema/netserver.capnp (needs the
# `capnp` tool: apt-get install capnproto).
set -euo pipefail
cd "$(dirname "$0")/.."
NETSERVER_REGEN=1 cargo test -p netserver-schema --test generated_is_current -- --nocapture
