"""The long-lived state of one fakests process: settings, keys, TLS files, sandboxes.

``Runtime.start(settings)`` does the side effects (reading or making keys, the CA and the default
client certificate in the state directory; loading the config file), once. ``create_app`` then
builds the ASGI app around it. Tests, the in-thread server and the CLI all go through here.

With a shared store (``serve --workers N``: SQLite; ``--store redis://``: Redis, for replicas on several
machines) sandboxes live in the store. Replicas each have their own state directory, yet must be one
issuer: so with a remote store, ``share_state`` makes every replica adopt the first replica's signing
keys, CA and client certificate, and the first replica to start seeds the default sandbox.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..failures.engine import Engine
from ..state.directory import Certificate, Directory
from ..state.errors import ConfigError
from ..state.files import state_directory, state_file, write_atomic
from ..state.keys import KeySet, load_pem, new_key_and_cert, pem_of
from ..state.sandbox import DEFAULT_SANDBOX, Sandboxes
from ..state.settings import Settings
from ..state.tls import TlsFiles, ensure_tls

if TYPE_CHECKING:
    from ..state.store import Store

log = logging.getLogger("fakests.store")
SHARED_STORE = "shared.sqlite"  # in the state directory: what ``serve --workers N`` processes share


@dataclass
class Runtime:
    """Settings plus everything made from them at start-up."""

    settings: Settings
    keys: KeySet
    sandboxes: Sandboxes
    client_cert_path: Path  # PEM with the default client certificate's key and certificate
    tls: TlsFiles | None
    # Set by whatever serves the managed-identity endpoints beside this STS (``fakests serve``'s thread,
    # ``FakeSTS``, which starts them on first use): the port they listen on, for the admin API.
    identity_listener: Callable[[], int | None] | None = None

    def identity_port(self) -> int | None:
        """The port of the managed-identity endpoints (plain HTTP) beside this STS, started now if they start
        on demand; None when none are served (``identity_port`` -1, ``serve --workers N``)."""
        return self.identity_listener() if self.identity_listener is not None else None

    @classmethod
    def start(cls, settings: Settings | None = None, *, directory: Directory | None = None,
              store: Store | None = None) -> Runtime:
        """``store``: sandboxes (the default one included, with its scenarios) come from the store, and
        every change goes back there. A worker of ``serve --workers N`` finds the default sandbox that
        ``seed_shared_store`` put there. A replica on a remote store (``--store redis://``) first shares
        its state directory's material (``share_state``); then, if the store has no default sandbox yet,
        it seeds it with its own (set-if-absent: of replicas starting at once, one wins, and every other
        takes the winner's, scenarios included); otherwise it takes the store's, as a worker does."""
        settings = settings or Settings()
        state = settings.state_dir
        with state_directory(state):
            state.mkdir(parents=True, exist_ok=True)
            pem = settings.signing_key.read_bytes() if settings.signing_key else None
            with _locked(state):  # pytest-xdist workers may share one state directory
                if store is not None and store.remote and _CLIENT in share_state(store, settings):
                    directory = None  # it holds this replica's former client certificate: read the config again
                try:
                    keys = KeySet.load_or_create(state / "signing", pem)
                except ValueError as exc:  # only ``signing_key``'s PEM reaches here: state files say their own
                    raise ConfigError(str(settings.signing_key), "", f"signing_key: not an RSA key and its "
                                                                     f"certificate in one PEM ({exc})") from None
                client_pem = ensure_client_certificate(state / "client" / "client-cert.pem")
                cluster_keys = KeySet.load_or_create(state / CLUSTER_KEYS)
                tls = ensure_tls(state / "tls", settings.tls_names) if settings.tls else None
            cert = Certificate(client_pem.read_text())
        if tls is not None and settings.export_ca is not None:
            _export(tls.ca, settings.export_ca)
        seeded = store.load_sandbox(DEFAULT_SANDBOX) if store is not None else None
        if directory is None and seeded is not None:
            directory = seeded.directory
        if directory is None and settings.config is not None:
            from ..state.config import load_config  # only when a config file is named

            directory = load_config(settings.config, cert).directory
        if directory is None:
            from ..state.defaults import default_directory

            directory = default_directory(cert)
        seeding = store is not None and seeded is None  # the first replica on an empty remote store
        sandboxes = Sandboxes(settings, keys, directory, None if seeding else store, engine_factory=Engine,
                              cluster_keys=cluster_keys)
        if settings.scenarios and seeded is None:
            from ..failures import scenarios  # strict: a bad file stops start-up with file, key and reason

            loaded = [scenarios.load_file(scenarios.find(n, [settings.scenario_dir])) for n in settings.scenarios]
            for scenario in loaded:
                sandboxes.default.engine.load(scenario)
        if seeding:
            assert store is not None
            default = sandboxes.default
            store.seed_sandbox(DEFAULT_SANDBOX, default.definition(server_keys=default.keys is keys))
            # Ours, or the one another replica seeded a moment before: the store's, either way.
            sandboxes = Sandboxes(settings, keys, sandboxes.template, store, engine_factory=Engine,
                                  cluster_keys=cluster_keys)
        runtime = cls(settings, keys, sandboxes, client_pem, tls)
        if store is not None and store.remote:
            runtime.watch_store(store)
        return runtime

    def watch_store(self, store: Store) -> None:
        """Notice promptly when a remote store loses its state (a Redis wiped, or restarted without
        persistence): every second, and on each sync, the replica compares the store's epoch marker, and on
        a change offers again what it holds (``reoffer``), so that a replica started afterwards adopts the
        running ones' keys, CA and admin token instead of making its own (a split brain)."""
        store.on_lost = self.reoffer  # type: ignore[attr-defined]

        def watch() -> None:
            misses = 0
            while misses < 60:  # a store gone for a minute: leave it to the epoch check of each sync
                time.sleep(1.0)
                try:
                    store.check_epoch()  # type: ignore[attr-defined]
                    misses = 0
                except Exception:  # a store that does not answer is the breaker's business
                    misses += 1

        threading.Thread(target=watch, name="fakests-store-epoch", daemon=True).start()

    def reoffer(self) -> None:
        """Offer this replica's state material, admin token and sandboxes to a store that lost them. The
        first replica to offer wins, as at start; one whose offer loses keeps serving what it has."""
        store = self.sandboxes.store
        assert store is not None
        for name, (folder, files) in _groups(self.settings).items():
            ours = {f: (folder / f).read_bytes() for f in files}
            if pickle.loads(store.share(name, pickle.dumps(ours))) != ours:
                log.warning("another replica offered its %s first after the store lost its state: this replica "
                            "keeps its own until it restarts", name)
        if self.settings.admin_token:
            store.share("admin-token", self.settings.admin_token.encode())
        self.sandboxes.republish()


def open_store(settings: Settings) -> Store | None:
    """The store ``settings.store`` names, reachable (else a ``ConfigError`` naming ``--store``), or
    None when it is empty (in memory; ``serve --workers N`` then makes its SQLite store itself)."""
    if not settings.store:
        return None
    from ..state.redisstore import RedisStore  # only with a store configured: nothing to import otherwise

    return RedisStore.connect(settings.store)


# What a replica's state directory holds that every replica must share: signing keys (a token one
# signs verifies against another's JWKS), the CA (each replica's server certificate, made for its own
# names, chains to one CA) and the default client certificate (registered in the shared directory).
_CLIENT, _SIGNING, _TLS_CA = "state:client", "state:signing", "state:tls-ca"
_CLUSTER = "state:kubernetes"  # the fake Kubernetes issuer's key: a token one replica mints, another accepts
CLUSTER_KEYS = "kubernetes"  # in the state directory, as ``signing``: key-*.pem


def _groups(settings: Settings) -> dict[str, tuple[Path, list[str]]]:
    """The state material replicas share, by group: its folder and files (each group travels whole)."""
    state = settings.state_dir
    groups = {_CLIENT: (state / "client", ["client-cert.pem"])}
    if settings.signing_key is None:
        groups[_SIGNING] = (state / "signing", sorted(p.name for p in (state / "signing").glob("key-*.pem")))
    if settings.tls:
        groups[_TLS_CA] = (state / "tls", ["ca.pem", "ca-key.pem"])
    groups[_CLUSTER] = (state / CLUSTER_KEYS, sorted(p.name for p in (state / CLUSTER_KEYS).glob("key-*.pem")))
    return groups


def share_state(store: Store, settings: Settings) -> set[str]:
    """Make the state directory hold the material every replica on ``store`` shares; returns the
    names of the groups adopted from another replica. Call with the directory locked, before loading.

    Each group (its files together, so a CA key never meets another replica's CA certificate) is made
    here if missing, then offered with ``Store.share`` (set-if-absent): the first replica's offer wins,
    and a replica whose files differ writes the winner's over its own (its own signing keys are
    removed; its server certificate is remade, for its own names, by the adopted CA). Replicas that
    start at the same moment therefore agree. A ``signing_key`` file is the operator's and is not
    shared (give every replica the same); with TLS off the CA is neither offered nor adopted."""
    state = settings.state_dir
    ensure_client_certificate(state / "client" / "client-cert.pem")
    if settings.signing_key is None:
        KeySet.load_or_create(state / "signing")  # makes key-0001.pem on first start
    if settings.tls:
        ensure_tls(state / "tls", settings.tls_names)
    KeySet.load_or_create(state / CLUSTER_KEYS)
    adopted = set()
    for name, (folder, files) in _groups(settings).items():
        ours = {f: (folder / f).read_bytes() for f in files}
        theirs: dict[str, bytes] = pickle.loads(store.share(name, pickle.dumps(ours)))
        if theirs == ours:
            continue
        adopted.add(name)
        if name in (_SIGNING, _CLUSTER):
            for old in folder.glob("key-*.pem"):
                if old.name not in theirs:
                    old.unlink()
        for file, data in theirs.items():
            write_atomic(folder / Path(file).name, data, private=file != "ca.pem")
        if name == _TLS_CA:
            (folder / "server.pem").unlink(missing_ok=True)  # ensure_tls remakes it, signed by the adopted CA
    return adopted




def load_cluster_keys(state: Path) -> KeySet:
    """The fake Kubernetes issuer's keys in the state directory ``state`` (made on first use), read under the
    state directory's lock, so a server starting meanwhile ends up with the same key (``fakests env``)."""
    with state_directory(state):
        state.mkdir(parents=True, exist_ok=True)
        with _locked(state):
            return KeySet.load_or_create(state / CLUSTER_KEYS)


def seed_shared_store(runtime: Runtime) -> Path:
    """A fresh shared store for ``serve --workers N`` holding this (parent) runtime's default sandbox, its
    scenarios included, for the workers to start from. Returns its path."""
    from ..state.store import SharedStore

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
    write_atomic(target, ca.read_bytes(), private=False)


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
    apps so ``ConfidentialClientApplication`` with a certificate works out of the box. One that is
    there is checked now, not at the first certificate login (which would answer 500)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key, cert = new_key_and_cert("fakests client certificate")
        write_atomic(path, pem_of(key, cert), private=True)
    else:
        with state_file(path, "client certificate (an RSA key and its certificate, PEM)"):
            load_pem(path.read_bytes(), ours=True)
    return path
