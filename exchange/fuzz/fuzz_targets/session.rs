//! A server attached to a real region, driven by fuzz-chosen hostile client
//! writes and server operations: no panic, and the frame table stays
//! consistent with what the server holds after every step.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| exchange::fuzzing::session(data));
