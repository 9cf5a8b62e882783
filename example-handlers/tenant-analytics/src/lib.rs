//! Example handler: per-tenant event counters, for any event.
//!
//! KV layout (the handler's namespace is already per tenant):
//! - `events:total` — every event;
//! - `events:type:<event type>` — events of one type;
//! - `events:day:<YYYY-MM-DD>` — events accepted on one UTC day (one new key
//!   per active day);
//! - `events:last_ms` — when the latest event was accepted.
//!
//! Counting is not idempotent on its own: a delivery re-run after a crash
//! would count twice. So the handler marks each event id it counted
//! (`seen:<id>`, expiring after `SEEN_TTL`) and, on a retry
//! (`attempt > 1`), skips events already marked.

use std::time::Duration;

use hookbox_sdk::{Event, Handler, HandlerError, debug, kv};

/// How long an event id is remembered: longer than any retry schedule.
const SEEN_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Counts events per tenant.
#[derive(Debug)]
pub struct TenantAnalytics;

impl Handler for TenantAnalytics {
    fn handle(event: Event) -> Result<(), HandlerError> {
        let seen_key = format!("seen:{}", event.id);
        if event.is_retry() && kv::get(&seen_key).is_some() {
            debug!(event_id = event.id, attempt = event.attempt; "Already counted");
            return Ok(());
        }
        let total = kv::increment("events:total", 1);
        kv::increment(&format!("events:type:{}", event.event_type), 1);
        kv::increment(&format!("events:day:{}", utc_date(event.time_ms)), 1);
        kv::set("events:last_ms", event.time_ms.to_string(), None);
        kv::set(&seen_key, "1", Some(SEEN_TTL));
        debug!(event_type = event.event_type, total = total; "Counted an event");
        Ok(())
    }
}

hookbox_sdk::export_handler!(TenantAnalytics);

/// The UTC calendar date (`YYYY-MM-DD`) of a Unix time in milliseconds.
fn utc_date(time_ms: u64) -> String {
    // Howard Hinnant's `civil_from_days`, for days since 1970-01-01.
    let days = i64::try_from(time_ms / 86_400_000).unwrap_or(i64::MAX / 2);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use hookbox_sdk::testing::TestHost;
    use serde_json::Value;

    use super::*;

    fn zulip_events() -> Vec<Value> {
        let path = format!(
            "{}/../../tests/fixtures/zulip/zulip-events.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).unwrap()
    }

    fn count(host: &TestHost, tenant: &str, key: &str) -> Option<i64> {
        host.kv_get_string(tenant, key).map(|v| v.parse().unwrap())
    }

    #[test]
    fn counts_every_zulip_fixture_event_by_type() {
        let mut host = TestHost::new();
        let events = zulip_events();
        for zulip in &events {
            let event = Event::from_zulip(zulip).tenant("zulip").build();
            host.run::<TenantAnalytics>(event).unwrap();
        }
        assert_eq!(count(&host, "zulip", "events:total"), Some(77));
        assert_eq!(count(&host, "zulip", "events:type:message"), Some(1));
        assert_eq!(count(&host, "zulip", "events:type:reaction.add"), Some(1));
        assert_eq!(count(&host, "zulip", "events:day:2023-11-14"), Some(77));
        let type_keys = host
            .kv_keys("zulip")
            .into_iter()
            .filter(|k| k.starts_with("events:type:"))
            .count();
        assert_eq!(type_keys, 77);
    }

    #[test]
    fn tenants_and_days_are_separate() {
        let mut host = TestHost::new();
        let day_ms = 86_400_000;
        for (tenant, time_ms) in [("a", 0), ("a", day_ms - 1), ("a", day_ms), ("b", 0)] {
            let event = Event::builder("TICKET_CREATED")
                .tenant(tenant)
                .time_ms(time_ms)
                .build();
            host.run::<TenantAnalytics>(event).unwrap();
        }
        assert_eq!(count(&host, "a", "events:total"), Some(3));
        assert_eq!(count(&host, "a", "events:day:1970-01-01"), Some(2));
        assert_eq!(count(&host, "a", "events:day:1970-01-02"), Some(1));
        assert_eq!(count(&host, "a", "events:last_ms"), Some(day_ms as i64));
        assert_eq!(count(&host, "b", "events:total"), Some(1));
        assert_eq!(count(&host, "b", "events:type:TICKET_CREATED"), Some(1));
    }

    #[test]
    fn a_retry_of_a_counted_event_is_not_counted_again() {
        let mut host = TestHost::new();
        let first = Event::builder("x").tenant("a").id("01A").build();
        host.run::<TenantAnalytics>(first.clone()).unwrap();
        let retry = Event {
            attempt: 2,
            ..first
        };
        host.run::<TenantAnalytics>(retry.clone()).unwrap();
        assert_eq!(count(&host, "a", "events:total"), Some(1));
        // Once the mark expires (long after any retry), it counts again.
        host.advance(SEEN_TTL);
        host.run::<TenantAnalytics>(retry).unwrap();
        assert_eq!(count(&host, "a", "events:total"), Some(2));
    }

    #[test]
    fn a_retry_of_an_uncounted_event_is_counted() {
        let mut host = TestHost::new();
        let retry = Event::builder("x").tenant("a").attempt(3).build();
        host.run::<TenantAnalytics>(retry).unwrap();
        assert_eq!(count(&host, "a", "events:total"), Some(1));
    }

    #[test]
    fn utc_dates() {
        let cases = [
            (0, "1970-01-01"),
            (951_782_400_000, "2000-02-29"),
            (1_700_000_000_000, "2023-11-14"),
            (1_735_689_599_999, "2024-12-31"),
            (1_735_689_600_000, "2025-01-01"),
            (4_107_542_400_000, "2100-03-01"),
        ];
        for (ms, date) in cases {
            assert_eq!(utc_date(ms), date, "{ms}");
        }
    }
}
