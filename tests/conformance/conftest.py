"""Fixtures of the Key Vault emulator conformance suite.

The suite proves that ``kvkeep-emulator`` is wire-compatible with Azure Key Vault by driving it with
the official Python SDK (``azure-keyvault-secrets``/``-keys``/``-certificates``), a client we did not
write. This module builds nothing: it starts the emulator binary named by ``KVKEEP_EMULATOR_BIN``
(default ``target/debug/kvkeep-emulator`` under the repository root) once per session, reads its JSON
ready line, and stops it with SIGTERM at the end of the session, whatever the tests did.

Every test gets a freshly reset emulator (``POST /_emulator/reset``) and empty SDK challenge caches,
and every test that takes a client fixture runs twice: with ``api_version="2025-07-01"`` (the wire
contract of the Rust daemon) and with the package default (no ``api_version`` passed).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
import requests
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.certificates._shared import http_challenge_cache as certificates_challenge_cache
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys._shared import http_challenge_cache as keys_challenge_cache
from azure.keyvault.secrets import SecretClient
from azure.keyvault.secrets._shared import http_challenge_cache as secrets_challenge_cache

from support import FakeCredential

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "kvkeep-emulator"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

# Vaults every emulator of the suite starts with. kv1 and kv2 share the default geo; kvfar is in
# another geo, so blobs from kv1 must not restore there.
START_VAULTS = ["kv1", "kv2", "kvfar:geo=asia"]

PINNED_API_VERSION = "2025-07-01"

# The SDK packages each keep their own module-global challenge cache (keyed by origin).
_CHALLENGE_CACHES = (secrets_challenge_cache, keys_challenge_cache, certificates_challenge_cache)


def clear_challenge_caches() -> None:
    """Forget every cached ``WWW-Authenticate`` challenge so the next request re-discovers it."""
    for cache in _CHALLENGE_CACHES:
        cache.clear()


# --------------------------------------------------------------------------------------------
# Name resolution: *.localhost -> 127.0.0.1 (SNI and certificate checks keep the real name)
# --------------------------------------------------------------------------------------------

_original_getaddrinfo = socket.getaddrinfo


def _localhost_getaddrinfo(host: Any, *args: Any, **kwargs: Any):
    if isinstance(host, bytes):
        name = host.decode("ascii", "replace")
    else:
        name = host
    if isinstance(name, str) and name.rstrip(".").lower().endswith(".localhost"):
        host = "127.0.0.1"
    return _original_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(scope="session", autouse=True)
def localhost_resolver() -> Iterator[None]:
    """Resolve every ``*.localhost`` name to the loopback address for the whole session."""
    socket.getaddrinfo = _localhost_getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = _original_getaddrinfo


# --------------------------------------------------------------------------------------------
# Emulator process
# --------------------------------------------------------------------------------------------


@dataclass
class EmulatorProcess:
    """A running emulator and the contents of its ready line."""

    process: subprocess.Popen
    ready: Dict[str, Any]
    stderr_path: Path

    @property
    def vaults(self) -> Dict[str, str]:
        return self.ready["vaults"]

    @property
    def ca_cert(self) -> str:
        return self.ready["caCert"]

    @property
    def control_url(self) -> str:
        return self.ready["controlUrl"].rstrip("/")

    def vault_url(self, name: str) -> str:
        return self.vaults[name]

    def stderr_tail(self, limit: int = 4000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, wait, and SIGKILL only if the emulator ignores the signal."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def emulator_binary() -> Path:
    """The emulator executable, or a clear failure telling how to build it."""
    configured = os.environ.get("KVKEEP_EMULATOR_BIN")
    path = Path(configured) if configured else DEFAULT_BIN
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"emulator binary not found at {path}: run `cargo build -p kvkeep-emulator` in {REPO_ROOT} "
            "(or set KVKEEP_EMULATOR_BIN to the binary)",
            pytrace=False,
        )
    return path


def start_emulator(workdir: Path, vaults: List[str], extra_args: Optional[List[str]] = None) -> EmulatorProcess:
    """Start the emulator and wait (bounded) for its one JSON ready line on stdout."""
    binary = emulator_binary()
    cert_dir = workdir / "certs"
    cert_dir.mkdir(parents=True, exist_ok=True)
    args = [str(binary), "--listen", "127.0.0.1:0", "--cert-dir", str(cert_dir)]
    for vault in vaults:
        args += ["--vault", vault]
    args += extra_args or []
    stderr_path = workdir / "emulator.stderr"
    with open(stderr_path, "wb") as stderr_file:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr_file)

    lines: "queue.Queue[Optional[bytes]]" = queue.Queue()

    def read_stdout() -> None:
        # The ready line, then drain whatever else arrives so the emulator never blocks on a full pipe.
        try:
            lines.put(process.stdout.readline())
            for _ in process.stdout:
                pass
        except Exception:  # pragma: no cover - reported below as "no ready line"
            lines.put(None)

    threading.Thread(target=read_stdout, name="emulator-ready-line", daemon=True).start()
    emulator = EmulatorProcess(process=process, ready={}, stderr_path=stderr_path)
    try:
        line = lines.get(timeout=READY_TIMEOUT_S)
    except queue.Empty:
        emulator.stop()
        pytest.fail(
            f"emulator printed no ready line within {READY_TIMEOUT_S:.0f}s: {' '.join(args)}\n"
            f"stderr:\n{emulator.stderr_tail()}",
            pytrace=False,
        )
    if not line:
        emulator.stop()
        pytest.fail(
            f"emulator exited (code {process.poll()}) before its ready line: {' '.join(args)}\n"
            f"stderr:\n{emulator.stderr_tail()}",
            pytrace=False,
        )
    try:
        emulator.ready = json.loads(line)
    except ValueError:
        emulator.stop()
        pytest.fail(f"emulator ready line is not JSON: {line!r}", pytrace=False)
    for field in ("vaults", "controlUrl", "caCert"):
        if field not in emulator.ready:
            emulator.stop()
            pytest.fail(f"emulator ready line lacks {field!r}: {emulator.ready}", pytrace=False)
    return emulator


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """The session's host-routed emulator with vaults kv1, kv2 (same geo) and kvfar (geo asia)."""
    running = start_emulator(tmp_path_factory.mktemp("emulator"), START_VAULTS)
    try:
        yield running
    finally:
        running.stop()
    # README: "serves until SIGTERM/SIGINT and exits 0".
    code = running.process.returncode
    assert code == 0, f"emulator exited with {code} on SIGTERM; stderr:\n{running.stderr_tail()}"


@pytest.fixture(scope="session")
def start_extra_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., EmulatorProcess]]:
    """``start_extra_emulator(vaults, extra_args)`` starts another emulator, stopped at session end."""
    started: List[EmulatorProcess] = []

    def start(vaults: List[str], extra_args: Optional[List[str]] = None) -> EmulatorProcess:
        running = start_emulator(tmp_path_factory.mktemp("extra-emulator"), vaults, extra_args)
        started.append(running)
        return running

    try:
        yield start
    finally:
        for running in started:
            running.stop()


# --------------------------------------------------------------------------------------------
# Control plane
# --------------------------------------------------------------------------------------------


class ControlPlane:
    """Typed helpers over the emulator's ``/_emulator/`` JSON API (no authentication)."""

    def __init__(self, base_url: str, ca_cert: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.ca_cert = ca_cert
        self.session = requests.Session()

    def request(self, method: str, path: str, expected: int, **kwargs: Any) -> Any:
        # verify per request: a session-level verify loses to REQUESTS_CA_BUNDLE from the environment.
        url = f"{self.base_url}/{path.lstrip('/')}"
        response = self.session.request(method, url, timeout=30, verify=self.ca_cert, **kwargs)
        assert response.status_code == expected, (
            f"control plane {method} {path}: expected {expected}, got {response.status_code}: {response.text}"
        )
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def reset(self) -> None:
        self.request("POST", "reset", 204)

    def vaults(self) -> List[Dict[str, Any]]:
        return self.request("GET", "vaults", 200)["vaults"]

    def create_vault(self, name: str, **settings: Any) -> Dict[str, Any]:
        return self.request("POST", "vaults", 201, json={"name": name, **settings})

    def update_vault(self, name: str, **settings: Any) -> Dict[str, Any]:
        return self.request("PATCH", f"vaults/{name}", 200, json=settings)

    def seed(self, vault: str, kind: str, prefix: str, count: int, **spec: Any) -> Dict[str, Any]:
        return self.request(
            "POST", f"vaults/{vault}/seed", 200, json={"kind": kind, "prefix": prefix, "count": count, **spec}
        )

    def add_fault(self, **rule: Any) -> str:
        return self.request("POST", "faults", 201, json=rule)["id"]

    def faults(self) -> List[Dict[str, Any]]:
        return self.request("GET", "faults", 200)["faults"]

    def clear_faults(self) -> None:
        self.request("DELETE", "faults", 204)

    def counters(self) -> Dict[str, Any]:
        return self.request("GET", "counters", 200)

    def log(self, vault: Optional[str] = None) -> List[Dict[str, Any]]:
        params = {"vault": vault} if vault else None
        return self.request("GET", "log", 200, params=params)["requests"]

    def clear_log(self) -> None:
        self.request("DELETE", "log", 204)

    def auth(self) -> Dict[str, Any]:
        return self.request("GET", "auth", 200)

    def set_auth(self, **settings: Any) -> Dict[str, Any]:
        return self.request("PUT", "auth", 200, json=settings)

    def time(self) -> Dict[str, Any]:
        return self.request("GET", "time", 200)

    def advance_time(self, seconds: int) -> Dict[str, Any]:
        return self.request("POST", "time", 200, json={"advanceSeconds": seconds})


@pytest.fixture(scope="session")
def control_session(emulator: EmulatorProcess) -> ControlPlane:
    return ControlPlane(emulator.control_url, emulator.ca_cert)


@pytest.fixture(autouse=True)
def fresh_emulator(request: pytest.FixtureRequest) -> Iterator[None]:
    """Reset the emulator and the SDK challenge caches before every test that uses the emulator."""
    if "emulator" not in request.fixturenames:
        yield
        return
    control_plane: ControlPlane = request.getfixturevalue("control_session")
    control_plane.reset()
    clear_challenge_caches()
    yield
    clear_challenge_caches()


@pytest.fixture
def control(control_session: ControlPlane, emulator: EmulatorProcess) -> ControlPlane:
    """The control plane of a freshly reset emulator."""
    return control_session


# --------------------------------------------------------------------------------------------
# SDK clients
# --------------------------------------------------------------------------------------------


@pytest.fixture(params=[PINNED_API_VERSION, None], ids=["api-2025-07-01", "api-default"])
def api_version(request: pytest.FixtureRequest) -> Optional[str]:
    """The api-version the clients are built with; None means the package default."""
    return request.param


def client_kwargs(ca_cert: str, api_version: Optional[str], **overrides: Any) -> Dict[str, Any]:
    """Constructor arguments shared by every client: trust the emulator CA, retry quickly.

    Challenge resource verification is left at the SDK default (not passed) unless overridden.
    """
    kwargs: Dict[str, Any] = {
        "connection_verify": ca_cert,
        "retry_total": 3,
        "retry_backoff_factor": 0.05,
        "retry_backoff_max": 1,
        "connection_timeout": 10,
        "read_timeout": 60,
    }
    if api_version is not None:
        kwargs["api_version"] = api_version
    kwargs.update(overrides)
    return kwargs


ClientFactory = Callable[..., Any]


def _factory(cls: type, emulator: EmulatorProcess, api_version: Optional[str]) -> ClientFactory:
    def make(vault: str = "kv1", *, url: Optional[str] = None, credential: Any = None, **overrides: Any):
        vault_url = url or emulator.vault_url(vault)
        return cls(
            vault_url=vault_url,
            credential=credential or FakeCredential(),
            **client_kwargs(emulator.ca_cert, api_version, **overrides),
        )

    return make


@pytest.fixture
def make_client(api_version: Optional[str]) -> ClientFactory:
    """``make_client(ClientClass, vault_url, ca_cert, credential=None, **kwargs)`` for other emulators."""

    def make(cls: type, url: str, ca_cert: str, *, credential: Any = None, **overrides: Any):
        return cls(vault_url=url, credential=credential or FakeCredential(), **client_kwargs(ca_cert, api_version, **overrides))

    return make


@pytest.fixture
def make_secret_client(emulator: EmulatorProcess, api_version: Optional[str]) -> ClientFactory:
    """``make_secret_client(vault="kv1", url=None, **kwargs)`` -> SecretClient."""
    return _factory(SecretClient, emulator, api_version)


@pytest.fixture
def make_key_client(emulator: EmulatorProcess, api_version: Optional[str]) -> ClientFactory:
    """``make_key_client(vault="kv1", url=None, **kwargs)`` -> KeyClient."""
    return _factory(KeyClient, emulator, api_version)


@pytest.fixture
def make_certificate_client(emulator: EmulatorProcess, api_version: Optional[str]) -> ClientFactory:
    """``make_certificate_client(vault="kv1", url=None, **kwargs)`` -> CertificateClient."""
    return _factory(CertificateClient, emulator, api_version)


@pytest.fixture
def secret_client(make_secret_client: ClientFactory) -> SecretClient:
    return make_secret_client("kv1")


@pytest.fixture
def key_client(make_key_client: ClientFactory) -> KeyClient:
    return make_key_client("kv1")


@pytest.fixture
def certificate_client(make_certificate_client: ClientFactory) -> CertificateClient:
    return make_certificate_client("kv1")


