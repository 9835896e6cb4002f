"""The long-lived state of one fakests process: settings, keys, TLS files, sandboxes.

``Runtime.start(settings)`` does the side effects (reading or making keys, the CA and the default
client certificate in the state directory; loading the config file), once. ``create_app`` then
builds the ASGI app around it. Tests, the in-thread server and the CLI all go through here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .directory import Certificate, Directory
from .keys import KeySet, new_key_and_cert, pem_of
from .sandbox import DEFAULT_SANDBOX, Sandboxes
from .settings import Settings
from .tls import TlsFiles, ensure_tls

if TYPE_CHECKING:
    from .store import SharedStore

SHARED_STORE = "shared.sqlite"  # in the state directory: what ``serve --workers N`` processes share


@dataclass
class Runtime:
    """Settings plus everything made from them at start-up."""

    settings: Settings
    keys: KeySet
    sandboxes: Sandboxes
    client_cert_path: Path  # PEM with the default client certificate's key and certificate
    tls: TlsFiles | None

    @classmethod
    def start(cls, settings: Settings | None = None, *, directory: Directory | None = None,
              store: SharedStore | None = None) -> Runtime:
        """``store``: a worker of ``serve --workers N``; sandboxes (the default one included, with its
        scenarios) come from the store that ``seed_shared_store`` filled, and every change goes back there."""
        settings = settings or Settings()
        state = settings.state_dir
        state.mkdir(parents=True, exist_ok=True)
        pem = settings.signing_key.read_bytes() if settings.signing_key else None
        with _locked(state):  # pytest-xdist workers may share one state directory
            keys = KeySet.load_or_create(state / "signing", pem)
            client_pem = ensure_client_certificate(state / "client" / "client-cert.pem")
            tls = ensure_tls(state / "tls", settings.tls_names) if settings.tls else None
        cert = Certificate(client_pem.read_text())
        if tls is not None and settings.export_ca is not None:
            _export(tls.ca, settings.export_ca)
        seeded = store.load_sandbox(DEFAULT_SANDBOX) if store is not None else None
        if directory is None and seeded is not None:
            directory = seeded.directory
        if directory is None and settings.config is not None:
            from .config import load_config  # only when a config file is named

            directory = load_config(settings.config, cert).directory
        if directory is None:
            from .defaults import default_directory

            directory = default_directory(cert)
        sandboxes = Sandboxes(settings, keys, directory, store)
        if settings.scenarios and seeded is None:
            from . import scenarios  # strict: a bad file stops start-up with file, key and reason

            loaded = [scenarios.load_file(scenarios.find(n, [settings.scenario_dir])) for n in settings.scenarios]
            for scenario in loaded:
                sandboxes.default.engine.load(scenario)
        return cls(settings, keys, sandboxes, client_pem, tls)


def seed_shared_store(runtime: Runtime) -> Path:
    """A fresh shared store for ``serve --workers N`` holding this (parent) runtime's default sandbox, its
    scenarios included, for the workers to start from. Returns its path."""
    from .store import SharedStore

    path = runtime.settings.state_dir / SHARED_STORE
    for old in runtime.settings.state_dir.glob(SHARED_STORE + "*"):  # the -wal and -shm files too
        old.unlink()
    default = runtime.sandboxes.default
    SharedStore(path).save_sandbox(DEFAULT_SANDBOX, default.definition(server_keys=default.keys is runtime.keys))
    return path


def _export(ca: Path, target: Path) -> None:
    """Copy the CA certificate to ``target`` (a file, or a directory that gets ``ca.pem``) atomically."""
    if target.is_dir() or str(target).endswith("/"):
        target = target / "ca.pem"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(ca.read_bytes())
    tmp.chmod(0o644)
    tmp.replace(target)


@contextlib.contextmanager
def _locked(state: Path) -> Iterator[None]:
    """An exclusive lock on the state directory while keys and certificates are read or made."""
    try:
        import fcntl
    except ImportError:  # Windows: processes sharing a state directory must not start at once
        yield
        return
    with open(state / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_client_certificate(path: Path) -> Path:
    """The default client certificate (key + cert PEM), registered on the default confidential
    apps so ``ConfidentialClientApplication`` with a certificate works out of the box."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key, cert = new_key_and_cert("fakests client certificate")
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pem_of(key, cert))
        tmp.chmod(0o600)
        tmp.replace(path)
    return path
