//! Any UTF-8 text: compiling it never panics; what compiles evaluates.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| filters::fuzzing::parse(data));
