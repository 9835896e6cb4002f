"""A user's view: fakests installed from a built wheel (not editable) into a scratch project outside
the repository, whose own pytest settings turn every warning into an error, with pytest 9.

An editable install hides packaging defects: once, fakests/ had no ``__init__.py``, and a regular
install made pytest mark ``__main__``, ``cli``, ``config``... as top-level modules to rewrite, so every
pytest run in such a project crashed at start-up with PytestAssertRewriteWarning.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

PYPROJECT = """\
[project]
name = "someones-app"
version = "1.0"

[tool.pytest.ini_options]
addopts = "--strict-config --strict-markers"
filterwarnings = ["error"]
"""


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{cmd} exited {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def test_a_wheel_install_in_a_strict_project(tmp_path_factory: pytest.TempPathFactory) -> None:
    scratch = tmp_path_factory.mktemp("someones-app")
    assert REPO not in scratch.parents
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKESTS_", "PYTEST_", "VIRTUAL_ENV"))}
    env.pop("PYTHONPATH", None)
    dist = scratch / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)], scratch, env)
    (wheel,) = dist.glob("fakests-*.whl")

    venv = scratch / ".venv"
    _run([sys.executable, "-m", "venv", str(venv)], scratch, env)
    python = str(venv / "bin" / "python")
    _run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{wheel}[clients]", "pytest>=9,<10"],
         scratch, env)
    listed = _run([python, "-m", "pip", "show", "-f", "fakests"], scratch, env).stdout
    assert "Editable project location" not in listed and "fakests/__init__.py" in listed

    (scratch / "pyproject.toml").write_text(PYPROJECT)
    (scratch / "tests").mkdir()
    shutil.copy(REPO / "tests" / "userview" / "user_tests.py", scratch / "tests" / "test_user.py")
    done = _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], scratch, env)
    assert done.stdout.splitlines()[-1].startswith("7 passed"), done.stdout
    # The installed package is the one that ran: the repository is not on the path.
    where = _run([python, "-c", "import fakests; print(fakests.__file__)"], scratch, env).stdout
    assert str(venv) in where
