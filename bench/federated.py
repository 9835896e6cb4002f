"""What workload identity federation costs per token request, in-process (no socket): the median and p90 time
of a client-credentials request authenticated by a secret and by a fake-cluster service-account token (the
federated credential match, the RS256 signature check against the cluster's key), interleaved.

    python bench/federated.py [--requests 1000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fakests import FakeSTS
from fakests.state.settings import Settings

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    count = parser.parse_args().requests
    with tempfile.TemporaryDirectory() as state, \
            FakeSTS(Settings(port=0, state_dir=Path(state), log_requests=False)) as sts:
        fake = sts.sandbox()
        session = fake.http_client()
        url = f"{fake.authority()}/oauth2/v2.0/token"
        base = {"grant_type": "client_credentials", "client_id": fake.daemon.client_id,
                "scope": "https://graph.microsoft.com/.default"}
        forms = {"secret": {**base, "client_secret": fake.daemon.secret or ""},
                 "federated": {**base, "client_assertion_type": JWT_BEARER,
                               "client_assertion": fake.service_account_token()}}
        times: dict[str, list[float]] = {name: [] for name in forms}
        for i in range(count + 50):  # the first 50 of each warm up
            for name, form in forms.items():
                start = time.perf_counter()
                response = session.post(url, data=form)
                elapsed = time.perf_counter() - start
                assert response.status_code == 200, response.text
                if i >= 50:
                    times[name].append(elapsed)
        for name, values in times.items():
            print(f"{name:<10} median {statistics.median(values) * 1e3:.3f} ms  "
                  f"p90 {statistics.quantiles(values, n=10)[-1] * 1e3:.3f} ms  ({count} requests)")


if __name__ == "__main__":
    main()
