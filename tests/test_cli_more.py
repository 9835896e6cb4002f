"""``fakests validate``, ``fakests schema`` and ``fakests token``: exit codes, messages, and tokens that
verify against the JWKS a server on the same state directory publishes."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import jwt
import pytest
from click.testing import CliRunner

from fakests import cli
from fakests.failures import scenarios
from fakests.server.app import create_app
from fakests.state import defaults
from fakests.state.settings import Settings
from fakests.testing.transport import session_for
from tests.jwks import verify

REPO = Path(__file__).resolve().parents[1]
GOOD = """\
name: good
rules:
  - id: one
    match: {endpoint: token}
    response: {aadsts: 90033, retry_after: 1}
    schedule: {times: 2}
"""


@pytest.fixture(autouse=True)
def _no_fakests_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FAKESTS_"):
            monkeypatch.delenv(name)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


# --- validate ---------------------------------------------------------------------------------------
def test_validate_good_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path / "good.yaml", GOOD)
    bundled = sorted(scenarios.bundled_dir().glob("*.yaml"))[0]
    assert cli.main(["validate", str(good), str(bundled)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{good}: OK", f"{bundled}: OK"]


BAD_FILES = [
    ("unknown-key.yaml", "rules:\n  - response: {aadsts: 90033}\n    colour: red\n",
     "rules[0]: Additional properties are not allowed ('colour' was unexpected)"),
    ("unknown-code.yaml", "rules:\n  - response: {aadsts: 99999}\n",
     "rules[0].response.aadsts: AADSTS99999 is not in the catalog"),
    ("bad-yaml.yaml", "rules: [\n  - response: {aadsts: 90033\n",
     "not valid YAML"),
    ("no-rules.yaml", "name: empty\n", "(top level): 'rules' is a required property"),
    ("both.yaml", "rules:\n  - response: {status: 500}\n    throttle: {limit: 1, per: 1}\n",
     "rules[0]: a rule has 'response' or 'throttle', not both"),
    ("neither.yaml", "rules:\n  - match: {endpoint: token}\n",
     "rules[0]: needs what to answer with: a 'response' (aadsts, status, fault, delay or rotate_keys"),
    ("shape-not-transient.yaml", "rules:\n  - response: {aadsts: 50126, shape: temporarily_unavailable}\n",
     "rules[0].response.shape: AADSTS50126 is not transient"),
]


@pytest.mark.parametrize(("name", "text", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_validate_bad_scenario_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str,
                                    message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert cli.main(["validate", str(path)]) == 1
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"{path}: ") and message in out, out
    assert "Traceback" not in out


def test_validate_missing_file_and_mixed_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path / "good.yaml", GOOD)
    missing = tmp_path / "missing.yaml"
    code = tmp_path / "code.yaml"
    code.write_text("rules:\n  - response: {aadsts: 12345}\n")
    assert cli.main(["validate", str(good), str(missing), str(code), str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{good}: OK"
    assert lines[1] == f"{missing}: file not found"
    assert lines[2].startswith(f"{code}: rules[0].response.aadsts: AADSTS12345 is not in the catalog")
    assert lines[3].startswith(f"{tmp_path}: cannot be read")  # a directory
    assert len(lines) == 4


def test_validate_config_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = REPO / "examples" / "config.yaml"
    small = write(tmp_path / "small.yaml", """\
        include_defaults: true
        apps:
          - client_id: 0e0e0e0e-0000-4000-8000-00000000a0a0
            display_name: extra
            tenant_id: fa7e0000-0000-4000-8000-000000000001
            certificates: [default]
    """)
    bad = write(tmp_path / "bad-config.yaml", """\
        include_defaults: true
        users:
          - username: x@contoso.com
            display_name: X
    """)
    files = [str(small), str(bad)] + ([str(example)] if example.exists() else [])
    assert cli.main(["validate", *files]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{small}: OK"
    assert lines[1] == f"{bad}: users[0].password: required field is missing"
    if example.exists():
        assert lines[2] == f"{example}: OK"
    assert not (tmp_path / "client").exists()  # validating writes nothing


def test_validate_exit_status_through_click(tmp_path: Path) -> None:
    good = write(tmp_path / "good.yaml", GOOD)
    bad = write(tmp_path / "bad.yaml", "rules: 3\n")
    runner = CliRunner()
    ok = runner.invoke(cli.cli, ["validate", str(good)])
    assert (ok.exit_code, ok.output) == (0, f"{good}: OK\n")
    failed = runner.invoke(cli.cli, ["validate", str(good), str(bad)])
    assert failed.exit_code == 1
    assert f"{bad}: rules: 3 is not of type 'array'" in failed.output
    assert runner.invoke(cli.cli, ["validate"]).exit_code == 2  # a usage error: no FILE


# --- schema -----------------------------------------------------------------------------------------
def test_schema_prints_the_scenario_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == scenarios.SCHEMA
    assert cli.main(["schema", "scenario"]) == 0
    assert json.loads(capsys.readouterr().out) == scenarios.SCHEMA


def test_schema_config_says_there_is_none_yet(capsys: pytest.CaptureFixture[str]) -> None:
    from fakests.state import config

    assert cli.main(["schema", "config"]) == 0
    captured = capsys.readouterr()
    if getattr(config, "SCHEMA", None) is None:
        assert json.loads(captured.out) == scenarios.SCHEMA
        assert "no JSON Schema for config files yet" in captured.err
    else:  # pragma: no cover - once config files have a schema
        assert json.loads(captured.out) == config.SCHEMA


def test_schema_unknown_kind_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schema", "directory"]) == 2
    assert "'directory' is not one of 'scenario', 'config'" in capsys.readouterr().err


# --- token ------------------------------------------------------------------------------------------
ORIGIN = "https://localhost:8443"  # what `fakests token` assumes without --port/--public-url


def token(capsys: pytest.CaptureFixture[str], state: Path, *args: str) -> str:
    assert cli.main(["token", "--state-dir", str(state), *args]) == 0, capsys.readouterr().err
    return capsys.readouterr().out.strip()


def test_token_verifies_against_a_server_on_the_same_state_dir(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    minted = token(capsys, tmp_path)
    assert minted.count(".") == 2 and "\n" not in minted
    s = session_for(create_app(Settings(state_dir=tmp_path, tls=False)), ORIGIN)
    authority = f"{ORIGIN}/{defaults.TENANT_ID}"
    claims = verify(minted, s, authority, defaults.API_ID)
    assert (claims["azp"], claims["idtyp"], claims["roles"]) == (defaults.DAEMON_ID, "app", ["Data.Read", "Data.Write"])
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(token(capsys, tmp_path, "--flavor", "expired"), s, authority, defaults.API_ID)
    with pytest.raises(jwt.InvalidAudienceError):
        verify(token(capsys, tmp_path, "--flavor", "wrong_audience"), s, authority, defaults.API_ID)
    with pytest.raises(jwt.InvalidSignatureError):
        verify(token(capsys, tmp_path, "--flavor", "bad_signature"), s, authority, defaults.API_ID)
    unknown = token(capsys, tmp_path, "--flavor", "unknown_kid")
    published = [k["kid"] for k in s.get(f"{authority}/discovery/v2.0/keys").json()["keys"]]
    assert jwt.get_unverified_header(unknown)["kid"] not in published
    assert jwt.get_unverified_header(minted)["kid"] in published


def test_token_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = json.loads(token(capsys, tmp_path, "--json", "--user", "alice@contoso.com", "--claim", 'roles=["x"]',
                           "--claim", "scp=null", "--claim", "n=5", "--claim", "note=hello world",
                           "--public-url", "https://sts.example.test:9443"))
    assert set(out) == {"token", "claims", "header"}
    c = out["claims"]
    assert (c["roles"], c["n"], c["note"], c["preferred_username"]) == (["x"], 5, "hello world", "alice@contoso.com")
    assert "scp" not in c
    assert c["iss"] == f"https://sts.example.test:9443/{defaults.TENANT_ID}/v2.0"
    assert jwt.decode(out["token"], options={"verify_signature": False}) == c
    id_token = jwt.decode(token(capsys, tmp_path, "--kind", "id", "--user", "carol@outlook.com", "--port", "9000"),
                          options={"verify_signature": False})
    assert id_token["aud"] == defaults.PUBLIC_ID and id_token["iss"].startswith("https://localhost:9000/")
    graph = jwt.decode(token(capsys, tmp_path, "--audience", "https://graph.microsoft.com", "--client-id",
                             defaults.WEB_ID), options={"verify_signature": False})
    assert (graph["aud"], graph["ver"], graph["appid"]) == ("https://graph.microsoft.com", "1.0", defaults.WEB_ID)


@pytest.mark.parametrize(("args", "message"), [
    (["--audience", "api://nope"], "--audience: no app has the client id or identifier URI 'api://nope'"),
    (["--user", "nobody@contoso.com"], "--user: no user 'nobody@contoso.com'"),
    (["--tenant-id", "nope.example"], "--tenant-id: no tenant 'nope.example'"),
    (["--claim", "iss=5"], "--claim: Issuer (iss) must be a string"),
    (["--claim", "novalue"], "Invalid value for '--claim': expected NAME=VALUE, got 'novalue'"),
    (["--flavor", "stale"], "Invalid value for '--flavor'"),
    (["--kind", "id", "--audience", "api://fakests-api"], "--audience: an id_token's audience is its client"),
])
def test_token_bad_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                  message: str) -> None:
    assert cli.main(["token", "--state-dir", str(tmp_path), *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""
    assert "Traceback" not in captured.err


def test_token_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path / "c.yaml", "colour: blue\n")
    assert cli.main(["token", "--state-dir", str(tmp_path), "--config", str(config)]) == 2
    assert f"{config}: colour: unknown key" in capsys.readouterr().err


def test_help_lists_the_new_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("validate", "schema", "token"):
        assert f"  {command} " in out
