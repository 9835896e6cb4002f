#!/usr/bin/env bash
# The image and docker-compose.yml in a real container engine: rootful podman on this machine kind (root,
# no systemd, a hybrid cgroup layout, no CAP_SYS_RESOURCE, no image registry: only PyPI, npm and Debian).
# tests/server/test_container_engine.py runs it (under CI, or with FAKESTS_CONTAINER_TESTS=1); by hand:
#   bash .ci/containers.sh            # exit 0 when every check passed
# What each setting is for, found by trying: ../shared/containers/README.md. Idempotent; about 110 s from
# nothing, 30 s with the images cached. Every check talks to 127.0.0.1 or to the compose network.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
W=${FAKESTS_CONTAINERS_DIR:-${TMPDIR:-/tmp}/fakests-containers}
P=$W/project                        # the project as the working tree has it (tracked and new files)
PROJECT=${FAKESTS_COMPOSE_PROJECT:-fakestsci}  # compose project: containers fakestsci_fakests_1, ...
SMOKE_PORT=${SMOKE_PORT:-18443}
PC_VENV=/opt/podman-compose-venv
PC=$PC_VENV/bin/podman-compose
PODMAN_COMPOSE_VERSION=1.6.0        # Debian's 1.0.3 ignores depends_on conditions entirely
TENANT=fa7e0000-0000-4000-8000-000000000001
APP_TENANT=3c1c6f3e-1a7b-4b8e-9d6a-2f0e5c8b7a11  # examples/entra_app's own ids (its fakests.yaml registers them)
APP_CLIENT=6b0d2f5e-8c44-4f1a-b3a2-7e9c1d0f4a22
API_CLIENT=fa7e0000-0000-4000-8000-00000000a003  # the default directory's API (api://fakests-api)
export BUILDAH_FORMAT=docker        # the OCI format drops the Dockerfile's HEALTHCHECK
mkdir -p "$W"

step() { echo; echo "=== $* ($(( $(date +%s) - T0 ))s)"; }
die() { echo "FAILED: $*" >&2; exit 1; }
T0=$(date +%s)

cleanup() {  # only what this script made, by name; images stay cached
    timeout 60 podman rm -f -v -t 5 fakests-smoke >/dev/null 2>&1 || true
    timeout 60 podman volume rm -f fakests-smoke-ca >/dev/null 2>&1 || true
    [ -x "$PC" ] && [ -f "$P/docker-compose.yml" ] || return 0
    # podman-compose's `down -v` leaves the anonymous volume of the Dockerfile's VOLUME.
    local anon=() c
    for c in "${PROJECT}_fakests_1" "${PROJECT}_entra_1" "${PROJECT}_imds_1"; do
        anon+=("$(podman inspect "$c" --format \
                  '{{range .Mounts}}{{if eq .Destination "/var/lib/fakests"}}{{.Name}}{{end}}{{end}}' 2>/dev/null || true)")
    done
    # --profile: podman-compose leaves a profile's services out of `down` unless the profile is named.
    (cd "$P" && timeout 120 "$PC" -p "$PROJECT" --profile impersonate --profile imds down -v -t 5 >/dev/null 2>&1) \
        || true
    timeout 60 podman rm -f -v -t 5 "${PROJECT}_fakests_1" "${PROJECT}_app-tests_1" "${PROJECT}_entra_1" \
        "${PROJECT}_imds_1" >/dev/null 2>&1 || true
    # The imds network holds 169.254.169.0/24 on the host while it exists: never leave it behind.
    timeout 60 podman network rm -f "${PROJECT}_imds" >/dev/null 2>&1 || true
    for c in "${anon[@]}"; do [ -z "$c" ] || timeout 60 podman volume rm -f "$c" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

healthy() {  # $1 container, $2 seconds: without systemd podman never runs healthchecks by itself
    local end=$(( $(date +%s) + $2 ))
    while [ "$(date +%s)" -lt "$end" ]; do
        timeout 20 podman healthcheck run "$1" >/dev/null 2>&1 && return 0
        sleep 1
    done
    return 1
}

step "1. the engine: packages and containers.conf"
PKGS=(podman buildah runc fuse-overlayfs slirp4netns uidmap netavark aardvark-dns catatonit iptables debootstrap
      curl python3-venv)
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    timeout 300 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! "$PC" --version 2>/dev/null | grep -q "podman-compose version $PODMAN_COMPOSE_VERSION"; then
    [ -x "$PC_VENV/bin/pip" ] || python3 -m venv "$PC_VENV"
    timeout 300 "$PC_VENV/bin/pip" install -q "podman-compose==$PODMAN_COMPOSE_VERSION"
fi
# runc (crun refuses the hybrid cgroup layout), cgroupfs and a file event log (no systemd), and rlimits no
# higher than root may set here (it lacks CAP_SYS_RESOURCE).
mkdir -p /etc/containers
NOFILE=$(ulimit -Hn)
printf '%s\n' "# Written by fakests' .ci/containers.sh." "[containers]" \
    "default_ulimits = [\"nofile=${NOFILE}:${NOFILE}\", \"nproc=32768:32768\"]" \
    "[engine]" 'runtime = "runc"' 'cgroup_manager = "cgroupfs"' 'events_logger = "file"' \
    > /etc/containers/containers.conf
echo "podman $(podman --version | awk '{print $3}'), podman-compose $PODMAN_COMPOSE_VERSION"

step "2. a local stand-in for python:3.11-slim (no registry is reachable)"
MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$MIRROR" ] || MIRROR=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECMIRROR=$(awk '/^URIs:/{print $2}' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -m1 security \
            || echo "${MIRROR}-security")
if ! podman image exists docker.io/library/python:3.11-slim; then
    if ! podman image exists localhost/debian:bookworm; then
        rm -rf "$W/rootfs"
        timeout 900 debootstrap --variant=minbase bookworm "$W/rootfs" "$MIRROR" >/dev/null
        tar -C "$W/rootfs" -c . | timeout 300 podman import --change 'CMD ["/bin/bash"]' - localhost/debian:bookworm
        rm -rf "$W/rootfs"
    fi
    mkdir -p "$W/base/certs"
    rm -f "$W/base/certs/"*.crt
    # The machine reaches PyPI through a proxy whose CA it trusts: the image must trust the same CAs.
    cp /usr/local/share/ca-certificates/*.crt "$W/base/certs/" 2>/dev/null || true
    cat > "$W/base/Containerfile" <<CONTAINERFILE
# bookworm's python3 is 3.11; a venv first on PATH acts like the official image's /usr/local Python.
FROM localhost/debian:bookworm
RUN printf '%s\n' 'deb $MIRROR bookworm main' 'deb $MIRROR bookworm-updates main' \\
      'deb $SECMIRROR bookworm-security main' > /etc/apt/sources.list \\
 && apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      python3 python3-venv python3-pip ca-certificates && rm -rf /var/lib/apt/lists/*
COPY certs/ /usr/local/share/ca-certificates/
RUN update-ca-certificates && printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\ndefault-timeout = 180\n' \\
      > /etc/pip.conf && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 PYTHON_VERSION=3.11
CMD ["python3"]
CONTAINERFILE
    timeout 900 podman build -q -t docker.io/library/python:3.11-slim "$W/base" >/dev/null
fi
timeout 60 podman run --rm docker.io/library/python:3.11-slim python --version

step "3. the unmodified Dockerfile: build, run alone, healthcheck, exported CA, discovery"
rm -rf "$P" && mkdir -p "$P"
(cd "$SRC" && git ls-files -co --exclude-standard -z | tar --null -T - --ignore-failed-read -c 2>/dev/null) \
    | tar -x -C "$P"
cleanup
timeout 900 podman build --format docker -t localhost/fakests:ci "$P" > "$W/build.log" 2>&1 \
    || { tail -30 "$W/build.log"; die "podman build (log: $W/build.log)"; }
case $(podman image inspect localhost/fakests:ci --format '{{json .HealthCheck}}') in
    *fakests*health*) echo "image HEALTHCHECK: fakests health" ;;
    *) die "the image lost its HEALTHCHECK" ;;
esac
timeout 60 podman run -d --name fakests-smoke -p "127.0.0.1:$SMOKE_PORT:8443" -e FAKESTS_TLS_NAMES=fakests \
    -e FAKESTS_EXPORT_CA=/ca -e FAKESTS_ADMIN_TOKEN=smoke-token -v fakests-smoke-ca:/ca localhost/fakests:ci >/dev/null
healthy fakests-smoke 60 || { podman logs fakests-smoke | tail -20; die "the container never became healthy"; }
podman cp fakests-smoke:/ca/ca.pem "$W/smoke-ca.pem"
timeout 20 curl -fsS --cacert "$W/smoke-ca.pem" "https://127.0.0.1:$SMOKE_PORT/$TENANT/v2.0/.well-known/openid-configuration" \
    | python3 -c 'import json,sys; print("discovery through the published port:", json.load(sys.stdin)["issuer"])'
timeout 60 podman rm -f -v -t 5 fakests-smoke >/dev/null
timeout 60 podman volume rm -f fakests-smoke-ca >/dev/null

step "4. docker-compose.yml: fakests healthy, then app-tests against it by service name"
cd "$P"
timeout 900 "$PC" -p "$PROJECT" build > "$W/compose-build.log" 2>&1 \
    || { tail -30 "$W/compose-build.log"; die "podman-compose build (log: $W/compose-build.log)"; }
# podman 4.3 ignores depends_on: condition: service_healthy; what it means, done by hand: the healthcheck
# gates the client, as `docker compose up --wait fakests` then `run --rm app-tests` do.
timeout 120 "$PC" -p "$PROJECT" up -d fakests > "$W/compose-up.log" 2>&1 || die "compose up -d fakests"
healthy "${PROJECT}_fakests_1" 90 || { podman logs "${PROJECT}_fakests_1" | tail -20; die "compose's fakests never healthy"; }
podman exec "${PROJECT}_fakests_1" sh -c 'test "$(stat -c %u /ca/ca.pem)" = 10001' \
    || die "the CA in the named volume was not written by the image's user (10001)"
if timeout 300 "$PC" -p "$PROJECT" run --rm -T app-tests > "$W/compose-run.log" 2>&1; then
    grep -E 'passed|failed' "$W/compose-run.log" | tail -1 | sed 's/^/app-tests: /'
else
    tail -40 "$W/compose-run.log"; die "app-tests failed against fakests (log: $W/compose-run.log)"
fi

step "5. the impersonate profile: fakests as login.microsoftonline.com, the unmodified example app"
# The same image (fakests:local, built in step 4); the client's image is app-tests' (cached layers).
timeout 120 "$PC" -p "$PROJECT" --profile impersonate up -d entra > "$W/entra-up.log" 2>&1 \
    || { tail -20 "$W/entra-up.log"; die "compose --profile impersonate up -d entra"; }
healthy "${PROJECT}_entra_1" 90 || { podman logs "${PROJECT}_entra_1" | tail -20; die "entra never healthy on 443"; }
# Arm AADSTS70012 twice for the app's client in the default sandbox, from inside the container (loopback);
# later read that client's token requests back from the journal.
ADMIN='import json, os, sys, requests
s = requests.Session()
s.verify = "/var/lib/fakests/tls/ca.pem"
s.headers["Authorization"] = "Bearer " + os.environ["FAKESTS_ADMIN_TOKEN"]
base = "https://127.0.0.1:443/_fakests/sandboxes/default"
if sys.argv[1] == "arm":
    rule = {"id": "msa-server-error", "match": {"endpoint": "token", "client_id": sys.argv[2]},
            "response": {"aadsts": 70012}, "schedule": {"times": 2}}
    s.post(base + "/scenarios", json={"name": "twice-70012", "rules": [rule]}).raise_for_status()
else:
    entries = s.get(base + "/journal", params={"endpoint": "token", "client_id": sys.argv[2]}).json()["entries"]
    print("entra journal:", [e["status"] for e in entries])'
podman exec "${PROJECT}_entra_1" python -c "$ADMIN" arm "$APP_CLIENT" || die "arming AADSTS70012"
if timeout 120 "$PC" -p "$PROJECT" --profile impersonate run --rm -T entra-app > "$W/entra-app.log" 2>&1; then
    grep -E '^(msal|azure-identity): eyJ' "$W/entra-app.log" | cut -c1-40 | sed 's/^/entra-app: /'
    echo "entra-app retries: $(grep -c 'sign-in attempt' "$W/entra-app.log")"
else
    tail -40 "$W/entra-app.log"; die "the example app failed against the impersonating fakests"
fi
# A resource server's view, in the same unmodified client container: the real metadata URL, then its keys
# (PyJWT's PyJWKClient over urllib: the ssl module's SSL_CERT_FILE bundle, not requests').
VERIFY='import jwt, requests, app
token = app.graph_token()
meta = requests.get(f"https://login.microsoftonline.com/{app.TENANT_ID}/v2.0/.well-known/openid-configuration").json()
key = jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt(token)
claims = jwt.decode(token, key.key, algorithms=["RS256"], audience="https://graph.microsoft.com",
                    issuer=f"https://sts.windows.net/{app.TENANT_ID}/")
print("verified:", meta["issuer"], claims["iss"], claims["appid"])'
timeout 120 "$PC" -p "$PROJECT" --profile impersonate run --rm -T entra-app python -c "$VERIFY" \
    > "$W/entra-verify.log" 2>&1 || { tail -30 "$W/entra-verify.log"; die "token verification from the metadata URL"; }
grep '^verified: ' "$W/entra-verify.log" | sed 's/^/entra-app /'
podman exec "${PROJECT}_entra_1" python -c "$ADMIN" journal "$APP_CLIENT" || die "reading the journal"

step "6. the imds profile: fakests at 169.254.169.254, the unmodified VM app"
# fakests has IMDS's own address on the imds network and serves the managed-identity endpoints on port 80;
# examples/imds_app/app.py sets nothing. A 429 with Retry-After: 1 armed once in the default sandbox (the one
# a bare IMDS path reaches): azure-identity's retry after it, then every client's requests, from the journal.
timeout 120 "$PC" -p "$PROJECT" --profile imds up -d imds > "$W/imds-up.log" 2>&1 \
    || { tail -20 "$W/imds-up.log"; die "compose --profile imds up -d imds"; }
healthy "${PROJECT}_imds_1" 90 || { podman logs "${PROJECT}_imds_1" | tail -20; die "imds never healthy"; }
IMDS_ADMIN='import os, sys, requests
s = requests.Session()
s.verify = "/var/lib/fakests/tls/ca.pem"
s.headers["Authorization"] = "Bearer " + os.environ["FAKESTS_ADMIN_TOKEN"]
base = "https://127.0.0.1:8443/_fakests/sandboxes/default"
if sys.argv[1] == "arm":
    rule = {"id": "throttled-once", "match": {"endpoint": "imds"},
            "response": {"status": 429, "retry_after": 1}, "schedule": {"times": 1}}
    s.post(base + "/scenarios", json={"name": "imds-429-once", "rules": [rule]}).raise_for_status()
else:
    entries = s.get(base + "/journal", params={"endpoint": "imds"}).json()["entries"]
    print("imds journal:", [e["status"] for e in entries], sorted({e["path"] for e in entries}))
    print("imds retry after the 429 (Retry-After 1): %.1f s" % (entries[1]["at"] - entries[0]["at"]))'
podman exec "${PROJECT}_imds_1" python -c "$IMDS_ADMIN" arm || die "arming the IMDS 429"
if timeout 120 "$PC" -p "$PROJECT" --profile imds run --rm -T imds-app > "$W/imds-app.log" 2>&1; then
    grep -E '^(Azure variables|ManagedIdentityCredential|DefaultAzureCredential|ManagedIdentityClient): ' \
        "$W/imds-app.log" | cut -c1-60 | sed 's/^/imds-app /'
else
    tail -40 "$W/imds-app.log"; die "the VM app failed against fakests at 169.254.169.254"
fi
# A resource server's view of an IMDS token for a v2 API: discovery at the pinned public URL, its JWKS, and
# the iss it names (the CA only for this https check; the app itself never needs it).
VERIFY_IMDS="import jwt, requests
from azure.identity import ManagedIdentityCredential
token = ManagedIdentityCredential().get_token('api://fakests-api/.default').token
meta = requests.get('https://imds:8443/$TENANT/v2.0/.well-known/openid-configuration').json()
key = jwt.PyJWKClient(meta['jwks_uri']).get_signing_key_from_jwt(token)
claims = jwt.decode(token, key.key, algorithms=['RS256'], audience='$API_CLIENT', issuer=meta['issuer'])
print('verified:', claims['iss'], claims['azp'], claims['xms_mirid'].rsplit('/', 1)[1], ','.join(claims['roles']))"
timeout 120 "$PC" -p "$PROJECT" --profile imds run --rm -T -e REQUESTS_CA_BUNDLE=/ca/ca.pem -e SSL_CERT_FILE=/ca/ca.pem \
    imds-app python -c "$VERIFY_IMDS" > "$W/imds-verify.log" 2>&1 \
    || { tail -30 "$W/imds-verify.log"; die "verifying an IMDS token against the served JWKS"; }
grep '^verified: ' "$W/imds-verify.log" | sed 's/^/imds-app /'
# A test's own sandbox on this server (the fake_sts fixture's remote mode): the admin API says where its
# managed-identity endpoints are, as this container reaches them.
REMOTE_IMDS="import os
from azure.identity import ManagedIdentityCredential
from fakests.testing.remote import RemoteSandbox
sb = RemoteSandbox.create('https://imds:8443', admin_token=os.environ['FAKESTS_ADMIN_TOKEN'], ca_path='/ca/ca.pem')
with sb.managed_identity('imds') as env:
    token = ManagedIdentityCredential().get_token('https://management.azure.com/.default')
print('remote sandbox:', env['AZURE_POD_IDENTITY_AUTHORITY_HOST'] == 'http://imds:80/' + sb.tenant_id,
      [(e.status, e.client_id == sb.system_identity.client_id) for e in sb.journal.entries('imds')])
sb.drop()"
timeout 120 "$PC" -p "$PROJECT" --profile imds run --rm -T -e FAKESTS_ADMIN_TOKEN="${FAKESTS_ADMIN_TOKEN:-fakests-ci-admin-token}" \
    imds-app python -c "$REMOTE_IMDS" > "$W/imds-remote.log" 2>&1 \
    || { tail -30 "$W/imds-remote.log"; die "a remote sandbox's managed identity"; }
grep '^remote sandbox: ' "$W/imds-remote.log" | sed 's/^/imds-app /'
podman exec "${PROJECT}_imds_1" python -c "$IMDS_ADMIN" journal || die "reading the IMDS journal"

step "all checks passed"
