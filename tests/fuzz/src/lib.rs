//! The fuzz targets' checks, as a library so the targets stay one line
//! each. `checks.rs` is also compiled into the stable test suite
//! (`tests/tests/hostile/fuzz.rs`), which replays the kept inputs.

pub mod checks;
