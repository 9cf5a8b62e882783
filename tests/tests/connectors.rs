//! End-to-end tests of the connectors against the real `hookbox serve`:
//! the Redis event bus (a real `redis-server`, started on a free port by
//! `hookbox_tests::redis_server`; the tests fail with an install hint when
//! it is missing) and the webhook, Discord and Slack sinks (a local
//! recording receiver, `hookbox_tests::receiver`). Every wait is bounded.

mod connectors {
    mod redis;
    mod webhook;
}
