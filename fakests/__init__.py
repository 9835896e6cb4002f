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

from .api import AppInfo, MissingClientLibrary, StsSandbox
from .app import create_app
from .directory import App, Certificate, User
from .driver import SignInError
from .errors import ConfigError, StsError
from .journal import Journal, JournalEntry
from .remote import RemoteSandbox
from .scenarios import Rule, Scenario
from .scenarios import find as find_scenario
from .scenarios import load_file as load_scenario
from .scenarios import parse as parse_scenario
from .scripting import ArmedRule
from .server import FakeSTS
from .settings import Settings
from .transport import TransportFault

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
