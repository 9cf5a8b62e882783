//! Operators read a handler's KV namespace per tenant: list with a prefix
//! and a cursor, get one key; read scope, tenant-filtered; nothing else
//! (another handler, another tenant) shows through.

use hookbox_tests::daemon::Daemon;
use serde_json::json;

use super::array;

#[test]
fn operators_read_a_handlers_kv_per_tenant() {
    let d = Daemon::start();
    d.deploy_example("tenant-analytics");
    let events = json!([
        {"type": "order.placed", "tenant": "acme"},
        {"type": "order.placed", "tenant": "acme"},
        {"type": "order.shipped", "tenant": "acme"},
        {"type": "order.placed", "tenant": "globex"},
    ]);
    d.publish(&events, true).expect(200);

    let page = d
        .get("/v1/handlers/tenant-analytics/kv?tenant=acme&prefix=events:type:&limit=1")
        .expect(200);
    let entries = array(&page.json, "entries");
    assert_eq!(entries.len(), 1, "{page}");
    assert_eq!(entries[0]["key"], "events:type:order.placed", "{page}");
    assert_eq!(entries[0]["value"], "2", "{page}");
    assert_eq!(entries[0]["encoding"], "utf8", "{page}");
    let cursor = page.json["next_cursor"].as_str().unwrap().to_string();
    let next = d
        .get(&format!(
            "/v1/handlers/tenant-analytics/kv?tenant=acme&prefix=events:type:&limit=1&cursor={cursor}"
        ))
        .expect(200);
    assert_eq!(
        array(&next.json, "entries")[0]["key"],
        "events:type:order.shipped",
        "{next}"
    );
    let all = d
        .get("/v1/handlers/tenant-analytics/kv?tenant=acme&prefix=events:type:")
        .expect(200);
    assert_eq!(array(&all.json, "entries").len(), 2, "{all}");
    assert!(all.json["next_cursor"].is_null(), "{all}");

    let one = d
        .get("/v1/handlers/tenant-analytics/kv/events:type:order.placed?tenant=globex")
        .expect(200);
    assert_eq!(one.json["value"], "1", "{one}");
    d.get("/v1/handlers/tenant-analytics/kv/events:type:order.shipped?tenant=globex")
        .expect(404);
    d.get("/v1/handlers/nope/kv?tenant=acme").expect(404);
    d.get("/v1/handlers/tenant-analytics/kv").expect(400);

    // A read token of one tenant reads that tenant only.
    let globex = d.token("globex-reader", &["read"], &["globex"]);
    d.get_as("/v1/handlers/tenant-analytics/kv?tenant=globex", &globex)
        .expect(200);
    d.get_as("/v1/handlers/tenant-analytics/kv?tenant=acme", &globex)
        .expect(403);
    d.get_as(
        "/v1/handlers/tenant-analytics/kv/events:type:order.placed?tenant=acme",
        &globex,
    )
    .expect(403);
    let publisher = d.token("pub", &["publish"], &[]);
    d.get_as("/v1/handlers/tenant-analytics/kv?tenant=acme", &publisher)
        .expect(403);
}

/// The same reads from the CLI: `hookbox kv list` (a table, `--json`, a
/// cursor hint) and `hookbox kv get` (the value alone), tenant-filtered.
#[test]
fn the_cli_reads_a_handlers_kv_per_tenant() {
    let d = Daemon::start();
    d.deploy_example("tenant-analytics");
    let events = json!([
        {"type": "order.placed", "tenant": "acme"},
        {"type": "order.placed", "tenant": "acme"},
        {"type": "order.shipped", "tenant": "acme"},
    ]);
    d.publish(&events, true).expect(200);

    let args = [
        "kv",
        "list",
        "tenant-analytics",
        "--tenant",
        "acme",
        "--prefix",
        "events:type:",
    ];
    let out = d.cli(&args).expect(0);
    assert!(out.stdout.starts_with("KEY"), "{out}");
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("events:type:order.placed"))
        .unwrap_or_else(|| panic!("no order.placed row: {out}"));
    assert_eq!(row.split_whitespace().nth(1), Some("2"), "{out}");
    assert!(out.stdout.contains("events:type:order.shipped"), "{out}");

    let out = d.cli(&[&args[..], &["--limit", "1"]].concat()).expect(0);
    assert_eq!(out.stdout.lines().count(), 2, "a header and one key: {out}");
    assert!(out.stderr.contains("more keys: --cursor "), "{out}");
    let out = d.cli(&[&args[..], &["--json"]].concat()).expect(0);
    assert_eq!(array(&out.json(), "entries").len(), 2, "{out}");

    let get = [
        "kv",
        "get",
        "tenant-analytics",
        "events:type:order.placed",
        "--tenant",
        "acme",
    ];
    let out = d.cli(&get).expect(0);
    assert_eq!(out.stdout.trim(), "2", "{out}");
    // Another tenant's namespace does not hold it; a missing handler is named.
    let out = d
        .cli(&[&get[..4], &["--tenant", "globex"]].concat())
        .expect(1);
    assert!(out.stderr.contains("HTTP 404"), "{out}");
    let out = d.cli(&["kv", "list", "nope", "--tenant", "acme"]).expect(1);
    assert!(out.stderr.contains("handler nope"), "{out}");
    // A read token of another tenant may not read acme's.
    let globex = d.token("globex-reader", &["read"], &["globex"]);
    let out = d.cli_as(&globex, &get).expect(1);
    assert!(out.stderr.contains("acme"), "{out}");
    d.cli_as(
        &globex,
        &["kv", "list", "tenant-analytics", "--tenant", "globex"],
    )
    .expect(0);
}
