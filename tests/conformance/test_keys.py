"""Keys through the official ``azure-keyvault-keys`` client: create (RSA, EC) and import (JWK with
private parts), get latest and by version (public material only), property updates, list and
version paging, soft delete → recover → purge, and not-found/conflict errors (keyvault-api.md §4.2,
§5.3, §6, §7, §16).
"""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.keys import JsonWebKey, KeyCurveName, KeyType
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from support import data_plane, error_code, inner_error_code, ops, unique

pytestmark = pytest.mark.usefixtures("emulator")


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def test_create_rsa_key_and_get_public_material(key_client, emulator):
    name = unique("rsa")
    created = key_client.create_rsa_key(name, size=2048, tags={"purpose": "test"})
    vault_url = emulator.vault_url("kv1")

    assert created.name == name
    assert created.key_type in (KeyType.rsa, "RSA")
    assert created.id == f"{vault_url}/keys/{name}/{created.properties.version}"
    assert created.properties.tags == {"purpose": "test"}
    assert created.properties.enabled is True
    assert len(created.key.n) in (256, 257) and created.key.e
    assert created.key.d is None and created.key.p is None, "private members are never returned"

    fetched = key_client.get_key(name)
    assert fetched.id == created.id
    assert fetched.key.n == created.key.n and fetched.key.e == created.key.e
    assert fetched.key.d is None


def test_create_ec_key_versions_and_specific_get(key_client):
    name = unique("ec")
    v1 = key_client.create_ec_key(name, curve=KeyCurveName.p_256)
    v2 = key_client.create_ec_key(name, curve=KeyCurveName.p_256)
    assert v1.properties.version != v2.properties.version
    assert v1.key.crv in (KeyCurveName.p_256, "P-256")
    assert len(v1.key.x) == 32 and len(v1.key.y) == 32

    latest = key_client.get_key(name)
    assert latest.properties.version == v2.properties.version
    assert latest.key.x == v2.key.x
    older = key_client.get_key(name, v1.properties.version)
    assert older.id == v1.id
    assert older.key.x == v1.key.x and older.key.y == v1.key.y


def test_import_rsa_jwk_keeps_public_numbers(key_client):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = private.private_numbers()
    public = numbers.public_numbers
    jwk = JsonWebKey(
        kty="RSA",
        key_ops=["sign", "verify", "encrypt", "decrypt", "wrapKey", "unwrapKey"],
        n=_int_bytes(public.n),
        e=_int_bytes(public.e),
        d=_int_bytes(numbers.d),
        p=_int_bytes(numbers.p),
        q=_int_bytes(numbers.q),
        dp=_int_bytes(numbers.dmp1),
        dq=_int_bytes(numbers.dmq1),
        qi=_int_bytes(numbers.iqmp),
    )
    name = unique("imp")
    imported = key_client.import_key(name, jwk, tags={"src": "import"})
    assert int.from_bytes(imported.key.n, "big") == public.n
    assert int.from_bytes(imported.key.e, "big") == public.e
    assert imported.key.d is None
    assert imported.properties.tags == {"src": "import"}
    assert key_client.get_key(name).key.n == imported.key.n


def test_import_ec_jwk(key_client):
    private = ec.generate_private_key(ec.SECP256R1())
    numbers = private.private_numbers()
    jwk = JsonWebKey(
        kty="EC",
        crv="P-256",
        key_ops=["sign", "verify"],
        x=numbers.public_numbers.x.to_bytes(32, "big"),
        y=numbers.public_numbers.y.to_bytes(32, "big"),
        d=numbers.private_value.to_bytes(32, "big"),
    )
    imported = key_client.import_key(unique("impec"), jwk)
    assert imported.key.x == numbers.public_numbers.x.to_bytes(32, "big")
    assert imported.key.d is None


def test_update_key_properties(key_client):
    name = unique("updk")
    v1 = key_client.create_ec_key(name, curve="P-256")
    v2 = key_client.create_ec_key(name, curve="P-256")

    updated = key_client.update_key_properties(name, tags={"env": "prod"}, key_operations=["sign"])
    assert updated.properties.version == v2.properties.version
    assert updated.properties.tags == {"env": "prod"}
    assert list(updated.key_operations) == ["sign"]

    older = key_client.update_key_properties(name, v1.properties.version, enabled=False)
    assert older.properties.version == v1.properties.version
    assert older.properties.enabled is False
    assert key_client.get_key(name).properties.tags == {"env": "prod"}
    versions = {p.version: p.enabled for p in key_client.list_properties_of_key_versions(name)}
    assert versions == {v1.properties.version: False, v2.properties.version: True}


@pytest.mark.parametrize("page_size", [25, None], ids=["max_page_size=25", "default-page-size"])
def test_list_pages_through_many_keys(key_client, control, page_size):
    prefix = unique("seedk")
    report = control.seed("kv1", "keys", prefix, 61)
    assert report["objects"] == 61
    control.clear_log()

    kwargs = {"max_page_size": page_size} if page_size else {}
    pages = [list(p) for p in key_client.list_properties_of_keys(**kwargs).by_page()]
    listed = [item.name for page in pages for item in page]
    assert sorted(listed) == [f"{prefix}{i:05d}" for i in range(61)]
    assert len(pages) >= 3
    assert all(len(page) <= 25 for page in pages)
    assert all(item.id == f"{item.vault_url}/keys/{item.name}" for page in pages for item in page)
    assert len(ops(data_plane(control.log()), "keys.list")) >= 3


def test_key_versions_pages(key_client, control):
    prefix = unique("seedv")
    control.seed("kv1", "keys", prefix, 1, versions=27)
    name = f"{prefix}00000"
    pages = [list(p) for p in key_client.list_properties_of_key_versions(name, max_page_size=10).by_page()]
    assert len(pages) >= 3
    listed = [item.version for page in pages for item in page]
    assert len(listed) == 27 and len(set(listed)) == 27
    latest = key_client.get_key(name)
    assert latest.properties.version in listed
    for version in listed[:3]:
        assert key_client.get_key(name, version).properties.version == version


def test_key_not_found(key_client):
    with pytest.raises(ResourceNotFoundError) as caught:
        key_client.get_key(unique("nokey"))
    assert error_code(caught.value) == "KeyNotFound"
    with pytest.raises(ResourceNotFoundError):
        key_client.get_deleted_key(unique("nokey"))
    assert list(key_client.list_properties_of_key_versions(unique("nokey"))) == []


def test_key_delete_recover_purge(key_client):
    name = unique("klife")
    created = key_client.create_ec_key(name, curve="P-256", tags={"t": "1"})

    poller = key_client.begin_delete_key(name)
    poller.wait()
    deleted = poller.result()
    assert deleted.name == name
    assert deleted.recovery_id.endswith(f"/deletedkeys/{name}")
    assert deleted.deleted_date is not None and deleted.scheduled_purge_date is not None
    assert deleted.key.x == created.key.x
    with pytest.raises(ResourceNotFoundError):
        key_client.get_key(name)
    assert key_client.get_deleted_key(name).name == name
    assert name in [k.name for k in key_client.list_deleted_keys()]

    with pytest.raises(ResourceExistsError) as caught:
        key_client.create_ec_key(name, curve="P-256")
    assert inner_error_code(caught.value) == "ObjectIsDeletedButRecoverable"

    recover = key_client.begin_recover_deleted_key(name)
    recover.wait()
    recovered = key_client.get_key(name)
    assert recovered.id == created.id and recovered.key.x == created.key.x
    assert recovered.properties.tags == {"t": "1"}

    key_client.begin_delete_key(name).wait()
    key_client.purge_deleted_key(name)
    with pytest.raises(ResourceNotFoundError):
        key_client.get_deleted_key(name)
    with pytest.raises(ResourceNotFoundError):
        key_client.get_key(name)


def test_key_purge_refused_under_purge_protection(make_key_client, control):
    vault = control.create_vault("kvppkeys", purgeProtection=True)
    client = make_key_client(url=vault["url"])
    name = unique("pk")
    client.create_ec_key(name, curve="P-256")
    client.begin_delete_key(name).wait()
    with pytest.raises(HttpResponseError) as caught:
        client.purge_deleted_key(name)
    assert caught.value.status_code == 403
    assert error_code(caught.value) == "Forbidden"
