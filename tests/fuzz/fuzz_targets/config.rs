//! Fuzz target `config`: see `hookbox_fuzz::checks::config`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookbox_fuzz::checks::config(data));
