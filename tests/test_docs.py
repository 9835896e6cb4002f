"""The README's reference sections and the editor schemas are generated: they must be up to date."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from fakests import docs
from fakests.failures.scenarios import SCHEMA as SCENARIO_SCHEMA
from fakests.state.config_schema import SCHEMA as CONFIG_SCHEMA
from fakests.sts.catalog import CATALOG

ROOT = Path(__file__).resolve().parent.parent


def test_readme_and_schemas_are_generated_from_the_current_code() -> None:
    assert docs.main(["--check", "--root", str(ROOT)]) == 0, "run: python -m fakests.docs"


def test_reference_covers_every_key_and_every_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rule = SCENARIO_SCHEMA["properties"]["rules"]["items"]["properties"]
    for part in ("match", "response", "schedule", "throttle"):
        for key in rule[part]["properties"]:
            assert f"| `{key}`" in readme, (part, key)
    for code in CATALOG:
        assert f"| {code} | {CATALOG[code].name} |" in readme


def test_every_shipped_file_validates_against_the_editor_schemas() -> None:
    scenario = jsonschema.Draft202012Validator(SCENARIO_SCHEMA)
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        assert not list(scenario.iter_errors(yaml.safe_load(path.read_text()))), path
    typed = _as_editor_sees(yaml.safe_load((ROOT / "examples" / "config.yaml").read_text()))
    errors = list(jsonschema.Draft202012Validator(CONFIG_SCHEMA).iter_errors(typed))
    assert not errors, [e.message for e in errors]


def _as_editor_sees(value: Any) -> Any:
    """YAML timestamps as the strings an editor's JSON Schema check sees."""
    if isinstance(value, dict):
        return {k: _as_editor_sees(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_editor_sees(v) for v in value]
    return value.isoformat() if isinstance(value, dt.date) else value


def test_the_readme_handle_table_names_every_public_member() -> None:
    """Every public attribute and method of the ``fake_sts`` handle appears in the README's table."""
    import re

    from fakests import StsSandbox

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("What the handle gives you", 1)[1].split("\n\n", 2)[1]
    named = set(re.findall(r"(?:fake_sts)?\.([a-z_]+)", table))
    members = {n for n in dir(StsSandbox) if not n.startswith("_")} | {"url", "ca_path", "client_cert_path", "sandbox"}
    assert members - named == set(), "README's handle table misses these members"


def test_the_readme_curl_block_works_as_printed(tmp_path: Path) -> None:
    """The README's admin-API-with-curl block, run as is against ``fakests serve``, with an app's request
    where the block says so."""
    import json
    import os
    import shutil
    import subprocess

    import pytest
    import requests

    from fakests.state import defaults as d
    from tests.serving import serve

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("### Without pytest: the admin API with curl", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    before, after = block.split("# ... your app signs in", 1)
    after = after.split("\n", 1)[1]
    env = {**os.environ, "FAKESTS_STATE_DIR": str(tmp_path), "PATH": f"{Path(os.sys.executable).parent}:"
           f"{os.environ['PATH']}"}
    with serve(["--port", "0", "--state-dir", str(tmp_path), "--no-log-requests"], env) as server:
        env["FAKESTS"] = server.url
        first = subprocess.run(["bash", "-euo", "pipefail", "-c", before + "echo \"SANDBOX_ID=$ID\"\n"],
                               env=env, capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stderr
        armed, end = json.JSONDecoder().raw_decode(first.stdout)  # curl prints the JSON with no newline
        authority, sandbox_line = first.stdout[end:].split()
        sandbox_id = sandbox_line.removeprefix("SANDBOX_ID=")
        assert authority.startswith(server.url + "/")
        assert "coin-flip-503" in json.dumps(armed)
        # The app's part: a token request for the sandbox's daemon (its id from the admin API).
        http = requests.Session()
        http.verify, http.trust_env = str(tmp_path / "tls" / "ca.pem"), False  # else *_CA_BUNDLE wins
        detail = http.get(f"{server.url}/_fakests/sandboxes/{sandbox_id}").json()
        daemon = detail["id_map"][d.DAEMON_ID]
        for _ in range(4):
            http.post(f"{authority}/oauth2/v2.0/token", data={
                "grant_type": "client_credentials", "client_id": daemon, "client_secret": d.DAEMON_SECRET,
                "scope": f"api://{detail['id_map'][d.API_ID]}/.default"})
        second = subprocess.run(["bash", "-euo", "pipefail", "-c", before.split("SANDBOX=", 1)[0]
                                 + f"ID={sandbox_id}\n" + after], env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 0, second.stderr
        journal = json.loads(second.stdout)
        statuses = [e["status"] for e in journal["entries"] if e["endpoint"] == "token"]
        assert len(statuses) == 4 and 503 in statuses, journal
        assert http.get(f"{server.url}/_fakests/sandboxes/{sandbox_id}").status_code == 404  # deleted
