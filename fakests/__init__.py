"""fakests: a fake Microsoft Entra ID security token service for tests, with scripted failures.

The public surface is this module: everything a test or a tool imports is named in ``__all__``
(``tests/test_exported_members.py`` keeps the two in step, as httpx's own test does). The rest of
the package is implementation and may move between releases.

    from fakests import FakeSTS

    with FakeSTS() as sts:                       # TLS on 127.0.0.1, a free port
        fake = sts.sandbox()                     # an isolated tenant, apps, users, journal
        fake.fail("token", aadsts=70012, times=2)
        app = fake.msal_confidential()           # real MSAL, pointed at it
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# Each public name and where it lives, imported on first use: ``import fakests`` (which ``fakests serve``
# does first) must not load what only tests need (requests, pytest, the client libraries).
_EXPORTS: dict[str, tuple[str, str]] = {
    "App": (".state.directory", "App"),
    "AppInfo": (".testing.sandbox", "AppInfo"),
    "ArmedRule": (".failures.scripting", "ArmedRule"),
    "Certificate": (".state.directory", "Certificate"),
    "ConfigError": (".state.errors", "ConfigError"),
    "FakeSTS": (".testing.fakests", "FakeSTS"),
    "FakeStsWarning": (".testing.sandbox", "FakeStsWarning"),
    "FederatedCredential": (".state.directory", "FederatedCredential"),
    "Journal": (".state.journal", "Journal"),
    "JournalEntry": (".state.journal", "JournalEntry"),
    "ManagedIdentity": (".state.directory", "ManagedIdentity"),
    "MissingClientLibrary": (".testing.sandbox", "MissingClientLibrary"),
    "RemoteSandbox": (".testing.remote", "RemoteSandbox"),
    "Rule": (".failures.scenarios", "Rule"),
    "Scenario": (".failures.scenarios", "Scenario"),
    "Settings": (".state.settings", "Settings"),
    "SignInError": (".testing.driver", "SignInError"),
    "StsError": (".sts.errors", "StsError"),
    "StsSandbox": (".testing.sandbox", "StsSandbox"),
    "TransportFault": (".testing.transport", "TransportFault"),
    "User": (".state.directory", "User"),
    "create_app": (".server.app", "create_app"),
    "find_scenario": (".failures.scenarios", "find"),
    "load_scenario": (".failures.scenarios", "load_file"),
    "parse_scenario": (".failures.scenarios", "parse"),
}

__all__ = [
    "App",
    "AppInfo",
    "ArmedRule",
    "Certificate",
    "ConfigError",
    "FakeSTS",
    "FakeStsWarning",
    "FederatedCredential",
    "Journal",
    "JournalEntry",
    "ManagedIdentity",
    "MissingClientLibrary",
    "RemoteSandbox",
    "Rule",
    "Scenario",
    "Settings",
    "SignInError",
    "StsError",
    "StsSandbox",
    "TransportFault",
    "User",
    "__version__",
    "create_app",
    "find_scenario",
    "load_scenario",
    "parse_scenario",
]
if set(__all__) != {*_EXPORTS, "__version__"}:  # not an assert: pytest rewrites this module (a plugin's package)
    raise ImportError("fakests: each name in __all__ needs its place in _EXPORTS")


def __getattr__(name: str) -> Any:
    """The public name ``name``, imported from its module the first time it is asked for (PEP 562)."""
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'fakests' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what type checkers and editors see: the same names, imported at once
    from .failures.scenarios import Rule, Scenario
    from .failures.scenarios import find as find_scenario
    from .failures.scenarios import load_file as load_scenario
    from .failures.scenarios import parse as parse_scenario
    from .failures.scripting import ArmedRule
    from .server.app import create_app
    from .state.directory import App, Certificate, FederatedCredential, User
    from .state.errors import ConfigError
    from .state.journal import Journal, JournalEntry
    from .state.settings import Settings
    from .sts.errors import StsError
    from .testing.driver import SignInError
    from .testing.fakests import FakeSTS
    from .testing.remote import RemoteSandbox
    from .testing.sandbox import AppInfo, FakeStsWarning, MissingClientLibrary, StsSandbox
    from .testing.transport import TransportFault
