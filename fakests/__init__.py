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

__version__ = "0.2.0"

from .failures.scenarios import Rule, Scenario
from .failures.scenarios import find as find_scenario
from .failures.scenarios import load_file as load_scenario
from .failures.scenarios import parse as parse_scenario
from .failures.scripting import ArmedRule
from .server.app import create_app
from .state.directory import App, Certificate, User
from .state.errors import ConfigError
from .state.journal import Journal, JournalEntry
from .state.settings import Settings
from .sts.errors import StsError
from .testing.driver import SignInError
from .testing.fakests import FakeSTS
from .testing.remote import RemoteSandbox
from .testing.sandbox import AppInfo, MissingClientLibrary, StsSandbox
from .testing.transport import TransportFault

__all__ = [
    "App",
    "AppInfo",
    "ArmedRule",
    "Certificate",
    "ConfigError",
    "FakeSTS",
    "Journal",
    "JournalEntry",
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
