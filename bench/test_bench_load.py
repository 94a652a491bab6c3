"""Smoke run of ``bench/load_check.py --quick`` (the measurement itself is that script, see
BENCHMARKS.md, "Threads under load"): it writes both files, compares with the fair-share bound
and leaves no busy process behind."""
import json
import signal

import load_check
import pytest


def test_fair_share_bound():
    assert load_check.fair_share(4, 2, 2) == 3.0       # the case: 2 cores, 2 threads, 4 busy
    assert load_check.fair_share(0, 2, 2) == 1.0
    assert load_check.fair_share(2, 4, 1) == 1.0       # 3 threads on 4 cores: no slowdown
    assert load_check.fair_share(7, 4, 1) == 2.0       # one thread: (N + 1) / C


def test_busy_load_is_always_stopped():
    load = load_check.BusyLoad()
    load.start(2)
    procs = list(load.procs)
    assert all(p.poll() is None for p in procs)
    load.stop()
    load.stop()  # idempotent
    assert [p.returncode for p in procs] == [-signal.SIGKILL] * 2


def test_load_check_quick(benchmark, tmp_path, monkeypatch):
    if not benchmark.disabled:
        pytest.skip("measured by bench/load_check.py itself; this is its smoke run (--benchmark-disable)")
    started = []
    real_start = load_check.BusyLoad.start
    monkeypatch.setattr(load_check.BusyLoad, "start",
                        lambda self, n: (real_start(self, n), started.extend(self.procs)))
    assert benchmark(load_check.main, ["--quick", "--out-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "load.json").read_text())
    cores = result["cpu_budget"]
    assert started and all(p.poll() is not None for p in started)
    rows = {(r["busy"], r["kind"]) for r in result["rows"]}
    assert rows == {(n, kind) for n in (0, cores) for kind in ("step", "job")}
    assert all(r["ratio_to_bound"] == 1.0 for r in result["rows"] if r["busy"] == 0)
    assert result["environment"]["commit"] and "| N busy | setting |" in (tmp_path / "load.md").read_text()
