"""bench/throughput.py works: its pieces run end to end for a moment. No timing is asserted (benchmarks
are never timed tests); only that every figure is produced. wrk is used when installed, else the
script's own Python load generator, so this test always runs."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench() -> tuple[ModuleType, ModuleType]:
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("_proc"), importlib.import_module("throughput")
    finally:
        sys.path.remove(str(BENCH))


def test_cpu_and_memory_of_a_process_tree(bench: tuple[ModuleType, ModuleType]) -> None:
    proc_mod, _ = bench
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.process_time()\n"
                              "while time.process_time() - t < 0.2: pass\ntime.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while proc_mod.cpu_seconds(child.pid) < 0.1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc_mod.cpu_seconds(child.pid) >= 0.1
        assert child.pid in proc_mod.process_tree(os.getpid())
        assert proc_mod.rss_bytes(child.pid) > 1 << 20
    finally:
        child.kill()
        child.wait(timeout=10)


def test_python_load_generator_against_fakests(bench: tuple[ModuleType, ModuleType], tmp_path: Path) -> None:
    """The fallback load generator, whether or not wrk is here; and the 50 never-matching rules load."""
    proc_mod, tp = bench
    rules = tp.write_inactive_rules(tmp_path / "inactive.yaml")
    server = tp.fakests_server(tmp_path / "state", rules=rules)
    try:
        server.wait_ready()
        sample = tp.measure(server, connections=4, duration=0.3, force_python=True)
        assert sample.load.tool == "python" and sample.load.requests > 0 and sample.load.errors == 0
        assert sample.cpu_per_request >= 0
        capped = proc_mod.run_python_load(server.port, tp.TOKEN_PATH, tp.FORM, connections=4, duration=10,
                                          max_requests=20)
        assert 20 <= capped.requests < 24 and capped.errors == 0
        wrong = proc_mod.run_python_load(server.port, tp.TOKEN_PATH, "grant_type=password", connections=1,
                                         duration=0.2)
        assert wrong.errors == wrong.requests > 0  # a 400 counts as an error, so the bench refuses it
    finally:
        server.stop()
    assert server.proc.returncode is not None


def test_whole_script_in_miniature(bench: tuple[ModuleType, ModuleType], capsys: pytest.CaptureFixture[str]) -> None:
    """One round of every section, a second of load each, 400 requests for memory: the full table."""
    proc_mod, tp = bench
    argv = ["--rounds", "1", "--start-rounds", "1", "--duration", "1", "--warmup", "0", "--memory-requests", "400",
            "--connections", "4"]
    if proc_mod.wrk_path() is None:
        argv.append("--python-load")
    text = tp.main(argv)
    assert text in capsys.readouterr().out
    for row in ("token, 1 worker: server CPU/request", "token, 1 worker: requests/s", "token, 2 workers",
                "token over TLS", "cold start to first discovery answer", "fakests first start",
                "memory: fakests RSS after 0 token requests", "memory: growth"):
        assert row in text, row
    assert "x (" in text and " µs" in text and " ms" in text and " MiB" in text
    assert ("n/a (no --workers)" in text) != tp.fakests_supports_workers()
    # Each 2-worker run says how the two processes shared it (a run one worker served alone is done again).
    assert re.search(r"floor x2: busiest worker's share of the CPU per run [01]\.\d\d; \d+ runs done again", text)


def test_the_federated_bench_prints_both_rows() -> None:
    """bench/federated.py runs end to end (no timing asserted)."""
    done = subprocess.run([sys.executable, str(BENCH / "federated.py"), "--requests", "10"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["secret", "federated"]


def test_the_commit_section_compares_every_setting(bench: tuple[ModuleType, ModuleType],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """--only commit: a row per journal_commit_turns setting, each against floor x2 (no timing asserted)."""
    proc_mod, tp = bench
    argv = ["--only", "commit", "--rounds", "1", "--duration", "1", "--warmup", "0", "--connections", "4"]
    if proc_mod.wrk_path() is None:
        argv.append("--python-load")
    text = tp.main(argv)
    assert text in capsys.readouterr().out
    rows = [line.split()[0] for line in text.splitlines()[4:]]
    assert rows == [str(turns) for turns in tp.COMMIT_TURNS]
