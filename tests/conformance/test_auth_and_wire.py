"""The authentication challenge and wire details as the official SDK sees them: the body-less,
token-less first request, ``WWW-Authenticate`` parsing with challenge-resource verification at its
default (host mode) and disabled (``--loopback`` mode), refusal of foreign or mismatching challenge
resources, re-challenge after a rejected token, api-version handling and the service's response
headers (keyvault-api.md §2, §3, §5.6, §16).
"""

from __future__ import annotations

import base64
import json
import re
import time
from urllib.parse import urlparse

import pytest
import requests
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.keyvault.keys import KeyClient
from azure.keyvault.secrets import SecretClient

from support import FakeCredential, data_plane, make_certificate, unique

pytestmark = pytest.mark.usefixtures("emulator")

CHALLENGE = re.compile(
    r'^Bearer authorization="https://(?P<login>[^/",=]+)/(?P<tenant>[^/",=]+)", resource="(?P<resource>[^",=]+)"$'
)


def _port(url: str) -> int:
    return urlparse(url).port


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class JwtCredential(FakeCredential):
    """Hands out unsigned JWTs whose audience is the requested scope minus ``/.default``."""

    def _jwt(self, scope: str) -> str:
        now = int(time.time())
        claims = {
            "aud": scope[: -len("/.default")] if scope.endswith("/.default") else scope,
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + 3600,
            "iss": "https://sts.windows.net/conformance/",
        }
        header = {"alg": "none", "typ": "JWT"}
        return f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}.{_b64url(b'sig')}"

    def get_token(self, *scopes, **kwargs):
        super().get_token(*scopes, **kwargs)
        return AccessToken(self._jwt(scopes[0]), int(time.time()) + 3600)

    def get_token_info(self, *scopes, options=None):
        super().get_token_info(*scopes, options=options)
        return AccessTokenInfo(self._jwt(scopes[0]), int(time.time()) + 3600)


def test_first_request_carries_no_token_and_no_body(secret_client, control):
    name = unique("probe")
    control.clear_log()
    secret_client.set_secret(name, "a value with a body")
    secret_client.get_secret(name)

    entries = data_plane(control.log())
    assert len(entries) >= 3, entries
    probe, authorised, follow_up = entries[0], entries[1], entries[2]
    assert probe["method"] == "PUT" and probe["status"] == 401
    assert probe["hasAuthorization"] is False
    assert probe["bodyLength"] == 0
    assert authorised["method"] == "PUT" and authorised["status"] == 200
    assert authorised["hasAuthorization"] is True
    assert authorised["bodyLength"] > 0
    assert follow_up["method"] == "GET" and follow_up["status"] == 200
    assert follow_up["hasAuthorization"] is True, "the cached challenge authorises later requests up-front"
    assert [e["status"] for e in entries].count(401) == 1


def test_challenge_names_the_vault_parent_domain_as_resource(make_secret_client, emulator):
    credential = FakeCredential()
    client = make_secret_client("kv1", credential=credential)
    list(client.list_properties_of_secrets())
    port = _port(emulator.vault_url("kv1"))
    assert credential.requests, "the SDK asked the credential for a token"
    assert credential.requests[0]["scopes"] == (f"https://vault.localhost:{port}/.default",)
    assert credential.requests[0]["tenant_id"], "the tenant comes from the challenge's authorization URI"


def test_raw_challenge_comes_before_any_validation(emulator):
    url = emulator.vault_url("kv1")
    port = _port(url)
    for method, path, body in [
        ("GET", "/secrets", None),
        ("POST", "/secrets/restore", b"{not json"),
        ("PUT", "/secrets/bad name!", b""),
        ("GET", "/nonsense/path", None),
    ]:
        response = requests.request(
            method, f"{url}{path}", params={"api-version": "2025-07-01"}, data=body, verify=emulator.ca_cert, timeout=10
        )
        assert response.status_code == 401, (method, path, response.text)
        match = CHALLENGE.match(response.headers.get("WWW-Authenticate", ""))
        assert match, response.headers.get("WWW-Authenticate")
        assert match["resource"] == f"https://vault.localhost:{port}"
        assert response.json()["error"]["code"] == "Unauthorized"
        assert response.headers["Content-Type"].startswith("application/json")


def test_foreign_challenge_resource_is_refused(make_secret_client, control):
    control.set_auth(challenge="foreign")
    with pytest.raises(ValueError, match="does not match the requested domain"):
        make_secret_client("kv1").get_secret(unique("any"))
    log = data_plane(control.log())
    assert log and all(entry["hasAuthorization"] is False for entry in log), "no token was ever sent"


def test_challenge_with_scope_parameter_passes_verification(make_secret_client, control):
    control.set_auth(challenge="scope")
    client = make_secret_client("kv1")
    name = unique("scoped")
    client.set_secret(name, "v")
    assert client.get_secret(name).value == "v"


def test_challenge_resource_equal_to_vault_authority_needs_verification_off(make_secret_client, control):
    control.set_auth(challenge="authority")
    name = unique("auth")
    with pytest.raises(ValueError):
        make_secret_client("kv1").set_secret(name, "v")
    relaxed = make_secret_client("kv1", verify_challenge_resource=False)
    relaxed.set_secret(name, "v")
    assert relaxed.get_secret(name).value == "v"


def test_missing_challenge_surfaces_as_authentication_error(make_secret_client, control):
    control.set_auth(challenge="none")
    with pytest.raises(ClientAuthenticationError) as caught:
        make_secret_client("kv1").get_secret(unique("nochallenge"))
    assert caught.value.status_code == 401


def test_rejected_token_triggers_one_re_challenge(make_secret_client, control):
    client = make_secret_client("kv1")
    name = unique("again")
    client.set_secret(name, "v")
    control.set_auth(token="rejectOnce")
    control.clear_log()
    assert client.get_secret(name).value == "v"
    statuses = [(e["status"], e["hasAuthorization"]) for e in data_plane(control.log())]
    assert statuses[0] == (401, True), statuses
    assert statuses[-1] == (200, True), statuses


def test_jwt_token_mode_checks_the_audience(make_secret_client, control):
    control.set_auth(token="jwt")
    name = unique("jwt")
    client = make_secret_client("kv1", credential=JwtCredential())
    client.set_secret(name, "v")
    assert client.get_secret(name).value == "v"

    with pytest.raises(ClientAuthenticationError) as caught:
        make_secret_client("kv1").get_secret(name)  # opaque "fake-token" is not a JWT
    assert caught.value.status_code == 401


def test_loopback_mode_with_verification_disabled(start_extra_emulator, make_client, api_version):
    loopback = start_extra_emulator(["kv1", "kv2"], ["--loopback"])
    url1, url2 = loopback.vault_url("kv1"), loopback.vault_url("kv2")
    for url in (url1, url2):
        assert urlparse(url).hostname == "127.0.0.1"
    assert _port(url1) != _port(url2), "one port per vault"

    secrets1 = make_client(SecretClient, url1, loopback.ca_cert, verify_challenge_resource=False)
    keys2 = make_client(KeyClient, url2, loopback.ca_cert, verify_challenge_resource=False)
    name = unique("loop")
    created = secrets1.set_secret(name, "v")
    assert created.id == f"{url1}/secrets/{name}/{created.properties.version}"
    assert secrets1.get_secret(name).value == "v"
    assert [p.name for p in secrets1.list_properties_of_secrets()] == [name]
    key = keys2.create_ec_key(name, curve="P-256")
    assert key.id.startswith(f"{url2}/keys/{name}/")

    blob = secrets1.backup_secret(name)
    secrets2 = make_client(SecretClient, url2, loopback.ca_cert, verify_challenge_resource=False)
    assert secrets2.restore_secret_backup(blob).vault_url == url2

    strict = make_client(SecretClient, url2, loopback.ca_cert)
    with pytest.raises(ValueError, match="does not match the requested domain"):
        strict.get_secret(name)


def test_other_supported_api_versions(emulator):
    for version in ("7.6", "7.5", "7.4", "2026-04-01"):
        client = SecretClient(
            emulator.vault_url("kv1"),
            FakeCredential(),
            api_version=version,
            connection_verify=emulator.ca_cert,
            retry_total=0,
        )
        name = unique("ver")
        client.set_secret(name, version)
        assert client.get_secret(name).value == version


def test_unknown_api_version_is_bad_parameter(emulator):
    response = requests.get(
        f"{emulator.vault_url('kv1')}/secrets",
        params={"api-version": "1999-01-01"},
        headers={"Authorization": "Bearer fake-token"},
        verify=emulator.ca_cert,
        timeout=10,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BadParameter"
    assert "1999-01-01" in error["message"]


def test_response_headers_follow_the_service(secret_client):
    captured = []
    name = unique("hdr")
    secret_client.set_secret(name, "v", raw_response_hook=lambda r: captured.append(r.http_response))
    secret_client.get_secret(
        name,
        headers={"x-ms-client-request-id": "conformance-123"},
        raw_response_hook=lambda r: captured.append(r.http_response),
    )
    for response in captured:
        headers = {k.lower(): v for k, v in response.headers.items()}
        assert headers["content-type"].startswith("application/json")
        assert headers.get("cache-control") == "no-cache"
        assert headers.get("x-ms-request-id")
        assert headers.get("x-ms-keyvault-service-version")
    assert {k.lower(): v for k, v in captured[-1].headers.items()}.get("x-ms-client-request-id") == "conformance-123"


def test_ids_use_the_authority_the_client_sent(make_secret_client, emulator):
    url = emulator.vault_url("kv2")
    client = make_secret_client("kv2")
    name = unique("auth")
    created = client.set_secret(name, "v")
    assert created.id.startswith(f"{url}/secrets/{name}/")
    assert f":{_port(url)}/" in created.id
    for item in client.list_properties_of_secrets():
        assert item.vault_url == url


def test_unauthenticated_raw_request_gets_401_even_with_bad_api_version(emulator):
    response = requests.get(
        f"{emulator.vault_url('kv1')}/secrets", params={"api-version": "bogus"}, verify=emulator.ca_cert, timeout=10
    )
    assert response.status_code == 401


def test_sdk_errors_are_typed(secret_client):
    with pytest.raises(HttpResponseError) as caught:
        secret_client.set_secret("bad name with spaces", "v")
    assert caught.value.status_code == 400


def _raw_bodies():
    bodies = []

    def hook(pipeline_response):
        text = pipeline_response.http_response.text()
        bodies.append(json.loads(text) if text else None)

    return bodies, hook


def test_bundle_shapes_on_the_wire(secret_client, make_key_client, make_certificate_client, emulator):
    """What the Python SDK tolerates but the Rust daemon needs exactly (§5, §7): integer Unix
    timestamps, base64url-unpadded JWK members, standard-base64 ``cer`` and url-safe ``x5t``."""
    name = unique("shape")
    bodies, hook = _raw_bodies()
    secret_client.set_secret(name, "v", raw_response_hook=hook)
    bundle = bodies[-1]
    assert set(bundle) >= {"value", "id", "attributes"}
    attributes = bundle["attributes"]
    for field in ("created", "updated"):
        assert type(attributes[field]) is int, attributes
    assert attributes["enabled"] is True
    assert attributes["recoveryLevel"] and type(attributes["recoverableDays"]) is int

    secret_client.begin_delete_secret(name, raw_response_hook=hook).wait()
    deleted = bodies[-1]
    assert deleted["recoveryId"] == f"{emulator.vault_url('kv1')}/deletedsecrets/{name}"
    assert type(deleted["deletedDate"]) is int and type(deleted["scheduledPurgeDate"]) is int

    key_body = []
    make_key_client("kv1").create_ec_key(
        unique("shapek"), curve="P-256", raw_response_hook=lambda r: key_body.append(json.loads(r.http_response.text()))
    )
    jwk = key_body[-1]["key"]
    for member in ("x", "y"):
        assert re.fullmatch(r"[A-Za-z0-9_-]+", jwk[member]), jwk
    assert "d" not in jwk

    cert_body = []
    make_certificate_client("kv1").import_certificate(
        unique("shapec"),
        make_certificate().pfx(),
        raw_response_hook=lambda r: cert_body.append(json.loads(r.http_response.text())),
    )
    cert = cert_body[-1]
    assert re.fullmatch(r"[A-Za-z0-9+/]+=*", cert["cer"]), "cer is standard base64"
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cert["x5t"]), "x5t is unpadded base64url"


def test_next_links_are_absolute_and_echo_maxresults_only_when_sent(secret_client, emulator):
    prefix = unique("nl")
    for i in range(7):
        secret_client.set_secret(f"{prefix}-{i}", "v")
    vault_url = emulator.vault_url("kv1")

    for page_size in (3, None):
        bodies, hook = _raw_bodies()
        kwargs = {"max_page_size": page_size} if page_size else {}
        names = [p.name for p in secret_client.list_properties_of_secrets(raw_response_hook=hook, **kwargs)]
        assert sorted(names) == sorted(f"{prefix}-{i}" for i in range(7))
        links = [body.get("nextLink") for body in bodies]
        assert links[-1] is None, "the last page ends the list with nextLink null"
        for link in links[:-1]:
            assert link.startswith(f"{vault_url}/secrets?"), link
            query = urlparse(link).query
            assert ("maxresults=3" in query) == (page_size == 3), link
            token = re.search(r"(?:^|&)(?:\$|%24)skiptoken=([^&]*)", query)
            assert token and re.fullmatch(r"[A-Za-z0-9._~-]+", token.group(1)), link
        for body in bodies:
            assert all("value" not in item for item in body["value"]), "list items carry no value"
        if page_size == 3:
            assert len(bodies) == 3
