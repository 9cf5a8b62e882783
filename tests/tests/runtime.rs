//! End-to-end tests of the sandbox runtime: upload checks, every limit both
//! ways, WASI denial, instance reuse, concurrency, the compiled-code cache,
//! `hookbox run`, and the example handlers against real Zulip events.
//!
//! One test binary; each component is compiled once per binary
//! (`hookbox_tests::module`). Nothing here measures time.

mod runtime {
    mod compile;
    mod concurrency;
    mod examples;
    mod limits;
    mod reuse;
    mod run;
    mod wasi;
}
