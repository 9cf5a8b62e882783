//! Fuzz target `manifest`: see `hookbox_fuzz::checks::manifest`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookbox_fuzz::checks::manifest(data));
