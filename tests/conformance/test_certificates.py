"""Certificates through the official ``azure-keyvault-certificates`` client: import of PKCS#12 (with
and without password) and PEM files made with ``cryptography``, the managed key and secret that come
with them, versions, paging, property updates, self-signed create, soft delete → recover → purge and
name conflicts (keyvault-api.md §4.3, §5.4, §7).
"""

from __future__ import annotations

import base64

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.certificates import CertificateContentType, CertificatePolicy
from azure.keyvault.secrets import ContentType
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from support import error_code, inner_error_code, make_certificate, unique

pytestmark = pytest.mark.usefixtures("emulator")

PASSWORD = "s3cret-Pa55"


def _pem_blocks(text: str) -> list:
    """The ``-----BEGIN ...-----`` ... ``-----END ...-----`` blocks of a PEM text, in order."""
    blocks, current = [], None
    for line in text.replace("\r\n", "\n").splitlines():
        if line.startswith("-----BEGIN "):
            current = [line]
        elif current is not None:
            current.append(line)
            if line.startswith("-----END "):
                blocks.append("\n".join(current) + "\n")
                current = None
    return blocks


def _import(client, name, test_cert, form, **kwargs):
    if form == "pfx":
        return client.import_certificate(name, test_cert.pfx(), **kwargs)
    if form == "pfx-password":
        return client.import_certificate(name, test_cert.pfx(PASSWORD.encode()), password=PASSWORD, **kwargs)
    if form == "pem":
        policy = CertificatePolicy(content_type=CertificateContentType.pem)
        return client.import_certificate(name, test_cert.pem_bundle(), policy=policy, **kwargs)
    raise AssertionError(form)


@pytest.mark.parametrize("form", ["pfx", "pfx-password", "pem"])
def test_import_exposes_certificate_and_managed_key_and_secret(
    form, certificate_client, make_secret_client, make_key_client, emulator
):
    test_cert = make_certificate(f"{form}.conformance.example")
    name = unique(f"imp-{form}")
    vault_url = emulator.vault_url("kv1")

    imported = _import(certificate_client, name, test_cert, form, tags={"form": form})
    version = imported.properties.version
    assert imported.name == name
    assert imported.id == f"{vault_url}/certificates/{name}/{version}"
    assert imported.cer == test_cert.der
    assert imported.properties.x509_thumbprint == test_cert.certificate.fingerprint(hashes.SHA1())
    assert imported.properties.tags == {"form": form}
    assert imported.key_id == f"{vault_url}/keys/{name}/{version}"
    assert imported.secret_id == f"{vault_url}/secrets/{name}/{version}"

    fetched = certificate_client.get_certificate(name)
    assert fetched.cer == test_cert.der
    assert fetched.properties.version == version
    assert certificate_client.get_certificate_version(name, version).cer == test_cert.der
    expected_type = CertificateContentType.pem if form == "pem" else CertificateContentType.pkcs12
    assert certificate_client.get_certificate_policy(name).content_type == expected_type

    secret = make_secret_client("kv1").get_secret(name)
    assert secret.properties.managed is True
    assert secret.properties.content_type == expected_type.value
    assert secret.properties.version == version
    assert secret.properties.key_id == imported.key_id
    if form == "pem":
        blocks = _pem_blocks(secret.value)
        certs = [b for b in blocks if b.startswith("-----BEGIN CERTIFICATE-----")]
        keys = [b for b in blocks if "PRIVATE KEY-----" in b.splitlines()[0]]
        assert certs and keys, f"the PEM secret holds the certificate and its key: {secret.value[:80]!r}"
        assert x509.load_pem_x509_certificate(certs[0].encode()).public_bytes(serialization.Encoding.DER) == test_cert.der
        key = serialization.load_pem_private_key(keys[0].encode(), password=None)
        assert key.public_key().public_numbers() == test_cert.public_numbers()
    else:
        # Key Vault hands the PKCS#12 back without a password, whatever the import used.
        key, cert, _ = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), None)
        assert cert.public_bytes(serialization.Encoding.DER) == test_cert.der
        assert key is not None and key.public_key().public_numbers() == test_cert.public_numbers()

    key = make_key_client("kv1").get_key(name)
    assert key.properties.managed is True
    assert key.properties.version == version
    assert key.id == imported.key_id
    assert int.from_bytes(key.key.n, "big") == test_cert.public_numbers().n


def _assert_pem_holds(text: str, test_cert) -> None:
    """The PEM text is the private key, then the certificate chain, of ``test_cert``."""
    blocks = _pem_blocks(text)
    assert "PRIVATE KEY-----" in blocks[0].splitlines()[0], f"key first: {text[:80]!r}"
    certs = [b for b in blocks if b.startswith("-----BEGIN CERTIFICATE-----")]
    assert x509.load_pem_x509_certificate(certs[0].encode()).public_bytes(serialization.Encoding.DER) == test_cert.der
    key = serialization.load_pem_private_key(blocks[0].encode(), password=None)
    assert key.public_key().public_numbers() == test_cert.public_numbers()


@pytest.mark.parametrize("form", ["pfx-password", "pem"])
def test_out_content_type_converts_the_managed_secret(form, certificate_client, make_secret_client):
    """``get_secret(out_content_type=...)`` sends ``outContentType`` (§4.1 S3): the certificate's
    secret comes back converted, with the requested contentType, latest or by version."""
    test_cert = make_certificate(f"out-{form}.conformance.example")
    name = unique(f"out-{form}")
    version = _import(certificate_client, name, test_cert, form).properties.version
    secrets = make_secret_client("kv1")
    stored_type = ContentType.PEM if form == "pem" else ContentType.PFX
    other_type = ContentType.PFX if form == "pem" else ContentType.PEM

    for converted in (
        secrets.get_secret(name, out_content_type=other_type),
        secrets.get_secret(name, version, out_content_type=other_type.value),
    ):
        assert converted.properties.managed is True
        assert converted.properties.version == version
        assert converted.properties.content_type == other_type.value
        if other_type == ContentType.PEM:
            _assert_pem_holds(converted.value, test_cert)
        else:
            # The conversion is a PKCS#12 without a password, like the stored ones.
            key, cert, _ = pkcs12.load_key_and_certificates(base64.b64decode(converted.value), None)
            assert cert.public_bytes(serialization.Encoding.DER) == test_cert.der
            assert key is not None and key.public_key().public_numbers() == test_cert.public_numbers()

    # Asking for the stored format, or for nothing, answers the stored value; the conversion
    # changed nothing in the vault.
    stored = secrets.get_secret(name)
    assert stored.properties.content_type == stored_type.value
    assert secrets.get_secret(name, out_content_type=stored_type).value == stored.value


def test_out_content_type_unsupported_is_400_and_plain_secrets_are_unchanged(certificate_client, make_secret_client):
    """Emulator choices where the real service is unverified (emulator/README.md): a value other
    than the two certificate media types is 400 BadParameter; an ordinary secret is answered as
    stored whatever outContentType asks for."""
    name = unique("out-bad")
    certificate_client.import_certificate(name, make_certificate("out-bad.conformance.example").pfx())
    secrets = make_secret_client("kv1")
    with pytest.raises(HttpResponseError) as caught:
        secrets.get_secret(name, out_content_type="text/plain")
    assert caught.value.status_code == 400
    assert error_code(caught.value) == "BadParameter"

    plain = unique("plain")
    secrets.set_secret(plain, "not a certificate", content_type="text/plain")
    fetched = secrets.get_secret(plain, out_content_type=ContentType.PEM)
    assert fetched.value == "not a certificate"
    assert fetched.properties.content_type == "text/plain"


def test_import_ec_certificate(certificate_client, make_key_client):
    test_cert = make_certificate("ec.conformance.example", key_type="ec")
    name = unique("impec")
    imported = certificate_client.import_certificate(name, test_cert.pfx())
    assert imported.cer == test_cert.der
    key = make_key_client("kv1").get_key(name)
    assert key.properties.managed is True
    assert key.key.x == test_cert.public_numbers().x.to_bytes(32, "big")


def test_certificate_versions_and_update(certificate_client):
    name = unique("cver")
    first, second = make_certificate("one.example"), make_certificate("two.example")
    v1 = certificate_client.import_certificate(name, first.pfx())
    v2 = certificate_client.import_certificate(name, second.pfx())
    assert v1.properties.version != v2.properties.version

    assert certificate_client.get_certificate(name).cer == second.der
    assert certificate_client.get_certificate_version(name, v1.properties.version).cer == first.der
    versions = [p.version for p in certificate_client.list_properties_of_certificate_versions(name)]
    assert sorted(versions) == sorted([v1.properties.version, v2.properties.version])

    updated = certificate_client.update_certificate_properties(name, tags={"team": "sec"})
    assert updated.properties.version == v2.properties.version
    assert updated.properties.tags == {"team": "sec"}
    assert certificate_client.get_certificate(name).properties.tags == {"team": "sec"}

    older = certificate_client.update_certificate_properties(name, v1.properties.version, enabled=False)
    assert older.properties.enabled is False


@pytest.mark.parametrize("page_size", [25, None], ids=["max_page_size=25", "default-page-size"])
def test_list_pages_through_many_certificates(certificate_client, control, page_size):
    prefix = unique("seedc")
    assert control.seed("kv1", "certificates", prefix, 61)["objects"] == 61
    kwargs = {"max_page_size": page_size} if page_size else {}
    pages = [list(p) for p in certificate_client.list_properties_of_certificates(**kwargs).by_page()]
    listed = [item.name for page in pages for item in page]
    assert sorted(listed) == [f"{prefix}{i:05d}" for i in range(61)]
    assert len(pages) >= 3
    assert all(item.x509_thumbprint for page in pages for item in page)


def test_seeded_certificate_has_managed_secret_and_key(certificate_client, make_secret_client, make_key_client, control):
    prefix = unique("seed1")
    control.seed("kv1", "certificates", prefix, 1)
    name = f"{prefix}00000"
    cert = certificate_client.get_certificate(name)
    assert x509.load_der_x509_certificate(cert.cer)
    assert make_secret_client("kv1").get_secret(name).properties.managed is True
    assert make_key_client("kv1").get_key(name).properties.managed is True


def test_create_self_signed_certificate(certificate_client, make_secret_client):
    name = unique("created")
    policy = CertificatePolicy(issuer_name="Self", subject="CN=created.conformance.example", validity_in_months=12)
    poller = certificate_client.begin_create_certificate(name, policy, _polling_interval=0)
    created = poller.result()
    assert created.name == name
    cert = x509.load_der_x509_certificate(created.cer)
    assert cert.subject.rfc4514_string() == "CN=created.conformance.example"
    assert certificate_client.get_certificate_operation(name).status.lower() == "completed"
    assert make_secret_client("kv1").get_secret(name).properties.managed is True


def test_certificate_not_found(certificate_client):
    with pytest.raises(ResourceNotFoundError) as caught:
        certificate_client.get_certificate(unique("nocert"))
    assert error_code(caught.value) == "CertificateNotFound"
    with pytest.raises(ResourceNotFoundError):
        certificate_client.get_deleted_certificate(unique("nocert"))
    assert list(certificate_client.list_properties_of_certificate_versions(unique("nocert"))) == []


def test_certificate_delete_recover_purge(certificate_client, make_secret_client, make_key_client):
    secrets, keys = make_secret_client("kv1"), make_key_client("kv1")
    test_cert = make_certificate()
    name = unique("clife")
    imported = certificate_client.import_certificate(name, test_cert.pfx())

    deleted = certificate_client.begin_delete_certificate(name)
    deleted.wait()
    result = deleted.result()
    assert result.recovery_id.endswith(f"/deletedcertificates/{name}")
    assert result.deleted_on is not None and result.scheduled_purge_date is not None
    with pytest.raises(ResourceNotFoundError):
        certificate_client.get_certificate(name)
    with pytest.raises(ResourceNotFoundError):
        secrets.get_secret(name)
    with pytest.raises(ResourceNotFoundError):
        keys.get_key(name)
    assert certificate_client.get_deleted_certificate(name).cer == test_cert.der
    assert name in [c.name for c in certificate_client.list_deleted_certificates()]

    recover = certificate_client.begin_recover_deleted_certificate(name)
    recover.wait()
    assert certificate_client.get_certificate(name).id == imported.id
    assert secrets.get_secret(name).properties.managed is True
    assert keys.get_key(name).id == imported.key_id

    certificate_client.begin_delete_certificate(name).wait()
    certificate_client.purge_deleted_certificate(name)
    with pytest.raises(ResourceNotFoundError):
        certificate_client.get_deleted_certificate(name)
    with pytest.raises(ResourceNotFoundError):
        certificate_client.get_certificate(name)
    with pytest.raises(ResourceNotFoundError):
        secrets.get_secret(name)
    # The purge freed the name for all three collections.
    assert certificate_client.import_certificate(name, test_cert.pfx()).cer == test_cert.der


def test_import_over_soft_deleted_name_conflicts(certificate_client):
    test_cert = make_certificate()
    name = unique("cghost")
    certificate_client.import_certificate(name, test_cert.pfx())
    certificate_client.begin_delete_certificate(name).wait()
    with pytest.raises(ResourceExistsError) as caught:
        certificate_client.import_certificate(name, test_cert.pfx())
    assert caught.value.status_code == 409
    assert inner_error_code(caught.value) == "ObjectIsDeletedButRecoverable"
