"""The public surface is exactly ``fakests.__all__`` (httpx's tests/test_exported_members.py is the model)."""

from __future__ import annotations

import importlib.metadata
import types

import pytest

import fakests


def test_all_matches_the_public_names() -> None:
    public = {name for name, value in vars(fakests).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"}
    assert public | {"__version__"} == set(fakests.__all__)
    assert fakests.__all__ == sorted(fakests.__all__)


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
