//! End-to-end tests of the sandbox runtime: upload checks, every limit both
//! ways, WASI denial, instance reuse, concurrency, the compiled-code cache,
//! `hookbox run`, the example handlers against real Zulip events, and the
//! Python and JavaScript SDK examples built with their own toolchains, and
//! the Rust SDK's fake host against the real one.
//!
//! One test binary; each component is compiled once per binary
//! (`hookbox_tests::module`). Nothing here measures time.

mod runtime {
    mod compile;
    mod concurrency;
    mod examples;
    mod languages;
    mod limits;
    mod prepare;
    mod reuse;
    mod run;
    mod sdk_parity;
    mod wasi;
}
