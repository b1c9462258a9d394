//! Any 128 bytes as a region header (optionally mended, then spoiled in one
//! word): `Layout::from_header` never panics, accepts exactly what the wire
//! specification accepts, and what it accepts is a sound layout.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| exchange::fuzzing::header(data));
