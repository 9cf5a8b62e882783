"""Drives a Hookbox daemon through a client that openapi-python-client
generated from the daemon's own `GET /v1/openapi.json`, using only the typed
models the document describes: deploys a handler whose manifest sets a
subscription with filters, limits, a delivery policy with a breaker, and a
config; publishes an event and waits for its outcome; disables the handler
without a body and replaces its config with a JSON value that is not an
object. Any refusal fails (a non-2xx answer raises).

Run by tests/tests/daemon/openapi_client.rs:
    python generated_client.py URL ADMIN_TOKEN COMPONENT.wasm
with the generated package `hookbox_client` on PYTHONPATH.
"""

import io
import sys

from hookbox_client import AuthenticatedClient
from hookbox_client.api.events import publish_events
from hookbox_client.api.handlers import (
    deploy_handler,
    disable_handler,
    enable_handler,
    set_handler_config,
)
from hookbox_client.models import (
    BreakerSpec,
    Capability,
    DeliveryPolicy,
    DeployForm,
    EventInput,
    FilterType0,
    FilterType0Kind,
    FilterType2,
    FilterType2Kind,
    LimitsSpec,
    Manifest,
    Priority,
    Subscription,
)
from hookbox_client.types import File


def ok(what, response, status):
    if response.status_code != status:
        sys.exit(f"{what}: {response.status_code} {response.content!r}")
    return response.parsed


def main():
    url, token, component = sys.argv[1:4]
    client = AuthenticatedClient(base_url=url, token=token, timeout=60.0)
    manifest = Manifest(
        name="generated",
        description="deployed by a generated client",
        subscription=Subscription(
            events=["ping"],
            tenants=["acme"],
            filters=[
                FilterType0(kind=FilterType0Kind.EQUALS, pointer="/n", value=1),
                FilterType2(kind=FilterType2Kind.MAX_AGE, max_age_ms=600000),
            ],
        ),
        config={"greeting": "hi"},
        capabilities=list(Capability),
        limits=LimitsSpec(fuel=100000000, timeout_ms=5000),
        delivery=DeliveryPolicy(
            max_attempts=3,
            initial_backoff_ms=100,
            breaker=BreakerSpec(consecutive_failures=5, cooldown_ms=1000),
        ),
    )
    with open(component, "rb") as f:
        wasm = f.read()
    form = DeployForm(
        manifest=manifest,
        component=File(payload=io.BytesIO(wasm), file_name="handler.wasm",
                       mime_type="application/wasm"),
    )
    deployed = ok("deploy", deploy_handler.sync_detailed(client=client, body=form), 201)
    assert deployed.version.manifest.subscription.filters[1].max_age_ms == 600000
    print(f"deployed {deployed.handler.name} v{deployed.version.version}")

    event = EventInput(type_="ping", tenant="acme", payload={"n": 1}, priority=Priority.HIGH)
    published = ok(
        "publish",
        publish_events.sync_detailed(client=client, body=event, wait=True, timeout="30s"),
        200,
    )
    outcome = published.outcomes[0]
    assert outcome.complete, outcome
    assert [d.handler for d in outcome.deliveries] == ["generated"], outcome
    print(f"delivered {outcome.deliveries[0].outcome}")

    # A batch is the other form of the body.
    batch = [EventInput(type_="ping", tenant="acme", payload={"n": 2})]
    accepted = ok("publish a batch",
                  publish_events.sync_detailed(client=client, body=batch), 202)
    assert accepted.events[0].handlers == [], accepted  # the filter wants n = 1

    ok("disable without a body",
       disable_handler.sync_detailed("generated", client=client), 200)
    ok("enable", enable_handler.sync_detailed("generated", client=client), 200)
    record = ok("config",
                set_handler_config.sync_detailed("generated", client=client, body=[1, "two"]),
                200)
    assert record.config == [1, "two"], record.config
    print("config replaced")


main()
