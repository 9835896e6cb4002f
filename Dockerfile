# fakests as a container: a fake login.microsoftonline.com for tests (docker-compose.yml shows the wiring).
#   docker build -t fakests .
#   docker run --rm -p 8443:8443 -e FAKESTS_TLS_NAMES=fakests fakests
# Settings are FAKESTS_<SETTING> variables (fakests serve --help lists them). Off loopback the admin API
# wants a bearer token: set FAKESTS_ADMIN_TOKEN, else the server makes one and prints it once.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed non-root uid/gid (Kubernetes runAsNonRoot wants a number). /ca exists and belongs to that user
# so that an empty named volume mounted there (FAKESTS_EXPORT_CA=/ca) starts out writable by it.
RUN groupadd --system --gid 10001 fakests \
    && useradd --system --uid 10001 --gid fakests --home-dir /home/fakests --create-home \
       --shell /usr/sbin/nologin fakests \
    && mkdir -p /var/lib/fakests /scenarios /ca \
    && chown fakests:fakests /var/lib/fakests /ca

# Only what `pip install .` needs: the metadata, the readme it names, the package and the scenario
# library that is built into it (pyproject.toml: force-include scenarios -> fakests/scenarios).
WORKDIR /build
COPY pyproject.toml README.md ./
COPY fakests/ fakests/
COPY scenarios/ scenarios/
# [redis]: the Redis client, for replicas that share state (FAKESTS_STORE=redis://...); small and pure Python.
RUN pip install --no-cache-dir ".[redis]" && rm -rf /build

ENV FAKESTS_HOST=0.0.0.0 \
    FAKESTS_STATE_DIR=/var/lib/fakests \
    FAKESTS_SCENARIO_DIR=/scenarios

# Keys, CA and server certificate: kept across restarts of the same volume.
VOLUME ["/var/lib/fakests"]
WORKDIR /home/fakests
USER 10001:10001
EXPOSE 8443

# `fakests health` is in the image already: GET https://127.0.0.1:$FAKESTS_PORT/_fakests/health verified
# with the state directory's CA; exit 0 when it answers {"status": "ok"}. No curl or wget needed.
HEALTHCHECK --interval=10s --timeout=10s --start-period=30s --retries=3 CMD ["fakests", "health"]

CMD ["fakests", "serve"]
