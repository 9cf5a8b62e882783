"""The Hookbox dashboard in a real headless Chromium, driven by Playwright.

Run by `tests/tests/browser.rs` (part of `cargo test --workspace`) against a
real `hookbox serve`; it passes everything in one JSON file:

    python3 tests/browser/dashboard.py SETUP.json

SETUP holds `url`, `admin_token`, `tenant_token` (read, tenant `acme`),
`example` (component and manifest paths of an example handler, with its
`name` and an `event` it handles), `markup` (a component whose logs and
error are HTML, and its manifest), and `shots` (where the screenshots go);
or, for the load run of `cargo bench -p hookbox-tests --bench dashboard`,
`url`, `admin_token`, `shots` and `bench` (see `bench()`).

Every page is checked as a person would see it, and the whole run listens
for dialogs (an `alert` from markup a handler controls), uncaught page
errors and console errors: any of them fails the test. Prints one
`RESULT {json}` line with what it measured.
"""

import json
import re
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright, expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Generous bounds for waits in a loaded CI machine; durations are measured
# and reported, not asserted, except where the issue sets a bound.
WAIT_MS = 15000


class Api:
    """The admin API over plain HTTP, for setting the scene."""

    def __init__(self, url, token):
        self.url = url
        self.token = token

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=60) as res:
            text = res.read().decode()
            return json.loads(text) if text else None

    def publish(self, events, wait=False):
        path = "/v1/events?wait=true" if wait else "/v1/events"
        return [e["id"] for e in self.call("POST", path, events)["events"]]


class Watch:
    """Everything the page must never do."""

    def __init__(self, page):
        self.problems = []
        page.on("dialog", self.dialog)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("console", self.console)

    def dialog(self, d):
        self.problems.append(f"a {d.type} dialog opened: {d.message!r}")
        d.dismiss()

    def console(self, msg):
        # Chromium logs every non-2xx fetch as a console error; the 403s a
        # tenant token gets on purpose are answers, not page errors.
        if msg.type == "error" and "Failed to load resource" not in msg.text:
            self.problems.append(f"console error: {msg.text}")

    def check(self, where):
        assert not self.problems, f"{where}: {self.problems}"


def shot(page, shots, name):
    # Nothing the scripts failed to fill in shows as `null` or `undefined`.
    text = page.inner_text("#main")
    assert "undefined" not in text and "null" not in text.splitlines(), f"{name}: {text}"
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def sign_in(page, url, token):
    page.goto(url + "/")
    expect(page.locator("#sign-in")).to_be_visible()
    page.fill("#token", token)
    page.click("#sign-in button[type=submit]")
    expect(page.locator("#nav")).to_be_visible()


def goto(page, name):
    page.click(f'#nav a[data-page="{name}"]')
    expect(page.locator(f'.page[data-page="{name}"]')).to_be_attached()


def deploy(page, component, manifest_path=None, manifest_text=None):
    page.set_input_files("#deploy-component", component)
    if manifest_path:
        page.set_input_files("#deploy-manifest", manifest_path)
    else:
        page.fill("#deploy-manifest-text", manifest_text)
    page.click("#deploy-form button[type=submit]")
    result = page.locator("#deploy-result .notice")
    expect(result).to_be_visible(timeout=WAIT_MS)
    return result


def live_row(page, event_id, handler):
    return page.locator(f'#live-table tr[data-event="{event_id}"][data-handler="{handler}"]')


def main(setup):
    shots = Path(setup["shots"])
    shots.mkdir(parents=True, exist_ok=True)
    url = setup["url"]
    admin = Api(url, setup["admin_token"])
    result = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(WAIT_MS)
        watch = Watch(page)
        try:
            if setup.get("bench"):
                result["bench"] = bench(page, admin, setup["bench"], shots)
            else:
                scenario(page, watch, setup, admin, url, shots, result)
            watch.check("the whole run")
        except BaseException:
            print(f"page problems so far: {watch.problems}", flush=True)
            raise
        browser.close()
    print("RESULT " + json.dumps(result), flush=True)


def scenario(page, watch, setup, admin, url, shots, result):
    ex = setup["example"]
    mk = setup["markup"]

    # The page itself: a strict CSP, no inline script.
    res = page.goto(url + "/")
    csp = res.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp, csp
    shot(page, shots, "sign-in")

    # A wrong token is refused with the API's words.
    page.fill("#token", "hbx_not_a_token")
    page.click("#sign-in button[type=submit]")
    expect(page.locator("#sign-in-error")).to_contain_text("invalid or expired token")

    # Sign in; deploy the example handler and the markup handler by upload.
    sign_in(page, url, setup["admin_token"])
    expect(page.locator("#who")).to_contain_text("admin")
    bad = deploy(page, ex["component"], manifest_text='{"name": "x", "subscription": {}}')
    expect(bad).to_have_class("notice error")
    api_words = bad.inner_text()
    assert "events" in api_words, f"the refusal should name the missing field: {api_words}"
    ok = deploy(page, ex["component"], manifest_path=ex["manifest"])
    expect(ok).to_contain_text(f"Deployed {ex['name']} v1")
    ok = deploy(page, mk["component"], manifest_text=mk["manifest"])
    expect(ok).to_contain_text("Deployed markup v1")
    expect(page.locator(f'#handlers-table tr[data-handler="{ex["name"]}"]')).to_be_visible()
    markup_row = page.locator('#handlers-table tr[data-handler="markup"]')
    expect(markup_row).to_contain_text("<img src=x onerror=alert(6)>")

    # Live: events arrive without a reload.
    goto(page, "live")
    expect(page.locator("#stream-state")).to_have_text("live")
    sent = time.monotonic()
    [ok_id] = admin.publish([dict(ex["event"], tenant="acme")])
    expect(live_row(page, ok_id, ex["name"])).to_be_visible()
    result["publish_to_screen_ms"] = round((time.monotonic() - sent) * 1000)
    assert result["publish_to_screen_ms"] < 1000, (
        f"the delivery took {result['publish_to_screen_ms']} ms to show"
    )
    [markup_id] = admin.publish([{"type": "markup", "tenant": "acme", "payload": {"html": "<i>x</i>"}}])
    row = live_row(page, markup_id, "markup")
    expect(row).to_contain_text("handler_error")
    expect(row).to_contain_text("<img src=x onerror=alert(3)>")

    # Pause: nothing new shows until resumed.
    page.click("#live-pause")
    [paused_id] = admin.publish([dict(ex["event"], tenant="acme")], wait=True)
    page.wait_for_timeout(300)
    assert live_row(page, paused_id, ex["name"]).count() == 0, "a paused view changed"
    page.click("#live-pause")
    expect(live_row(page, paused_id, ex["name"])).to_be_visible()

    # A successful attempt: what it emitted.
    live_row(page, ok_id, ex["name"]).click()
    detail = page.locator("#event-detail")
    expect(detail.locator(".emitted")).to_contain_text("zulip.send_message")
    expect(detail.locator(".emitted")).to_contain_text("deploy")

    # Filters.
    page.fill("#f-handler", "markup")
    expect(live_row(page, ok_id, ex["name"])).to_have_count(0)
    expect(row).to_be_visible()
    page.fill("#f-handler", "")
    shot(page, shots, "live")

    # One event: every attempt, its error and its logs, as text.
    row.click()
    detail = page.locator("#event-detail")
    expect(detail).to_contain_text("<img src=x onerror=alert(3)><script>alert(4)</script>")
    logs = detail.locator(".log-lines")
    expect(logs).to_contain_text("<img src=x onerror=alert(1)>")
    expect(logs).to_contain_text("<script>alert(2)</script>")
    expect(logs).to_contain_text("html=<b onmouseover=alert(5)>bold</b>")
    assert detail.locator("img, script, b").count() == 0, "markup became elements"
    shot(page, shots, "event")

    # Handlers: config, a second version and a rollback, disable.
    goto(page, "handlers")
    # The resident line: code loaded for the handlers that got deliveries.
    expect(page.locator("#resident")).to_contain_text(
        re.compile(r"Loaded: [1-9]\d* of \d+ handlers, [1-9]\d* modules, .* \d+ loads")
    )
    page.click(f'#handlers-table a.name:text-is("{ex["name"]}")')
    d = page.locator("#handler-detail")
    expect(d).to_contain_text("Active version")
    config = {"keywords": ["deploy"], "reply": "On it: *{keyword}*."}
    page.fill("#handler-config", json.dumps(config))
    page.click("#save-config")
    expect(d.locator("#handler-config")).to_have_value(json.dumps(config, indent=2))
    assert admin.call("GET", f"/v1/handlers/{ex['name']}")["handler"]["config"] == config
    page.fill("#handler-config", "{not json")
    page.click("#save-config")
    expect(d.locator(".notice.error")).to_contain_text("not JSON")
    expect(deploy(page, ex["component"], manifest_path=ex["manifest"])).to_contain_text("v2")
    page.click(f'#handlers-table a.name:text-is("{ex["name"]}")')
    page.click('#handler-detail button.rollback[data-version="1"]')
    expect(page.locator(f'#handlers-table tr[data-handler="{ex["name"]}"] td.version')).to_have_text("v1")
    page.fill("#disable-reason", "maintenance <b>now</b>")
    page.click("#disable-handler")
    status = page.locator(f'#handlers-table tr[data-handler="{ex["name"]}"] td.status')
    expect(status).to_have_text("disabled")
    assert admin.call("GET", f"/v1/handlers/{ex['name']}")["handler"]["enabled"] is False
    expect(d.locator("#enable-handler")).to_be_visible()
    shot(page, shots, "handlers")

    # Dead letters: the markup delivery, inspected and replayed.
    goto(page, "dead-letters")
    dl = page.locator('#dl-table tr[data-handler="markup"]')
    expect(dl).to_have_count(1)
    expect(dl).to_contain_text("<img src=x onerror=alert(3)>")
    dl.click()
    expect(page.locator("#dl-detail")).to_contain_text('"html": "<i>x</i>"')
    shot(page, shots, "dead-letters")
    first = dl.get_attribute("data-dead-letter")
    page.click("#dl-replay-one")
    expect(page.locator("#dl-messages .notice.ok")).to_contain_text("Replayed")
    # The replay runs again and, this handler being what it is, fails
    # again into a new dead letter, which the list shows once reloaded.
    again = None
    deadline = time.monotonic() + WAIT_MS / 1000
    while again is None and time.monotonic() < deadline:
        ids = [x["id"] for x in admin.call("GET", "/v1/dead-letters?handler=markup")["dead_letters"]]
        again = next((i for i in ids if i != first), None)
        time.sleep(0.05)
    assert again, "the replayed delivery did not run"
    page.click("#dl-apply")
    expect(page.locator(f'#dl-table tr[data-dead-letter="{again}"]')).to_be_visible()
    expect(page.locator(f'#dl-table tr[data-dead-letter="{first}"]')).to_have_count(0)

    # Charts: drawn from the series.
    goto(page, "charts")
    summary = page.locator("#chart-summary")
    # Polled from here: the page's CSP forbids the eval that a string
    # predicate for `wait_for_function` needs once it has to poll.
    until(lambda: int(summary.get_attribute("data-total") or 0) >= 4, WAIT_MS / 1000)
    expect(page.locator("#chart-legend")).to_contain_text("handler_error")
    shot(page, shots, "charts")

    # Sources: no Zulip realm here; the audit log has the changes.
    goto(page, "sources")
    expect(page.locator("#zulip-realms")).to_contain_text("No Zulip realm")
    bus = page.locator('#redis-buses tr[data-bus="bus"]')
    expect(bus).to_contain_text("redis://127.0.0.1:9/0")
    expect(bus).to_contain_text("disconnected")
    slack = page.locator('#webhook-endpoints tr[data-endpoint="ops-slack"]')
    expect(slack).to_contain_text("slack")
    expect(slack).to_contain_text("acme")
    expect(slack).to_contain_text("webhook:ops-slack")
    audit = page.locator("#audit-log")
    expect(audit).to_contain_text("disable")
    expect(audit).to_contain_text("rollback")
    shot(page, shots, "sources")
    watch.check("signed in as admin")

    # A token restricted to tenant acme: only its tenant, nothing global.
    page.click("#sign-out")
    sign_in(page, url, setup["tenant_token"])
    expect(page.locator("#who")).to_contain_text("tenants acme")
    expect(page.locator('#nav a[data-page="handlers"]')).to_be_hidden()
    expect(page.locator('#nav a[data-page="charts"]')).to_be_hidden()
    page.goto(url + "/#/handlers")
    expect(page.locator(".page .notice.error")).to_contain_text("restricted to tenants")
    page.goto(url + "/#/charts")
    expect(page.locator(".page .notice.error")).to_contain_text("restricted to tenants")
    goto(page, "live")
    expect(page.locator("#stream-state")).to_have_text("live")
    admin.call("POST", f"/v1/handlers/{ex['name']}/enable", {})
    [other_id] = admin.publish([dict(ex["event"], tenant="other")], wait=True)
    [acme_id] = admin.publish([dict(ex["event"], tenant="acme")], wait=True)
    expect(live_row(page, acme_id, ex["name"])).to_be_visible()
    assert live_row(page, other_id, ex["name"]).count() == 0, "saw another tenant's delivery"
    goto(page, "dead-letters")
    expect(page.locator('#dl-table tr[data-handler="markup"]')).to_have_count(1)
    assert page.locator("#dl-replay-selected").count() == 0, "a read token got replay buttons"
    # Buses and endpoints span tenants: not shown to a tenant's token.
    goto(page, "sources")
    expect(page.locator("#zulip-realms")).to_be_visible()
    assert page.locator("#redis-buses").count() == 0, "a tenant token saw the Redis buses"
    assert page.locator("#webhook-endpoints").count() == 0, "a tenant token saw the webhook endpoints"
    shot(page, shots, "tenant")
    watch.check("signed in with a tenant token")



def until(check, seconds):
    """Polls `check` every 5 ms until it is true; fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {seconds} s")
        time.sleep(0.005)


def bench(page, admin, b, shots):
    """The handlers page with many handlers, the live view under load.

    `b` holds `handlers` (how many are deployed), `event_types` (one per
    handler, so each event is one delivery), `payload`, `events_per_s` and
    `seconds`. Measures the handlers page from the click in the navigation
    to every row in the table (three times), then sends `events_per_s` for
    `seconds` while the live view is open and reports whether it kept up:
    notices received against deliveries made, notices the stream dropped,
    and the time from a delivery's end to its row on screen.
    """
    out = {}
    sign_in(page, admin.url, admin.token)
    times = []
    for _ in range(3):
        goto(page, "live")
        start = page.evaluate("performance.now()")
        page.click('#nav a[data-page="handlers"]')
        # Polled from here: the page's CSP forbids the eval a string
        # predicate for `wait_for_function` needs.
        rows = page.locator("#handlers-table tbody tr")
        until(lambda: rows.count() >= b["handlers"], 60)
        times.append(page.evaluate("performance.now()") - start)
        out.setdefault("handlers_render_ms", []).append(
            int(page.get_attribute("#handlers-table", "data-render-ms"))
        )
    out["handlers_page_ms"] = [round(t) for t in times]
    shot(page, shots, "bench-handlers")

    goto(page, "live")
    expect(page.locator("#stream-state")).to_have_text("live")
    types = b["event_types"]
    rate = b["events_per_s"]
    batch = max(1, rate // 20)
    sent = 0
    start = time.monotonic()
    end = start + b["seconds"]
    while time.monotonic() < end:
        admin.publish([{"type": types[(sent + k) % len(types)], "payload": b["payload"]}
                       for k in range(batch)])
        sent += batch
        pause = start + sent / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    out["sent"] = sent
    out["send_s"] = round(time.monotonic() - start, 2)
    until(lambda: int(page.get_attribute("#live-stats", "data-received") or 0) >= sent, 300)
    out["all_received_s"] = round(time.monotonic() - start, 2)
    stats = page.eval_on_selector("#live-stats", "e => ({...e.dataset})")
    out["live"] = {k: int(v) for k, v in stats.items()}
    shot(page, shots, "bench-live")
    return out


if __name__ == "__main__":
    main(json.loads(Path(sys.argv[1]).read_text()))
