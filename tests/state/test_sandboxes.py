"""The sandbox registry: routing by tenant and client id, drop and idle expiry, at any number of sandboxes.

The registry's clock (``sandbox.monotonic``) is moved by hand, so expiry is tested exactly and at once.
How fast create, drop and expiry stay with 1, 1,000 and 10,000 live sandboxes is ``bench/isolation.py``'s
to print; these tests hold what must stay true while it is fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fakests.state import sandbox as sandbox_module
from fakests.state.defaults import default_directory
from fakests.state.keys import KeySet
from fakests.state.sandbox import DEFAULT_SANDBOX, Sandbox, Sandboxes
from fakests.state.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    return KeySet.load_or_create(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(sandbox_module, "monotonic", clock)
    return clock


def _registry(keys: KeySet, tmp_path: Path, **settings: int) -> Sandboxes:
    return Sandboxes(Settings(state_dir=tmp_path, **settings), keys, default_directory())


def _routes_to(registry: Sandboxes, sb: Sandbox) -> bool:
    """Every fresh tenant GUID and client id of ``sb`` and its own domain reach ``sb``. (The ids it shares
    with every sandbox, the MSA tenant, Microsoft Graph and the default domains, stay with the default
    sandbox, which claimed them first.)"""
    tenants = [i for i in sb.id_map.values() if i in sb.directory.tenants]
    clients = [i for i in sb.id_map.values() if i in sb.directory.apps]
    assert tenants and clients
    return (all(registry.resolve(s, None)[0] is sb for s in [*tenants, f"sb-{sb.sandbox_id}.fakests.test"])
            and all(registry.resolve("common", cid)[0] is sb for cid in clients))


def test_drop_forgets_exactly_the_dropped_sandboxs_routes(keys: KeySet, tmp_path: Path, clock: Clock) -> None:
    registry = _registry(keys, tmp_path)
    sandboxes = [registry.create() for _ in range(300)]
    tenants, clients = len(registry._by_tenant), len(registry._by_client)
    gone = sandboxes[150]
    gone_tenant = gone.home_tenant.tenant_id
    own = [k for k, v in registry._by_tenant.items() if v is gone]
    own_clients = [k for k, v in registry._by_client.items() if v is gone]
    assert len(own) >= 3 and own_clients
    assert registry.drop(gone.sandbox_id)
    assert not registry.drop(gone.sandbox_id)  # once
    assert registry.get(gone.sandbox_id) is None
    assert len(registry._by_tenant) == tenants - len(own) and not set(own) & set(registry._by_tenant)
    assert len(registry._by_client) == clients - len(own_clients) and not set(own_clients) & set(registry._by_client)
    # Its tenant now resolves to no tenant (AADSTS90002 at the endpoints); every other sandbox still routes.
    assert registry.resolve(gone_tenant, None) == (registry.default, None)
    assert all(_routes_to(registry, sb) for sb in sandboxes if sb is not gone)
    assert not registry.drop(DEFAULT_SANDBOX)


def test_idle_sandboxes_expire_after_their_last_use_not_their_creation(keys: KeySet, tmp_path: Path,
                                                                      clock: Clock) -> None:
    registry = _registry(keys, tmp_path, sandbox_idle_ttl=100)
    early = [registry.create() for _ in range(200)]
    clock.now += 50
    late = [registry.create() for _ in range(200)]
    for sb in early[:100]:  # used at 50 s: due at 150 s, not 100 s
        sb.touch()
    clock.now += 60  # 110 s: only the early ones nobody used are due
    registry.expire_idle()
    alive = {sb.sandbox_id for sb in registry.all()}
    assert alive == {DEFAULT_SANDBOX} | {sb.sandbox_id for sb in early[:100] + late}
    assert all(registry.resolve(sb.home_tenant.tenant_id, None)[0] is registry.default for sb in early[100:])
    clock.now += 35  # 145 s: nothing more is due
    late[0].touch()
    registry.expire_idle()
    assert len(registry.all()) == 301
    clock.now += 10  # 155 s: the early ones used at 50 s and the late ones made at 50 s; not late[0], used at 145 s
    registry.expire_idle()
    assert {sb.sandbox_id for sb in registry.all()} == {DEFAULT_SANDBOX, late[0].sandbox_id}
    assert _routes_to(registry, late[0])
    assert registry.default.directory.tenants  # the default never expires
    clock.now += 1000
    registry.expire_idle()
    assert [sb.sandbox_id for sb in registry.all()] == [DEFAULT_SANDBOX]


def test_expiry_bookkeeping_stays_bounded_under_churn(keys: KeySet, tmp_path: Path, clock: Clock) -> None:
    """Sandboxes dropped by hand leave their expiry entries behind; those must not pile up."""
    registry = _registry(keys, tmp_path, sandbox_idle_ttl=3600)
    keep = [registry.create() for _ in range(10)]
    for _ in range(2000):
        assert registry.drop(registry.create().sandbox_id)
        clock.now += 0.01
    registry.expire_idle()
    assert len(registry._idle) <= 2 * len(registry.all()) + 64
    assert all(_routes_to(registry, sb) for sb in keep)
