"""What a scenario may hold: bounded so that no file, admin call or rule can freeze or flood fakests.

A 663-byte YAML alias bomb was accepted (loading froze the server, every response it fired was hundreds
of MiB); a body nested 900 deep was armed in one worker and failed to reach the other. Both are refused
alike everywhere a scenario enters: files, ``fakests validate``, the admin API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from fakests import cli
from fakests.failures.scenarios import MAX_BODY_DEPTH
from fakests.server.app import create_app
from fakests.state.errors import ConfigError
from fakests.state.settings import Settings
from fakests.state.yamlfile import MAX_EXPANDED_VALUES, parse_yaml
from fakests.testing.transport import session_for
from tests.inprocess import ADMIN, ORIGIN


def _bomb(levels: int = 9) -> str:
    """The classic: each level a list of nine aliases of the one before (9**levels values)."""
    lines = ['name: bomb', 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    lines += ["rules:", "  - id: boom", "    match: {endpoint: token}",
              f"    response: {{status: 500, body: *l{levels - 1}}}"]
    return "\n".join(lines) + "\n"


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"x": value}
    return value


@pytest.fixture
def s(tmp_path: Path) -> requests.Session:
    return session_for(create_app(Settings(state_dir=tmp_path, tls=False)), ORIGIN)


def test_an_alias_bomb_is_refused_before_it_is_built() -> None:
    text = _bomb()
    assert len(text.encode()) < 800
    with pytest.raises(ConfigError, match=r"bomb\.yaml: expands to [\d,]+ values with its aliases"):
        parse_yaml(text, "bomb.yaml")
    # Aliases within the bound are still YAML as people write it.
    doc = parse_yaml("base: &base {status: 503}\nrules: [{id: a, response: *base}, {id: b, response: *base}]\n", "ok")
    assert doc["rules"][0]["response"] == doc["rules"][1]["response"] == {"status": 503}
    with pytest.raises(ConfigError, match="an alias refers to a value that contains it"):
        parse_yaml("a: &a [1, *a]\n", "loop.yaml")
    copies = MAX_EXPANDED_VALUES // 101 - 10  # each alias of l stands for 101 values: just under the bound
    small = "l: &l [" + ", ".join(["1"] * 100) + "]\nm: [" + ", ".join(["*l"] * copies) + "]\n"
    assert len(parse_yaml(small, "edge")["m"]) == copies


def test_validate_and_the_admin_api_refuse_the_bomb(tmp_path: Path, s: requests.Session,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb())
    assert cli.main(["validate", str(path)]) == 1
    assert f"{path}: expands to" in capsys.readouterr().out
    r = s.post(f"{ADMIN}/sandboxes/default/scenarios", data=_bomb().encode(),
               headers={"Content-Type": "application/yaml"})
    assert r.status_code == 400 and "expands to" in r.json()["error_description"], r.text
    assert s.get(f"{ADMIN}/sandboxes/default/scenarios").json() in ([], {"rules": []})


def test_a_body_nested_past_the_bound_is_refused_everywhere(s: requests.Session) -> None:
    def rule(depth: int) -> dict[str, Any]:
        return {"name": f"deep-{depth}", "rules": [{"id": "deep", "match": {"endpoint": "token", "client_id": "nobody"},
                                                     "response": {"status": 500, "body": _nested(depth)}}]}

    refused = s.post(f"{ADMIN}/sandboxes/default/scenarios", json=rule(900))
    assert refused.status_code == 400, refused.text
    assert f"nested deeper than {MAX_BODY_DEPTH} levels" in refused.json()["error_description"]
    fits = s.post(f"{ADMIN}/sandboxes/default/scenarios", json=rule(MAX_BODY_DEPTH - 1))
    assert fits.status_code in (200, 201), fits.text
