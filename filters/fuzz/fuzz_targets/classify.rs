//! Fuzz-chosen filter sets, installs, removals and frames: the trie agrees
//! with evaluating every filter one after the other.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| filters::fuzzing::classify(data));
