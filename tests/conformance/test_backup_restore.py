"""Backup and restore through the official SDK clients: blobs carry every version and restore into
the requesting vault (same vault, or another vault of the same geo) with version ids, values, tags
and content types intact; other geos, name conflicts, corrupt blobs and certificate-managed objects
are refused with the service's status codes (keyvault-api.md §8, §9, §16).
"""

from __future__ import annotations

import base64
import json
import os
import re

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from support import error_code, make_certificate, unique

pytestmark = pytest.mark.usefixtures("emulator")


def _make_secret_versions(client, name):
    """Three versions with distinct values, content types and tags; the middle one disabled."""
    made = [
        client.set_secret(name, "alpha", content_type="text/plain", tags={"n": "1"}),
        client.set_secret(name, "beta", content_type="application/json", tags={"n": "2"}, enabled=False),
        client.set_secret(name, "gamma", tags={"n": "3", "extra": "x"}),
    ]
    return {s.properties.version: s for s in made}


def _assert_secret_versions(client, name, expected, vault_url):
    listed = {p.version: p for p in client.list_properties_of_secret_versions(name)}
    assert set(listed) == set(expected), "restore keeps exactly the original version ids"
    for version, original in expected.items():
        props = listed[version]
        assert props.vault_url == vault_url
        assert props.tags == original.properties.tags
        assert props.content_type == original.properties.content_type
        assert props.enabled == original.properties.enabled
        assert props.created_on == original.properties.created_on
        if props.enabled:
            restored = client.get_secret(name, version)
            assert restored.value == original.value
            assert restored.id == f"{vault_url}/secrets/{name}/{version}"


def _delete_and_purge_secret(client, name):
    client.begin_delete_secret(name).wait()
    client.purge_deleted_secret(name)
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret(name)


def test_secret_backup_restore_same_vault_and_second_vault(make_secret_client, emulator):
    kv1, kv2 = make_secret_client("kv1"), make_secret_client("kv2")
    name = unique("bkp")
    versions = _make_secret_versions(kv1, name)
    latest = next(s for s in versions.values() if s.value == "gamma")  # set last

    blob = kv1.backup_secret(name)
    assert isinstance(blob, bytes) and len(blob) > 0
    assert b"gamma" not in blob and b"alpha" not in blob, "the blob is opaque"

    _delete_and_purge_secret(kv1, name)
    restore_bodies = []
    restored = kv1.restore_secret_backup(
        blob, raw_response_hook=lambda r: restore_bodies.append(json.loads(r.http_response.text()))
    )
    assert "value" not in restore_bodies[-1], "a restore answers without the secret value (§16)"
    assert restored.name == name
    assert restored.version == latest.properties.version
    assert restored.id == latest.id
    _assert_secret_versions(kv1, name, versions, emulator.vault_url("kv1"))
    assert kv1.get_secret(name).value == "gamma"

    restored2 = kv2.restore_secret_backup(blob)
    assert restored2.vault_url == emulator.vault_url("kv2")
    assert restored2.id == f"{emulator.vault_url('kv2')}/secrets/{name}/{latest.properties.version}"
    _assert_secret_versions(kv2, name, versions, emulator.vault_url("kv2"))


def test_restore_into_other_geo_is_refused(make_secret_client):
    kv1, far = make_secret_client("kv1"), make_secret_client("kvfar")
    name = unique("geo")
    kv1.set_secret(name, "v")
    blob = kv1.backup_secret(name)
    with pytest.raises(HttpResponseError) as caught:
        far.restore_secret_backup(blob)
    assert caught.value.status_code == 400
    with pytest.raises(ResourceNotFoundError):
        far.get_secret(name)


def test_restore_conflicts_with_active_and_soft_deleted_name(secret_client):
    name = unique("clash")
    secret_client.set_secret(name, "v")
    blob = secret_client.backup_secret(name)

    with pytest.raises(ResourceExistsError) as active:
        secret_client.restore_secret_backup(blob)
    assert active.value.status_code == 409
    assert error_code(active.value) == "Conflict"

    secret_client.begin_delete_secret(name).wait()
    with pytest.raises(ResourceExistsError) as deleted:
        secret_client.restore_secret_backup(blob)
    assert deleted.value.status_code == 409
    assert error_code(deleted.value) == "Conflict"


def _corruptions(blob: bytes):
    middle = len(blob) // 2
    flipped = blob[:middle] + bytes([blob[middle] ^ 0x01]) + blob[middle + 1 :]
    yield "flipped-byte", flipped
    yield "truncated", blob[: len(blob) // 3]
    yield "random", os.urandom(len(blob))
    yield "not-a-backup", b"hello world"


def test_corrupt_secret_blobs_are_malformed(secret_client):
    name = unique("corrupt")
    secret_client.set_secret(name, "v")
    blob = secret_client.backup_secret(name)
    secret_client.begin_delete_secret(name).wait()
    secret_client.purge_deleted_secret(name)
    for label, bad in _corruptions(blob):
        with pytest.raises(HttpResponseError) as caught:
            secret_client.restore_secret_backup(bad)
        assert caught.value.status_code == 400, label
        assert error_code(caught.value) == "Malformed backup blob", label
    with pytest.raises(ResourceNotFoundError):
        secret_client.get_secret(name)
    # The intact blob still restores.
    assert secret_client.restore_secret_backup(blob).name == name


def test_blob_of_another_collection_is_refused(secret_client, make_key_client):
    keys = make_key_client("kv1")
    name = unique("wrongkind")
    keys.create_ec_key(name, curve="P-256")
    key_blob = keys.backup_key(name)
    with pytest.raises(HttpResponseError) as caught:
        secret_client.restore_secret_backup(key_blob)
    assert caught.value.status_code == 400


def test_backup_of_missing_or_deleted_secret_is_not_found(secret_client):
    with pytest.raises(ResourceNotFoundError):
        secret_client.backup_secret(unique("nothing"))
    name = unique("deleted")
    secret_client.set_secret(name, "v")
    secret_client.begin_delete_secret(name).wait()
    with pytest.raises(ResourceNotFoundError):
        secret_client.backup_secret(name)


def test_key_backup_restore_same_and_second_vault(make_key_client, emulator):
    kv1, kv2 = make_key_client("kv1"), make_key_client("kv2")
    name = unique("kbkp")
    v1 = kv1.create_ec_key(name, curve="P-256", tags={"v": "1"})
    v2 = kv1.create_rsa_key(name, size=2048, tags={"v": "2"})
    blob = kv1.backup_key(name)

    kv1.begin_delete_key(name).wait()
    kv1.purge_deleted_key(name)
    restored = kv1.restore_key_backup(blob)
    assert restored.id == v2.id
    assert restored.key.n == v2.key.n
    assert restored.properties.tags == {"v": "2"}
    old = kv1.get_key(name, v1.properties.version)
    assert old.key.x == v1.key.x and old.properties.tags == {"v": "1"}
    assert {p.version for p in kv1.list_properties_of_key_versions(name)} == {
        v1.properties.version,
        v2.properties.version,
    }

    other = kv2.restore_key_backup(blob)
    assert other.id == f"{emulator.vault_url('kv2')}/keys/{name}/{v2.properties.version}"
    assert other.key.n == v2.key.n
    assert kv2.get_key(name, v1.properties.version).key.y == v1.key.y

    with pytest.raises(ResourceExistsError):
        kv2.restore_key_backup(blob)
    with pytest.raises(HttpResponseError) as far:
        make_key_client("kvfar").restore_key_backup(blob)
    assert far.value.status_code == 400


def test_corrupt_key_blob_is_malformed(key_client):
    name = unique("kcorrupt")
    key_client.create_ec_key(name, curve="P-256")
    blob = key_client.backup_key(name)
    for label, bad in _corruptions(blob):
        with pytest.raises(HttpResponseError) as caught:
            key_client.restore_key_backup(bad)
        assert caught.value.status_code == 400, label
        assert error_code(caught.value) == "Malformed backup blob", label


def test_certificate_managed_key_and_secret_cannot_be_backed_up(
    certificate_client, make_key_client, make_secret_client
):
    name = unique("managed")
    certificate_client.import_certificate(name, make_certificate().pfx())

    with pytest.raises(HttpResponseError) as key_backup:
        make_key_client("kv1").backup_key(name)
    assert key_backup.value.status_code == 403
    assert error_code(key_backup.value) == "Forbidden"

    with pytest.raises(HttpResponseError) as secret_backup:
        make_secret_client("kv1").backup_secret(name)
    assert secret_backup.value.status_code == 403


def test_certificate_backup_restore(make_certificate_client, make_secret_client, make_key_client, emulator):
    kv1, kv2 = make_certificate_client("kv1"), make_certificate_client("kv2")
    name = unique("cbkp")
    first, second = make_certificate("first.example"), make_certificate("second.example")
    v1 = kv1.import_certificate(name, first.pfx(), tags={"gen": "1"})
    v2 = kv1.import_certificate(name, second.pfx(), tags={"gen": "2"})
    blob = kv1.backup_certificate(name)

    kv1.begin_delete_certificate(name).wait()
    kv1.purge_deleted_certificate(name)
    restored = kv1.restore_certificate_backup(blob)
    assert restored.id == v2.id
    assert restored.cer == second.der
    assert restored.properties.tags == {"gen": "2"}
    assert kv1.get_certificate_version(name, v1.properties.version).cer == first.der
    secret = make_secret_client("kv1").get_secret(name)
    assert secret.properties.managed is True and secret.properties.version == v2.properties.version
    assert make_key_client("kv1").get_key(name).id == v2.key_id

    other = kv2.restore_certificate_backup(blob)
    assert other.id == f"{emulator.vault_url('kv2')}/certificates/{name}/{v2.properties.version}"
    assert other.cer == second.der
    assert make_secret_client("kv2").get_secret(name).properties.managed is True
    assert make_key_client("kv2").get_key(name).properties.managed is True

    with pytest.raises(HttpResponseError) as far:
        make_certificate_client("kvfar").restore_certificate_backup(blob)
    assert far.value.status_code == 400


def test_corrupt_certificate_blob_is_malformed(certificate_client):
    name = unique("ccorrupt")
    certificate_client.import_certificate(name, make_certificate().pfx())
    blob = certificate_client.backup_certificate(name)
    certificate_client.begin_delete_certificate(name).wait()
    certificate_client.purge_deleted_certificate(name)
    for label, bad in _corruptions(blob):
        with pytest.raises(HttpResponseError) as caught:
            certificate_client.restore_certificate_backup(bad)
        assert caught.value.status_code == 400, label
        assert error_code(caught.value) == "Malformed backup blob", label


def test_backup_blob_is_unpadded_base64url_on_the_wire(secret_client):
    name = unique("b64")
    secret_client.set_secret(name, "v")
    bodies = []
    blob = secret_client.backup_secret(name, raw_response_hook=lambda response: bodies.append(response.http_response.text()))
    value = json.loads(bodies[-1])["value"]
    assert re.fullmatch(r"[A-Za-z0-9_-]+", value), "backup value is base64url without padding"
    assert base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)) == blob
