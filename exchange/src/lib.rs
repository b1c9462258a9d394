//! Exchange regions: memfd-backed shared memory between the server and one client.
