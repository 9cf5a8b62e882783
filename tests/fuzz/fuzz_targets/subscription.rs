//! Fuzz target `subscription`: see `hookbox_fuzz::checks::subscription`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookbox_fuzz::checks::subscription(data));
