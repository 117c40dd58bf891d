"""Secrets through the official ``azure-keyvault-secrets`` client: set/get (latest and by version),
property updates, paging of lists and version lists, soft delete → recover → purge, not-found and
conflict errors, disabled versions and purge protection (keyvault-api.md §4.1, §6, §7, §9, §16).
"""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from support import data_plane, error_code, inner_error_code, ops, unique

pytestmark = pytest.mark.usefixtures("emulator")


def test_set_then_get_latest_and_each_version(secret_client, emulator):
    name = unique("sec")
    vault_url = emulator.vault_url("kv1")
    first = secret_client.set_secret(name, "value-one", content_type="text/plain", tags={"gen": "1"})
    second = secret_client.set_secret(name, "value-two", content_type="application/json", tags={"gen": "2"})

    assert first.name == name and second.name == name
    assert first.properties.version != second.properties.version
    assert first.id == f"{vault_url}/secrets/{name}/{first.properties.version}"
    assert first.properties.vault_url == vault_url
    assert len(first.properties.version) == 32 and first.properties.version == first.properties.version.lower()

    latest = secret_client.get_secret(name)
    assert latest.value == "value-two"
    assert latest.properties.version == second.properties.version
    assert latest.properties.content_type == "application/json"
    assert latest.properties.tags == {"gen": "2"}
    assert latest.properties.enabled is True
    assert latest.properties.created_on is not None and latest.properties.updated_on is not None
    assert "Recoverable" in latest.properties.recovery_level

    old = secret_client.get_secret(name, first.properties.version)
    assert old.value == "value-one"
    assert old.id == first.id
    assert old.properties.content_type == "text/plain"
    assert old.properties.tags == {"gen": "1"}


def test_latest_get_uses_trailing_slash_path(secret_client, control):
    name = unique("slash")
    secret_client.set_secret(name, "v")
    control.clear_log()
    secret_client.get_secret(name)
    gets = ops(data_plane(control.log()), "secrets.get")
    assert gets and all(entry["status"] == 200 for entry in gets)
    assert gets[-1]["path"].rstrip("/") == f"/secrets/{name}"


def test_update_properties_of_latest_and_of_a_version(secret_client):
    name = unique("upd")
    v1 = secret_client.set_secret(name, "one", tags={"a": "1"})
    v2 = secret_client.set_secret(name, "two")

    updated = secret_client.update_secret_properties(name, content_type="text/csv", tags={"owner": "ops", "tier": "1"})
    assert updated.version == v2.properties.version
    assert updated.content_type == "text/csv"
    assert updated.tags == {"owner": "ops", "tier": "1"}

    older = secret_client.update_secret_properties(name, v1.properties.version, tags={"a": "2"})
    assert older.version == v1.properties.version
    assert older.tags == {"a": "2"}

    latest = secret_client.get_secret(name)
    assert latest.value == "two"
    assert latest.properties.tags == {"owner": "ops", "tier": "1"}
    assert latest.properties.content_type == "text/csv"
    assert secret_client.get_secret(name, v1.properties.version).properties.tags == {"a": "2"}


def test_disabled_secret_get_is_forbidden(secret_client):
    name = unique("off")
    created = secret_client.set_secret(name, "hidden", enabled=False)
    assert created.properties.enabled is False

    with pytest.raises(HttpResponseError) as caught:
        secret_client.get_secret(name)
    assert caught.value.status_code == 403
    assert error_code(caught.value) == "Forbidden"
    assert inner_error_code(caught.value) == "SecretDisabled"

    # Disabled versions are still listed, and re-enabling makes the value readable again.
    listed = [p for p in secret_client.list_properties_of_secret_versions(name)]
    assert [p.enabled for p in listed] == [False]
    secret_client.update_secret_properties(name, created.properties.version, enabled=True)
    assert secret_client.get_secret(name).value == "hidden"


def test_disabling_a_version_through_update(secret_client):
    name = unique("dis")
    v1 = secret_client.set_secret(name, "one")
    secret_client.update_secret_properties(name, v1.properties.version, enabled=False)
    with pytest.raises(HttpResponseError) as caught:
        secret_client.get_secret(name, v1.properties.version)
    assert caught.value.status_code == 403


@pytest.mark.parametrize("page_size", [25, None], ids=["max_page_size=25", "default-page-size"])
def test_list_pages_through_many_secrets(secret_client, control, page_size):
    prefix = unique("page")
    names = [f"{prefix}-{i:03d}" for i in range(62)]
    for name in names:
        secret_client.set_secret(name, "x")
    control.clear_log()

    kwargs = {"max_page_size": page_size} if page_size else {}
    pages = [list(page) for page in secret_client.list_properties_of_secrets(**kwargs).by_page()]

    listed = [item.name for page in pages for item in page]
    assert sorted(listed) == sorted(names), "every secret listed exactly once"
    assert len(pages) >= 3
    assert all(len(page) <= 25 for page in pages)
    for page in pages:
        for item in page:
            assert item.id == f"{item.vault_url}/secrets/{item.name}", "list ids carry no version"
            assert item.version is None

    lists = ops(data_plane(control.log()), "secrets.list")
    assert len(lists) >= 3
    assert all(entry["status"] == 200 and entry["hasAuthorization"] for entry in lists)
    if page_size:
        assert all("maxresults=25" in str(entry.get("query")) for entry in lists)


def test_list_versions_pages(secret_client):
    name = unique("vers")
    versions = [secret_client.set_secret(name, f"value-{i}").properties.version for i in range(31)]

    pages = [list(p) for p in secret_client.list_properties_of_secret_versions(name, max_page_size=10).by_page()]
    assert len(pages) >= 4
    listed = [item.version for page in pages for item in page]
    assert sorted(listed) == sorted(versions), "every version listed exactly once"
    for page in pages:
        for item in page:
            assert item.name == name
            assert item.id.endswith(f"/secrets/{name}/{item.version}")

    default_paged = [item.version for item in secret_client.list_properties_of_secret_versions(name)]
    assert sorted(default_paged) == sorted(versions)


def test_versions_of_unknown_name_is_an_empty_list(secret_client):
    assert list(secret_client.list_properties_of_secret_versions(unique("nothing"))) == []


def test_not_found_errors(secret_client):
    name = unique("missing")
    with pytest.raises(ResourceNotFoundError) as caught:
        secret_client.get_secret(name)
    assert caught.value.status_code == 404
    assert error_code(caught.value) == "SecretNotFound"

    secret_client.set_secret(name, "present")
    with pytest.raises(ResourceNotFoundError):
        secret_client.get_secret(name, "0" * 32)
    with pytest.raises(ResourceNotFoundError):
        secret_client.get_deleted_secret(name)
    with pytest.raises(ResourceNotFoundError):
        secret_client.begin_delete_secret(unique("never"))
    with pytest.raises(ResourceNotFoundError):
        secret_client.update_secret_properties(unique("never"), tags={"a": "b"})


def test_names_are_case_insensitive(secret_client):
    name = unique("MixedCase")
    secret_client.set_secret(name, "v1")
    fetched = secret_client.get_secret(name.lower())
    assert fetched.value == "v1"
    assert fetched.name == name, "the name is echoed as first created"
    secret_client.set_secret(name.upper(), "v2")
    assert [p.name for p in secret_client.list_properties_of_secrets()] == [name]
    assert len(list(secret_client.list_properties_of_secret_versions(name))) == 2


def test_delete_recover_delete_purge(secret_client):
    name = unique("life")
    v1 = secret_client.set_secret(name, "one", tags={"k": "v"})
    v2 = secret_client.set_secret(name, "two")

    poller = secret_client.begin_delete_secret(name)
    poller.wait()
    deleted = poller.result()
    assert deleted.name == name
    assert deleted.recovery_id and deleted.recovery_id.endswith(f"/deletedsecrets/{name}")
    assert deleted.deleted_date is not None and deleted.scheduled_purge_date is not None
    assert deleted.scheduled_purge_date > deleted.deleted_date

    with pytest.raises(ResourceNotFoundError):
        secret_client.get_secret(name)
    assert name not in [p.name for p in secret_client.list_properties_of_secrets()]
    fetched = secret_client.get_deleted_secret(name)
    assert fetched.name == name and fetched.recovery_id == deleted.recovery_id
    assert name in [d.name for d in secret_client.list_deleted_secrets()]

    recover = secret_client.begin_recover_deleted_secret(name)
    recover.wait()
    recovered = recover.result()
    assert recovered.name == name
    assert recovered.version == v2.properties.version
    assert secret_client.get_secret(name).value == "two"
    old = secret_client.get_secret(name, v1.properties.version)
    assert old.value == "one" and old.properties.tags == {"k": "v"}
    with pytest.raises(ResourceNotFoundError):
        secret_client.get_deleted_secret(name)

    secret_client.begin_delete_secret(name).wait()
    assert secret_client.purge_deleted_secret(name) is None
    with pytest.raises(ResourceNotFoundError):
        secret_client.get_deleted_secret(name)
    with pytest.raises(ResourceNotFoundError):
        secret_client.get_secret(name)
    with pytest.raises(ResourceNotFoundError):
        secret_client.purge_deleted_secret(name)
    assert name not in [d.name for d in secret_client.list_deleted_secrets()]

    # The name is free again after the purge.
    assert secret_client.set_secret(name, "three").value == "three"


def test_create_over_soft_deleted_name_conflicts(secret_client):
    name = unique("ghost")
    secret_client.set_secret(name, "v")
    secret_client.begin_delete_secret(name).wait()

    with pytest.raises(ResourceExistsError) as caught:
        secret_client.set_secret(name, "again")
    assert caught.value.status_code == 409
    assert error_code(caught.value) == "Conflict"
    assert inner_error_code(caught.value) == "ObjectIsDeletedButRecoverable"


def test_list_deleted_pages(secret_client):
    prefix = unique("gone")
    names = [f"{prefix}-{i:02d}" for i in range(27)]
    for name in names:
        secret_client.set_secret(name, "v")
        secret_client.begin_delete_secret(name).wait()
    pages = [list(p) for p in secret_client.list_deleted_secrets(max_page_size=10).by_page()]
    assert len(pages) >= 3
    listed = [d.name for page in pages for d in page]
    assert sorted(listed) == sorted(names)
    assert all(d.recovery_id and d.deleted_date for page in pages for d in page)


def test_purge_protected_vault_refuses_purge(make_secret_client, control):
    vault = control.create_vault("kvpp", purgeProtection=True, recoverableDays=7)
    assert vault["url"]
    client = make_secret_client(url=vault["url"])
    name = unique("keep")
    created = client.set_secret(name, "v")
    assert "Purgeable" not in created.properties.recovery_level
    client.begin_delete_secret(name).wait()

    with pytest.raises(HttpResponseError) as caught:
        client.purge_deleted_secret(name)
    assert caught.value.status_code == 403
    assert error_code(caught.value) == "Forbidden"
    assert client.get_deleted_secret(name).name == name, "the refused purge left the secret deleted"

    client.begin_recover_deleted_secret(name).wait()
    assert client.get_secret(name).value == "v"


def test_soft_deleted_secret_expires_at_scheduled_purge_date(secret_client, control):
    name = unique("expire")
    secret_client.set_secret(name, "v")
    poller = secret_client.begin_delete_secret(name)
    poller.wait()
    deleted = poller.result()
    retention = (deleted.scheduled_purge_date - deleted.deleted_date).total_seconds()
    assert 7 * 86400 <= retention <= 90 * 86400

    control.advance_time(int(retention) - 3600)
    assert secret_client.get_deleted_secret(name).name == name, "still recoverable an hour before"
    control.advance_time(2 * 3600)
    with pytest.raises(ResourceNotFoundError):
        secret_client.get_deleted_secret(name)
    assert name not in [d.name for d in secret_client.list_deleted_secrets()]
    assert secret_client.set_secret(name, "new").value == "new", "the expired name is free again"
