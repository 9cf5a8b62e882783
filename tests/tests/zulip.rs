//! End-to-end tests of the Zulip integration: a real store, dispatcher and
//! Zulip source and sink against the fake Zulip server
//! (`hookbox_tests::fake_zulip`), which replays the fixture events and
//! plays queue expiry, rate limits and failing sends.
//!
//! Each test runs its own fake server and node (`zulip/node.rs`). A
//! built-in handler `test:recorder` subscribed to every event records what
//! the dispatcher delivers, so assertions see exactly what a handler
//! receives. `zulip/daemon.rs` runs the real `hookbox serve` with a
//! `[[zulip]]` config instead. Every wait is bounded; nothing here measures
//! speed (one test checks that a `Retry-After` was respected, a lower bound).

mod zulip {
    mod daemon;
    mod node;
    mod sink;
    mod source;
}
