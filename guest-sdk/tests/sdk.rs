//! The SDK's integration tests, one binary: Zulip types against the real
//! fixture events, and the native test harness driven through the public
//! API the way handler crates use it.

mod sdk {
    mod harness;
    mod zulip_fixtures;
}
