//! Support for tests that need more than the emulated mode: network
//! namespaces and veth pairs. Not part of the server; public so that the
//! workspace's end-to-end tests can use it too.

pub mod netns;
