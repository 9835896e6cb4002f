"""``RemoteSandbox``: the ``fake_sts`` handle for a fakests running elsewhere (``FAKESTS_URL``).

The docker-compose case: tests in one container, fakests in another. Everything goes through the
admin API under ``/_fakests/`` (moto's server mode does the same), so the test code is identical to
the in-process case; only ``inprocess=True`` has nothing to short-circuit, and every request goes
over TLS trusting the CA the server publishes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import urllib3

from ..failures.scripting import build_rule
from ..state import defaults
from ..state.directory import App, ManagedIdentity, User
from ..state.journal import Journal, JournalEntry
from .sandbox import StsSandbox
from .sessions import trusting_session


class RemoteRule:
    """A rule armed on a remote fakests; counters are read from the server when asked."""

    def __init__(self, owner: RemoteSandbox, scenario: str, rule: str) -> None:
        self._owner = owner
        self.scenario = scenario
        self.rule = rule

    @property
    def name(self) -> str:
        return f"{self.scenario}/{self.rule}"

    def _counters(self) -> dict[str, Any]:
        for entry in self._owner.scenarios:
            if entry["scenario"] == self.scenario and entry["rule"] == self.rule:
                return entry
        return {"matched": 0, "fired": 0}

    @property
    def matched(self) -> int:
        return int(self._counters()["matched"])

    @property
    def fired(self) -> int:
        return int(self._counters()["fired"])

    def remove(self) -> None:
        self._owner._call("DELETE", f"/scenarios?name={self.scenario}")


class RemoteSandbox(StsSandbox):
    """A sandbox on a fakests reached over the network. Create with ``RemoteSandbox.create(url)``."""

    def __init__(self, url: str, detail: dict[str, Any], session: requests.Session, ca_path: str,
                 client_cert_path: str, admin_token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.ca_path = ca_path
        self.client_cert_path = client_cert_path
        self._admin = session
        self._token = admin_token
        self._detail = detail
        self._armed = 0

    @classmethod
    def create(cls, url: str, *, admin_token: str | None = None, ca_path: str | None = None,
               auto_sign_in: bool = False) -> RemoteSandbox:
        """A new sandbox on the fakests at ``url``. Without ``ca_path`` the CA is fetched from the server
        once, unverified (the only request that is: the CA is what makes the rest verifiable)."""
        url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
        cache = Path(tempfile.gettempdir()) / "fakests-remote"
        cache.mkdir(exist_ok=True)
        if ca_path is None:
            with warnings.catch_warnings():  # the one unverified request, on purpose
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                pem = requests.get(f"{url}/_fakests/ca.pem", headers=headers, verify=False, timeout=10)
            pem.raise_for_status()
            path = cache / f"ca-{abs(hash(url))}.pem"
            path.write_text(pem.text)
            ca_path = str(path)
        session = trusting_session(ca_path, url)
        session.headers.update(headers)
        cert = session.get(f"{url}/_fakests/client-cert.pem", timeout=10)
        cert.raise_for_status()
        cert_path = cache / f"client-{abs(hash(url))}.pem"
        cert_path.write_text(cert.text)
        cert_path.chmod(0o600)
        created = session.post(f"{url}/_fakests/sandboxes", json={"auto_sign_in": auto_sign_in}, timeout=10)
        created.raise_for_status()
        return cls(url, created.json(), session, ca_path, str(cert_path), admin_token)

    # --- plumbing -----------------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._admin.request(method, f"{self.url}/_fakests/sandboxes/{self.sandbox_id}{path}", timeout=30,
                                       **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"fakests admin {method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content and "json" in response.headers.get("content-type", "") else None

    def _refresh(self) -> dict[str, Any]:
        self._detail = self._call("GET", "")
        return self._detail

    @property
    def sandbox_id(self) -> str:
        return str(self._detail["sandbox_id"])

    def _id(self, template_id: str) -> str:
        return str(self._detail.get("id_map", {}).get(template_id, template_id))

    def app(self, role: Any) -> Any:
        from .sandbox import _ROLES, AppInfo

        client_id, secret = _ROLES[role]
        cid = self._id(client_id)
        return AppInfo(cid, secret, self._app_name(cid))

    def _app_name(self, client_id: str) -> str:
        return next((a["display_name"] for a in self._detail["directory"]["apps"] if a["client_id"] == client_id), "")

    # --- transports: always the network -------------------------------------------------------------
    def http_client(self, *, inprocess: bool = True) -> requests.Session:
        return trusting_session(self.ca_path or "", self.url)

    # --- state, over the admin API ------------------------------------------------------------------
    @property
    def journal(self) -> Journal:
        """A snapshot of the sandbox's journal, fetched now (query it like the local one)."""
        return _journal(self._call("GET", "/journal"))

    @property
    def default_journal(self) -> Journal:
        response = self._admin.get(f"{self.url}/_fakests/sandboxes/default/journal", timeout=30)
        response.raise_for_status()
        return _journal(response.json())

    def advance(self, seconds: float) -> None:
        self._call("POST", "/clock", json={"advance": seconds})

    def configure(self, **settings: Any) -> None:
        self._call("PATCH", "", json=settings)

    def service_account_token(self, namespace: str = "default", service_account: str = "workload", *,
                              audience: str = "api://AzureADTokenExchange", lifetime: float = 3600,
                              cluster: str = "fakests", issuer: str | None = None) -> str:
        """A service-account token of the fake cluster, minted by the server (``POST .../kubernetes/token``), which
        holds the cluster's key; ``workload_identity`` writes it to the pod's token file."""
        if issuer is not None:
            raise ValueError("a remote fakests names its own issuer (its origin): pass cluster=, not issuer=")
        body = {"namespace": namespace, "service_account": service_account, "audience": audience,
                "lifetime": lifetime, "cluster": cluster}
        return str(self._call("POST", "/kubernetes/token", json=body)["token"])

    @property
    def auto_sign_in(self) -> bool:
        return bool(self._refresh()["auto_sign_in"])

    @auto_sign_in.setter
    def auto_sign_in(self, value: bool) -> None:
        self._call("PATCH", "", json={"auto_sign_in": value})

    def user(self, username: str) -> User:
        self._refresh()
        for u in self._detail["directory"]["users"]:
            if u["username"].lower() == username.lower():
                return User(u["username"], u["display_name"], u["password"], u["tenant_id"], u["oid"],
                            u["account_type"], u["disabled"], u["locked"], u["password_expired"])
        raise KeyError(username)

    def add_user(self, username: str, *, password: str | None = None, tenant_id: str | None = None,
                 display_name: str | None = None, **fields: Any) -> User:
        body = {"username": username, "password": password or self.password, **fields}
        if tenant_id:
            body["tenant_id"] = tenant_id
        if display_name:
            body["display_name"] = display_name
        self._call("POST", "/users", json=body)
        return self.user(username)

    def add_app(self, app: App) -> App:  # pragma: no cover - directory objects are local; use the admin API
        raise NotImplementedError("add apps to a remote fakests with POST /_fakests/sandboxes/{id}/apps")

    def add_tenant(self, tenant_id: str, *domains: str, display_name: str = "") -> Any:
        raise NotImplementedError("add_tenant() and intercept() need fakests in the test's process, not FAKESTS_URL")

    def intercept(self, hosts: tuple[str, ...] | None = None) -> Any:  # type: ignore[override]
        raise NotImplementedError("intercept() answers in the test's process: it needs fakests there, not at "
                                  "FAKESTS_URL (against a shared server, use fakests serve --impersonate)")

    # --- managed identity, over the admin API ---------------------------------------------------------
    def _identities(self) -> dict[str, ManagedIdentity]:
        names = {f.name for f in dataclasses.fields(ManagedIdentity)}
        found = self._refresh()["directory"]["managed_identities"]
        return {i["client_id"]: ManagedIdentity(**{k: v for k, v in i.items() if k in names}) for i in found}

    @property
    def system_identity(self) -> ManagedIdentity:
        identities = self._identities()  # refreshes the detail, hosted_on included
        hosted_on = str(self._detail["directory"]["hosted_on"]).lower()
        found = next((i for i in identities.values() if i.kind == "system" and i.resource_id.lower() == hosted_on),
                     None)
        assert found is not None, "this sandbox's directory has no system-assigned identity where it runs"
        return found

    @property
    def user_identity(self) -> ManagedIdentity:
        return self._identities()[self._id(defaults.USER_IDENTITY_CLIENT_ID)]

    def add_identity(self, identity: ManagedIdentity, *, hosted_on: bool = False) -> ManagedIdentity:
        """Register a managed identity (``POST .../managed-identities``); the server checks it as it checks a
        config file's, and refuses a duplicate id or an unknown tenant."""
        added = self._call("POST", "/managed-identities", json={**dataclasses.asdict(identity), "hosted_on": hosted_on})
        names = {f.name for f in dataclasses.fields(ManagedIdentity)}
        return ManagedIdentity(**{k: v for k, v in added.items() if k in names})

    def _identity_endpoint(self, source: str) -> dict[str, Any]:
        """``GET .../identity-endpoint``: the managed-identity endpoint as this process reaches the server."""
        return dict(self._call("GET", "/identity-endpoint", params={"source": source}))

    def _identity_base(self) -> str:
        return str(self._identity_endpoint("imds")["identity_url"])

    def identity_environment(self, source: str = "imds") -> dict[str, str]:
        return dict(self._identity_endpoint(source)["environment"])

    @property
    def internal_errors(self) -> list[str]:
        count = int(self._refresh()["internal_errors"])
        return [f"{count} internal error(s): see the fakests server log"] if count else []

    @property
    def journal_lost(self) -> int:  # type: ignore[override]
        return int(self._refresh().get("journal_lost", 0))

    def drop(self) -> None:
        with contextlib.suppress(requests.RequestException):
            self._admin.delete(f"{self.url}/_fakests/sandboxes/{self.sandbox_id}", timeout=10)

    # --- scripted failures ---------------------------------------------------------------------------
    def _arm(self, rule: dict[str, Any], source: str) -> RemoteRule:
        self._armed += 1
        name = f"{source}-{self._armed}"
        rule.setdefault("id", "rule1")
        self._call("POST", "/scenarios", json={"name": name, "rules": [rule]})
        return RemoteRule(self, name, rule["id"])

    def fail(self, endpoint: str | list[str] = "token", **kwargs: Any) -> RemoteRule:  # type: ignore[override]
        return self._arm(build_rule(endpoint, kwargs), "fake_sts.fail")

    def delay(self, endpoint: str | list[str] = "token", seconds: float = 1.0,  # type: ignore[override]
              **kwargs: Any) -> RemoteRule:
        value: Any = {"min": seconds[0], "max": seconds[1]} if isinstance(seconds, tuple) else seconds
        return self._arm(build_rule(endpoint, {**kwargs, "delay": value}), "fake_sts.delay")

    def throttle(self, endpoint: str | list[str] = "token", *, limit: int, per: float,  # type: ignore[override]
                 **kwargs: Any) -> RemoteRule:
        return self._arm(build_rule(endpoint, {**kwargs, "limit": limit, "per": per}, throttle=True),
                         "fake_sts.throttle")

    @contextmanager
    def outage(self, endpoint: str | list[str] = "any", *, seconds: float | None = None,  # type: ignore[override]
               **kwargs: Any) -> Iterator[RemoteRule]:
        if not {"aadsts", "status", "fault"} & set(kwargs):
            kwargs["aadsts"] = 90033
        if seconds is not None:
            kwargs["window"] = {"start": 0, "duration": seconds}
        rule = self._arm(build_rule(endpoint, kwargs), "fake_sts.outage")
        try:
            yield rule
        finally:
            rule.remove()

    def use_scenario(self, name_or_path: str | Path) -> list[RemoteRule]:  # type: ignore[override]
        path = Path(str(name_or_path))
        if path.suffix in (".yaml", ".yml") and path.exists():
            loaded = self._call("POST", "/scenarios", data=path.read_bytes(),
                                headers={"content-type": "application/yaml"})
        else:
            loaded = self._call("POST", "/scenarios", json={"name": str(name_or_path)})
        rules = loaded.get("rules", loaded) if isinstance(loaded, dict) else loaded
        return [RemoteRule(self, r["scenario"], r["rule"]) for r in rules]

    def clear_scenarios(self) -> None:
        self._call("DELETE", "/scenarios")

    @property
    def scenarios(self) -> list[dict[str, Any]]:
        data = self._call("GET", "/scenarios")
        return list(data.get("rules", data) if isinstance(data, dict) else data)


def _journal(entries: Any) -> Journal:
    items = entries.get("entries", entries) if isinstance(entries, dict) else entries
    journal = Journal(size=max(len(items), 1))
    for item in items:
        journal.record(JournalEntry(**item))
    return journal
