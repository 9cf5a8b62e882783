//! The standing adversarial suite: hostile guests, hostile uploads, hostile
//! HTTP clients and cross-tenant attempts, each pinned to its named outcome
//! and to "everyone else keeps being served meanwhile". `SECURITY.md` lists
//! every attack with the test that pins it.
//!
//! - `guests`: each hostile guest against the sandbox runtime directly,
//!   while well-behaved deliveries run beside it.
//! - `storm`: the same guests inside a real daemon (`hookbox serve`): the
//!   daemon keeps serving a good handler, handlers cannot feed each other
//!   forever or read each other's KV, and its memory returns to baseline.
//! - `uploads`: components that are not what they claim, compile bombs and
//!   hostile handler names, through the deploy route.
//! - `http`: malformed, oversized, slow and unauthenticated requests.
//! - `tenants`: tenant isolation of routing, publish tokens and reads.
//! - `fuzz`: the fuzz targets' checks over every kept input (crashers
//!   found by `scripts/fuzz.sh` are saved as regression inputs).
//!
//! Nothing here measures time (the noisy-neighbour numbers are a benchmark,
//! `benches/noisy_neighbour.rs`); every wait is bounded.

mod hostile {
    mod fuzz;
    mod guests;
    mod http;
    mod storm;
    mod tenants;
    mod uploads;

    use hookbox_tests::daemon::{Daemon, Reply};
    use serde_json::{Value, json};

    /// A manifest for handler `name` subscribed to `events`, without
    /// retries (a hostile delivery's outcome is final at once).
    pub(crate) fn manifest(name: &str, events: &[&str]) -> Value {
        json!({
            "name": name,
            "subscription": {"events": events},
            "delivery": {"max_attempts": 1},
        })
    }

    /// Deploys `wasm` with `manifest` (a JSON value).
    pub(crate) fn deploy(d: &Daemon, manifest: &Value, wasm: &[u8]) -> Reply {
        d.deploy(&manifest.to_string(), wasm)
    }

    /// The `handler → outcome` pairs of an event's deliveries, sorted.
    pub(crate) fn outcomes(d: &Daemon, event_id: &str) -> Vec<(String, String)> {
        let r = d.get(&format!("/v1/events/{event_id}")).expect(200);
        let mut out: Vec<(String, String)> = r.json["deliveries"]
            .as_array()
            .unwrap_or_else(|| panic!("no deliveries in {r}"))
            .iter()
            .map(|e| {
                (
                    e["handler"].as_str().unwrap_or_default().to_string(),
                    e["outcome"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Publishes one event of `event_type` for `tenant`; returns its id.
    pub(crate) fn publish(d: &Daemon, event_type: &str, tenant: &str) -> String {
        let r = d
            .publish(&json!({"type": event_type, "tenant": tenant}), false)
            .expect(202);
        r.json["events"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {r}"))
            .to_string()
    }

    /// Waits until `event_id` has a delivery logged for `handler`; returns
    /// its outcome.
    pub(crate) fn await_outcome(d: &Daemon, event_id: &str, handler: &str) -> String {
        d.wait_until(&format!("{handler} to handle {event_id}"), || {
            outcomes(d, event_id)
                .into_iter()
                .find(|(h, _)| h == handler)
                .map(|(_, o)| o)
        })
    }
}
