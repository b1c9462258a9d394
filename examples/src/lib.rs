//! Examples built on netclient.
