"""Helpers shared by the conformance tests: test certificates made with ``cryptography``, error
inspection for ``HttpResponseError`` and request-log filtering. No fixtures live here (see conftest.py).
"""

from __future__ import annotations

import datetime
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import HttpResponseError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID


class FakeCredential:
    """A token credential handing out a static bearer token valid for one hour.

    Implements both ``TokenCredential.get_token`` and ``SupportsTokenInfo.get_token_info``; records
    the scopes and tenants it was asked for so tests can check what the challenge told the SDK.
    """

    def __init__(self, token: str = "fake-token") -> None:
        self.token = token
        self.requests: List[Dict[str, Any]] = []

    def get_token(self, *scopes: str, claims=None, tenant_id=None, enable_cae=False, **kwargs) -> AccessToken:
        self.requests.append({"scopes": scopes, "tenant_id": tenant_id})
        return AccessToken(self.token, int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options=None) -> AccessTokenInfo:
        self.requests.append({"scopes": scopes, "tenant_id": (options or {}).get("tenant_id")})
        return AccessTokenInfo(self.token, int(time.time()) + 3600)


def unique(prefix: str) -> str:
    """A fresh object name (letters, digits and dashes only, as Key Vault requires)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class TestCertificate:
    """A self-signed certificate with its private key, in the encodings the tests need."""

    __test__ = False  # not a pytest test class

    certificate: x509.Certificate
    private_key: Any

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def pem_bundle(self) -> bytes:
        """Certificate and unencrypted PKCS#8 key in one PEM file (what a PEM import takes)."""
        return self.cert_pem + self.key_pem

    def pfx(self, password: Optional[bytes] = None) -> bytes:
        """A PKCS#12 file holding the key and the certificate, encrypted when a password is given."""
        encryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        )
        return pkcs12.serialize_key_and_certificates(
            name=b"conformance", key=self.private_key, cert=self.certificate, cas=None, encryption_algorithm=encryption
        )

    def public_numbers(self):
        return self.private_key.public_key().public_numbers()


def make_certificate(common_name: str = "conformance.example", key_type: str = "rsa") -> TestCertificate:
    """A fresh self-signed certificate (RSA-2048 by default, or EC P-256)."""
    if key_type == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return TestCertificate(certificate=cert, private_key=key)


def error_body(exc: HttpResponseError) -> Dict[str, Any]:
    """The ``error`` object of a Key Vault error response."""
    assert exc.response is not None, f"{exc!r} carries no response"
    try:
        body = json.loads(exc.response.text())
    except ValueError as err:  # pragma: no cover - assertion message only
        raise AssertionError(f"error body is not JSON: {exc.response.text()!r}") from err
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), f"not a Key Vault error body: {body!r}"
    return body["error"]


def error_code(exc: HttpResponseError) -> str:
    return error_body(exc)["code"]


def inner_error_code(exc: HttpResponseError) -> Optional[str]:
    inner = error_body(exc).get("innererror")
    return inner.get("code") if isinstance(inner, dict) else None


def data_plane(log: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The request-log entries that went to the data plane (not ``/_emulator/``), in log order."""
    entries = [entry for entry in log if not str(entry.get("path", "")).startswith("/_emulator")]
    return sorted(entries, key=lambda entry: entry.get("seq", 0))


def ops(log: List[Dict[str, Any]], op: str) -> List[Dict[str, Any]]:
    """The request-log entries of one operation, e.g. ``secrets.list``."""
    return [entry for entry in log if entry.get("op") == op]
