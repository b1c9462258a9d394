//! The network server domain.
