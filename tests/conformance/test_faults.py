"""Fault injection and throttling seen through the official SDK's retry policy: 429 with
``Retry-After``, with ``retry-after-ms`` and with no hint at all, 5xx and connection resets, empty
and short list pages, fault scoping by vault and operation, and the throttle budget model
(keyvault-api.md §6, §9.1, §16; emulator README "Control plane").
"""

from __future__ import annotations

import time

import pytest
from azure.core.exceptions import HttpResponseError

from support import data_plane, error_code, ops, unique

pytestmark = pytest.mark.usefixtures("emulator")


def _statuses(control, op):
    return [entry["status"] for entry in ops(data_plane(control.log()), op)]


def _seeded_secret(client):
    name = unique("flt")
    client.set_secret(name, "payload")
    return name


@pytest.mark.parametrize(
    "hint",
    [{"retryAfterSeconds": 0}, {"retryAfterMs": 20}, {}],
    ids=["retry-after-0", "retry-after-ms", "no-retry-after"],
)
def test_two_throttled_requests_then_success(secret_client, control, hint):
    name = _seeded_secret(secret_client)
    control.clear_log()
    control.add_fault(op="secrets.get", kind="throttle", count=2, **hint)

    assert secret_client.get_secret(name).value == "payload"

    assert _statuses(control, "secrets.get") == [429, 429, 200]
    (rule,) = control.faults()
    assert rule["fired"] == 2 and rule["remaining"] == 0
    counters = control.counters()
    assert counters["vaults"]["kv1"]["secrets.get"] == 3
    assert counters["throttled"].get("kv1", 0) + counters["faulted"].get("kv1", 0) >= 2


def test_retry_after_seconds_is_sent_and_honoured(secret_client, control):
    name = _seeded_secret(secret_client)
    control.add_fault(op="secrets.get", kind="throttle", count=1, retryAfterSeconds=1)
    started = time.monotonic()
    assert secret_client.get_secret(name).value == "payload"
    assert time.monotonic() - started >= 0.9, "the SDK waited for Retry-After: 1"


def test_throttled_post_is_retried_only_with_retry_after(secret_client, control):
    """azure-core retries a throttled POST only when the response carries ``Retry-After``, so this
    also proves the emulator adds that header when asked to and omits it by default (§16)."""
    name = _seeded_secret(secret_client)
    control.add_fault(op="secrets.backup", kind="throttle", count=1, retryAfterSeconds=0)
    assert secret_client.backup_secret(name)

    control.clear_log()
    control.add_fault(op="secrets.backup", kind="throttle", count=1)
    with pytest.raises(HttpResponseError) as caught:
        secret_client.backup_secret(name)
    assert caught.value.status_code == 429
    assert error_code(caught.value) == "Throttled"
    assert _statuses(control, "secrets.backup") == [429]


def test_persistent_throttling_surfaces_429(make_secret_client, control):
    client = make_secret_client("kv1", retry_total=2)
    name = _seeded_secret(client)
    control.clear_log()
    control.add_fault(op="secrets.get", kind="throttle", count=10, retryAfterMs=1)
    with pytest.raises(HttpResponseError) as caught:
        client.get_secret(name)
    assert caught.value.status_code == 429
    assert error_code(caught.value) == "Throttled"
    assert _statuses(control, "secrets.get") == [429, 429, 429]


@pytest.mark.parametrize("kind", ["error500", "error503"])
def test_server_errors_are_retried(secret_client, control, kind):
    name = _seeded_secret(secret_client)
    control.clear_log()
    control.add_fault(op="secrets.get", kind=kind, count=1)
    assert secret_client.get_secret(name).value == "payload"
    assert _statuses(control, "secrets.get")[-1] == 200
    assert _statuses(control, "secrets.get")[0] == int(kind[-3:])


def test_connection_reset_is_retried(secret_client, control):
    name = _seeded_secret(secret_client)
    control.add_fault(op="secrets.get", kind="reset", count=1)
    assert secret_client.get_secret(name).value == "payload"
    (rule,) = control.faults()
    assert rule["fired"] == 1


@pytest.mark.parametrize("kind", ["emptyPage", "shortPage"])
def test_list_survives_empty_and_short_pages(secret_client, control, kind):
    prefix = unique("pg")
    names = [f"{prefix}-{i:02d}" for i in range(30)]
    for name in names:
        secret_client.set_secret(name, "v")
    control.clear_log()
    rule = {"op": "secrets.list", "kind": kind, "count": 2}
    if kind == "shortPage":
        rule["pageSize"] = 3
    control.add_fault(**rule)

    pages = [list(p) for p in secret_client.list_properties_of_secrets(max_page_size=10).by_page()]
    assert sorted(item.name for page in pages for item in page) == sorted(names)
    if kind == "emptyPage":
        assert [] in pages, "an empty page with a nextLink was served and followed"
    else:
        assert len(pages[0]) == 3
    (fault,) = control.faults()
    assert fault["fired"] == 2


def test_faults_are_scoped_by_vault_and_operation(make_secret_client, control):
    kv1, kv2 = make_secret_client("kv1"), make_secret_client("kv2")
    name1, name2 = _seeded_secret(kv1), _seeded_secret(kv2)
    control.add_fault(vault="kv2", op="secrets.*", kind="throttle", count=1, retryAfterSeconds=0)
    control.clear_log()

    kv1.get_secret(name1)
    assert _statuses(control, "secrets.get") == [200], "kv1 untouched by a kv2 rule"
    kv2.get_secret(name2)
    assert _statuses(control, "secrets.get") == [200, 429, 200]


def test_throttle_budget_model(make_secret_client, control):
    client = make_secret_client("kv1", retry_total=0)
    control.request(
        "PUT", "throttle", 200, json={"enabled": True, "vaultBudget": 3, "windowSeconds": 60, "subscriptionMultiplier": 5}
    )
    name = _seeded_secret(client)  # 1 of 3
    client.get_secret(name)  # 2 of 3
    client.get_secret(name)  # 3 of 3
    with pytest.raises(HttpResponseError) as caught:
        client.get_secret(name)
    assert caught.value.status_code == 429
    assert error_code(caught.value) == "Throttled"
    assert control.counters()["throttled"].get("kv1", 0) >= 1
