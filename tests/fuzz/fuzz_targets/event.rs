//! Fuzz target `event`: see `hookbox_fuzz::checks::event`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookbox_fuzz::checks::event(data));
