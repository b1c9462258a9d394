//! netclient: the client library of netserver.
