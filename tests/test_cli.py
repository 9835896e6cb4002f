"""The ``fakests`` command line: generated options, precedence, errors, ``ca``/``env``, and a real ``serve``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pytest
import requests

from fakests import cli
from fakests.server.runtime import Runtime
from fakests.state import defaults
from fakests.state.directory import App, Directory, Secret, Tenant, User
from fakests.state.errors import ConfigError
from fakests.state.settings import Settings
from fakests.sts.pages import BANNER
from tests import serving

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "config.yaml"


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FAKESTS_")}


@pytest.fixture(autouse=True)
def _no_fakests_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FAKESTS_"):
            monkeypatch.delenv(name)


@dataclass
class _Loaded:
    settings_values: dict[str, Any]
    directory: Directory = field(default_factory=Directory)


def _stub_config(monkeypatch: pytest.MonkeyPatch, loaded: _Loaded | ConfigError) -> list[Path]:
    """Stand-in for ``fakests.state.config`` (being written elsewhere): records the paths it was asked to read."""
    calls: list[Path] = []

    def load_config(path: Path, cert: object) -> _Loaded:
        calls.append(Path(path))
        if isinstance(loaded, ConfigError):
            raise loaded
        return loaded

    module = types.ModuleType("fakests.state.config")
    module.load_config = load_config  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fakests.state.config", module)
    return calls


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> list[tuple[Runtime, str]]:
    """Replace the foreground uvicorn runs: record the runtime and the banner it prints for port 4321."""
    runs: list[tuple[Runtime, str]] = []

    def fake_serve_forever(runtime: Runtime, on_started: Any) -> None:
        capsys.readouterr()
        on_started(4321)
        runs.append((runtime, capsys.readouterr().out))

    monkeypatch.setattr(cli, "serve_forever", fake_serve_forever)
    # and the managed-identity endpoints' thread, as if it listened on 4322
    monkeypatch.setattr(cli.IdentityServer, "start", lambda self: setattr(self, "port", 4322))
    return runs


# --- options and precedence (no servers) ------------------------------------------------------------
def test_serve_has_one_option_per_setting_with_its_help() -> None:
    params = {p.name: p for p in cli.serve.params}
    for f in fields(Settings):
        option = params[f.name]
        assert f.metadata["help"] in (option.help or "")
        assert f"FAKESTS_{f.name.upper()}" in (option.help or "")
    assert params["tls"].opts == ["--tls"] and params["tls"].secondary_opts == ["--no-tls"]
    assert params["auto_sign_in"].secondary_opts == ["--no-auto-sign-in"]
    assert params["state_dir"].opts == ["--state-dir"]


def test_flag_beats_env_beats_config_beats_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "fakests.yaml"
    config.write_text("settings: {}\n")
    calls = _stub_config(monkeypatch, _Loaded({"port": 1111, "journal_size": 5, "access_token_lifetime": 77}))
    environ = {"FAKESTS_CONFIG": str(config), "FAKESTS_STATE_DIR": str(tmp_path / "s"),
               "FAKESTS_PORT": "2222", "FAKESTS_JOURNAL_SIZE": "6"}

    settings, directory = cli.resolve_settings({"port": 3333}, environ)

    assert calls == [config]
    assert settings.port == 3333  # flag > env > file
    assert settings.journal_size == 6  # env > file
    assert settings.access_token_lifetime == 77  # file > default
    assert settings.id_token_lifetime == Settings().id_token_lifetime  # default
    assert settings.config == config and settings.state_dir == tmp_path / "s"
    assert directory is not None


def test_no_config_means_env_over_defaults_only(tmp_path: Path) -> None:
    settings, directory = cli.resolve_settings({"tls": False}, {"FAKESTS_TLS_NAMES": "a.test, b.test",
                                                                "FAKESTS_STATE_DIR": str(tmp_path)})
    assert (settings.tls, settings.tls_names, settings.state_dir, directory) == (False, ("a.test", "b.test"),
                                                                                 tmp_path, None)


def test_command_line_is_parsed_into_settings(tmp_path: Path, served: list[tuple[Runtime, str]],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKESTS_PORT", "2222")
    monkeypatch.setenv("FAKESTS_AUTO_SIGN_IN", "true")
    code = cli.main(["serve", "--port", "0", "--state-dir", str(tmp_path), "--no-auto-sign-in",
                     "--tls-names", "fakests, sts.test", "--access-token-lifetime", "4000"])
    assert code == 0
    (runtime, _), = served
    s = runtime.settings
    assert (s.port, s.auto_sign_in, s.tls_names, s.access_token_lifetime) == (0, False, ("fakests", "sts.test"), 4000)
    assert s.state_dir == tmp_path and s.host == "127.0.0.1" and s.admin_token is None


# --- errors ------------------------------------------------------------------------------------------
def test_bad_environment_value_exits_2_with_source_key_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FAKESTS_PORT", "eighty")
    assert cli.main(["serve", "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "environment: FAKESTS_PORT: " in err and "eighty" in err and "Traceback" not in err


def test_config_error_exits_2_with_file_key_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("apps: [{}]\n")
    _stub_config(monkeypatch, ConfigError(str(config), "apps[0].client_id", "required"))
    assert cli.main(["serve", "--config", str(config), "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{config}: apps[0].client_id: required" in err and "Traceback" not in err


def test_unknown_setting_in_config_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("settings: {colour: blue}\n")
    _stub_config(monkeypatch, _Loaded({"colour": "blue"}))
    assert cli.main(["serve", "--config", str(config), "--state-dir", str(tmp_path)]) == 2
    assert f"{config}: settings.colour: unknown setting" in capsys.readouterr().err


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--config", str(tmp_path / "nope.yaml"), "--state-dir", str(tmp_path)]) == 2
    assert f"{tmp_path / 'nope.yaml'}: file not found" in capsys.readouterr().err


def test_bad_config_exits_2_in_a_real_process(tmp_path: Path) -> None:
    env = {**_clean_env(), "FAKESTS_MAX_BODY": "lots"}
    proc = subprocess.run([sys.executable, "-m", "fakests", "serve", "--state-dir", str(tmp_path)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "environment: FAKESTS_MAX_BODY: " in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_real_config_file_settings_block(tmp_path: Path) -> None:
    config = tmp_path / "fakests.yaml"
    config.write_text("settings:\n  port: 1111\n  journal_size: 5\n  tls_names: [sts.test]\ninclude_defaults: true\n")
    settings, directory = cli.resolve_settings({"tls_names": ("flag.test",)}, {
        "FAKESTS_CONFIG": str(config), "FAKESTS_JOURNAL_SIZE": "6", "FAKESTS_STATE_DIR": str(tmp_path / "s")})
    assert (settings.port, settings.journal_size, settings.tls_names) == (1111, 6, ("flag.test",))
    assert directory is not None and defaults.DAEMON_ID in directory.apps


def test_real_config_file_error_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "fakests.yaml"
    config.write_text("settings:\n  port: high\ninclude_defaults: true\n")
    assert cli.main(["serve", "--config", str(config), "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{config}: settings.port: " in err and "Traceback" not in err


# --- banner ------------------------------------------------------------------------------------------
def test_banner_for_the_default_directory(tmp_path: Path, served: list[tuple[Runtime, str]]) -> None:
    assert cli.main(["serve", "--port", "0", "--state-dir", str(tmp_path)]) == 0
    (_, text), = served
    assert BANNER in text
    assert f"https://localhost:4321/{defaults.TENANT_ID}" in text and "https://localhost:4321/common" in text
    assert str(tmp_path / "tls" / "ca.pem") in text
    for value in (defaults.DAEMON_ID, defaults.DAEMON_SECRET, defaults.WEB_ID, defaults.WEB_SECRET, defaults.API_ID,
                  defaults.API_SECRET, defaults.PUBLIC_ID, "alice@contoso.com", defaults.PASSWORD):
        assert value in text
    assert "instance_discovery=False" in text and "ConfidentialClientApplication" in text
    for var in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS"):
        assert var in text
    assert "Admin token" not in text
    # The trust lines work as printed: the bundle holds the public CAs and fakests' CA.
    lines = text.split("fakests env explains .NET and Java):\n", 1)[1].split("\n\n", 1)[0]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    shell = subprocess.run(["bash", "-c", lines + '\nprintf "%s\\n" "$REQUESTS_CA_BUNDLE" "$NODE_EXTRA_CA_CERTS"'],
                           capture_output=True, text=True, timeout=60, env=env)
    bundle, ca = shell.stdout.split()
    assert (tmp_path / "tls" / "ca.pem").read_text().strip() in Path(bundle).read_text() and Path(ca).is_file()


def test_banner_names_the_dashboard_the_armed_scenarios_and_no_default_port(
        tmp_path: Path, served: list[tuple[Runtime, str]]) -> None:
    assert cli.main(["serve", "--port", "0", "--state-dir", str(tmp_path),
                     "--scenarios", "msa-transient-70012,slow-sts"]) == 0
    (runtime, text), = served
    assert "Dashboard  https://localhost:4321/_fakests/dashboard" in text
    assert "Armed      msa-transient-70012, slow-sts (in the default sandbox)" in text
    on_443 = cli.banner(runtime, 443)
    assert f"Authority  https://localhost/{defaults.TENANT_ID}\n" in on_443 and "localhost:443" not in on_443


def test_impersonate_means_the_hosts_the_issuer_and_port_443(tmp_path: Path,
                                                             served: list[tuple[Runtime, str]]) -> None:
    assert cli.main(["serve", "--impersonate", "--state-dir", str(tmp_path)]) == 0
    (runtime, text), = served
    s = runtime.settings
    assert s.impersonate == ("login.microsoftonline.com", "login.windows.net", "login.microsoft.com")
    assert set(s.impersonate) <= set(s.tls_names) and s.public_url == "https://login.microsoftonline.com"
    assert s.port == 443
    assert f"Authority  https://login.microsoftonline.com/{defaults.TENANT_ID}" in text
    assert "Answers as login.microsoftonline.com, login.windows.net, login.microsoft.com" in text
    settings, _ = cli.resolve_settings({"port": 9443, "impersonate": ("login.microsoftonline.us",)}, environ={})
    assert (settings.port, settings.public_url) == (9443, "https://login.microsoftonline.us")
    settings, _ = cli.resolve_settings({}, environ={"FAKESTS_IMPERSONATE": "1", "FAKESTS_PORT": "8443"})
    assert settings.port == 8443 and settings.impersonate[0] == "login.microsoftonline.com"
    assert cli.resolve_settings({}, environ={})[0].impersonate == ()


def test_off_loopback_gets_a_generated_admin_token(tmp_path: Path, served: list[tuple[Runtime, str]]) -> None:
    # The fake runner never binds, so 0.0.0.0 here opens nothing.
    assert cli.main(["serve", "--host", "0.0.0.0", "--port", "0", "--state-dir", str(tmp_path)]) == 0
    (runtime, text), = served
    token = runtime.settings.admin_token
    assert token and len(token) >= 32 and text.count(token) == 1


def test_configured_admin_token_is_kept_and_not_printed(tmp_path: Path, served: list[tuple[Runtime, str]]) -> None:
    assert cli.main(["serve", "--host", "10.1.2.3", "--admin-token", "s3cret-admin", "--port", "0",
                     "--state-dir", str(tmp_path), "--public-url", "https://sts.test:9443/"]) == 0
    (runtime, text), = served
    assert runtime.settings.admin_token == "s3cret-admin" and "s3cret-admin" not in text
    assert f"https://sts.test:9443/{defaults.TENANT_ID}" in text


def test_banner_lists_the_config_apps_instead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              served: list[tuple[Runtime, str]]) -> None:
    tid = "11111111-2222-4333-8444-555555555555"
    directory = Directory()
    directory.add_tenant(Tenant(tid, "Widgets", ["widgets.test"]))
    directory.add_app(App("aaaaaaaa-0000-4000-8000-000000000001", "widget daemon", tid,
                          secrets=[Secret("widget-secret")]))
    directory.add_app(App("aaaaaaaa-0000-4000-8000-000000000002", "widget api", tid,
                          identifier_uris=["api://widgets"]))
    directory.add_user(User("wendy@widgets.test", "Wendy", "widget-pass", tid))
    config = tmp_path / "widgets.yaml"
    config.write_text("settings: {}\n")
    _stub_config(monkeypatch, _Loaded({}, directory))
    assert cli.main(["serve", "--config", str(config), "--port", "0", "--state-dir", str(tmp_path)]) == 0
    (runtime, text), = served
    assert runtime.sandboxes.template is directory
    assert f"https://localhost:4321/{tid}" in text
    for value in ("widget daemon", "widget-secret", "api://widgets", "wendy@widgets.test", "widget-pass"):
        assert value in text
    assert defaults.DAEMON_SECRET not in text and "'api://widgets/.default'" in text


def test_banner_for_the_example_config(tmp_path: Path, served: list[tuple[Runtime, str]]) -> None:
    assert cli.main(["serve", "--config", str(EXAMPLE), "--port", "0", "--state-dir", str(tmp_path)]) == 0
    (runtime, text), = served
    assert runtime.settings.journal_size == 5000 and runtime.settings.config == EXAMPLE
    assert "https://localhost:4321/5e1f0000-0000-4000-8000-000000000001" in text
    for value in ("Northwind daemon", "daemon-secret", "daemon-next-secret", "api://northwind-orders",
                  "nina@northwind.example", "Nina-P@ssw0rd", "Retired app"):
        assert value in text
    assert "daemon-old-secret" not in text  # expired
    assert "(disabled)" in text and defaults.DAEMON_SECRET not in text


# --- ca and env --------------------------------------------------------------------------------------
def test_ca_prints_an_existing_path_and_pem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["ca", "--state-dir", str(tmp_path)]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == tmp_path / "tls" / "ca.pem" and path.is_file()
    assert cli.main(["ca", "--state-dir", str(tmp_path), "--pem"]) == 0
    pem = capsys.readouterr().out
    assert pem.startswith("-----BEGIN CERTIFICATE-----") and pem.strip() == path.read_text().strip()


def test_ca_follows_fakests_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FAKESTS_STATE_DIR", str(tmp_path / "from-env"))
    assert cli.main(["ca"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "from-env" / "tls" / "ca.pem")


def test_env_output_evaluates_in_a_shell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state dir"  # a space, to prove the quoting
    assert cli.main(["env", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    ca = state / "tls" / "ca.pem"
    assert ca.is_file()
    assert "keytool -importcert" in out and "-Djavax.net.ssl.trustStore=" in out and ".NET" in out
    shell = subprocess.run(["bash", "-c", 'eval "$1"; printf "%s\\n" "$REQUESTS_CA_BUNDLE" "$SSL_CERT_FILE" '
                            '"$NODE_EXTRA_CA_CERTS"', "_", out], capture_output=True, text=True, timeout=30)
    assert shell.returncode == 0, shell.stderr
    bundle = state / "tls" / "bundle.pem"
    assert shell.stdout.splitlines() == [str(bundle), str(bundle), str(ca)]


def test_ca_bundle_is_the_public_cas_plus_fakests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """REQUESTS_CA_BUNDLE and SSL_CERT_FILE replace the default bundle: pointed at fakests' CA alone, they
    break every other HTTPS call of the app. The bundle keeps certifi's CAs (what requests trusts)."""
    import ssl

    import certifi

    from fakests import FakeSTS
    from fakests.state.settings import Settings

    assert cli.main(["ca", "--bundle", "--state-dir", str(tmp_path)]) == 0
    bundle = Path(capsys.readouterr().out.strip())
    assert bundle == tmp_path / "tls" / "bundle.pem"
    text = bundle.read_text()
    assert (tmp_path / "tls" / "ca.pem").read_text().strip() in text
    assert Path(certifi.where()).read_text().strip() in text
    context = ssl.create_default_context(cafile=str(bundle))
    assert len(context.get_ca_certs()) > 50  # the public roots, each parsed
    with FakeSTS(Settings(port=0, state_dir=tmp_path, log_requests=False)) as server:
        http = requests.Session()
        http.verify, http.trust_env = str(bundle), False
        assert http.get(f"{server.url}/_fakests/health", timeout=10).json() == {"status": "ok"}


# --- a real server --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("config", "home_tenant"), [
    (None, defaults.TENANT_ID), (EXAMPLE, "5e1f0000-0000-4000-8000-000000000001")], ids=["default", "example"])
def test_serve_in_a_subprocess(tmp_path: Path, config: Path | None, home_tenant: str) -> None:
    args = ["--port", "0", "--state-dir", str(tmp_path / "state"), *(["--config", str(config)] if config else [])]
    with serving.serve(args, _clean_env()) as served:
        text = served.banner
        authority = re.search(r"Authority\s+(https://localhost:(\d+)/(\S+))", text)
        ca = re.search(r"CA\s+(\S+)", text)
        assert authority and ca, text
        origin, port, tenant = authority.group(1).rsplit("/", 1)[0], int(authority.group(2)), authority.group(3)
        assert port != 0 and tenant == home_tenant and Path(ca.group(1)).is_file()

        http = requests.Session()
        http.trust_env = False
        http.verify = ca.group(1)
        assert http.get(f"{origin}/_fakests/health", timeout=10).json() == {"status": "ok"}
        meta = http.get(f"{origin}/{tenant}/v2.0/.well-known/openid-configuration", timeout=10).json()
        assert meta["issuer"] == f"{origin}/{tenant}/v2.0"
        assert meta["token_endpoint"] == f"{origin}/{tenant}/oauth2/v2.0/token"

        # The printed MSAL snippet works as printed, whatever CA variables the environment has.
        snippet = textwrap.dedent(text.split("MSAL Python:\n", 1)[1].split("\n\n", 1)[0])
        run = subprocess.run([sys.executable, "-c", snippet], env={**_clean_env(), "REQUESTS_CA_BUNDLE": os.devnull},
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0 and run.stdout.startswith("eyJ"), (run.stdout, run.stderr)
    log = "".join(served.err.queue)
    assert f"GET /{tenant}/v2.0/.well-known/openid-configuration discovery" in log
    assert f"POST /{tenant}/oauth2/v2.0/token token" in log and "status=200" in log
    assert "Traceback" not in log
