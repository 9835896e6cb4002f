"""The public surface is exactly ``fakests.__all__`` (httpx's tests/test_exported_members.py is the model)."""

from __future__ import annotations

import importlib.metadata
import types

import pytest

import fakests


def test_all_matches_the_public_names() -> None:
    for name in fakests.__all__:  # every exported name resolves (they are imported on first use)
        assert not isinstance(getattr(fakests, name), types.ModuleType), name
    public = {name for name, value in vars(fakests).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)
              and name not in ("annotations", "importlib", "TYPE_CHECKING", "Any")}
    assert public | {"__version__"} == set(fakests.__all__)
    assert set(dir(fakests)) >= set(fakests.__all__)
    assert fakests.__all__ == sorted(fakests.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fakests.nope  # noqa: B018


def test_importing_fakests_loads_nothing_only_tests_need() -> None:
    """``fakests serve`` starts with ``import fakests``: the public surface resolves lazily, so neither
    requests nor pytest nor a client library is loaded (tens of ms of cold start)."""
    import subprocess
    import sys

    code = ("import sys, fakests; import fakests.cli; "
            "print(sorted(m for m in ('requests', 'pytest', 'msal', 'azure.identity', 'playwright') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_exported_name_has_a_docstring_or_is_a_value() -> None:
    for name in fakests.__all__:
        value = getattr(fakests, name)
        if callable(value):
            assert value.__doc__, f"fakests.{name} has no docstring"


def test_version_is_the_distributions() -> None:
    assert fakests.__version__ == importlib.metadata.version("fakests")


def test_a_missing_client_library_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                  fake_sts: fakests.StsSandbox) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "msal", None)  # as if MSAL were not installed
    with pytest.raises(fakests.MissingClientLibrary, match=r"fakests\[clients\]") as info:
        fake_sts.msal_confidential()
    assert isinstance(info.value, ModuleNotFoundError)  # code that catches the bare error keeps working
    monkeypatch.setitem(sys.modules, "azure.core.pipeline.transport", None)
    with pytest.raises(fakests.MissingClientLibrary, match=r"azure_kwargs\(\) needs 'azure'"):
        fake_sts.azure_kwargs()
