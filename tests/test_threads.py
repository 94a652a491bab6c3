"""The CPU budget (faked affinity masks and cgroup v1/v2 quota files), the thread choice, the
OpenMP wait policy (set before torch is imported, a user's own kept) and their record."""
import json
import os
import subprocess
import sys

import pytest
from helpers import TINY_RUN

from prlf_fast import threads
from prlf_fast.errors import PRLFError
from prlf_fast.study import launch
from prlf_fast.threads import DEFAULT_WAIT, WAIT_VARS, choose_threads, configure_openmp, cpu_budget

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fake_system(tmp_path, cgroup_table: str, files: dict):
    """``proc_root`` whose self/cgroup holds ``cgroup_table``; ``cgroup_root`` holding ``files``."""
    proc, cg = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(cgroup_table)
    cg.mkdir()
    for rel, text in files.items():
        (cg / rel).parent.mkdir(parents=True, exist_ok=True)
        (cg / rel).write_text(text)
    return str(proc), str(cg)


def mask(n):
    return lambda pid: set(range(n))


def test_affinity_mask_without_quota(tmp_path):
    proc, cg = fake_system(tmp_path, "0::/user.slice\n", {"cgroup.controllers": "cpu", "user.slice/cpu.max": "max 100000"})
    assert cpu_budget(proc, cg, mask(3)) == {"cpus": 3, "affinity": 3, "cgroup_quota": None}


def test_cgroup_v2_quota_of_an_ancestor_caps_the_mask(tmp_path):
    proc, cg = fake_system(tmp_path, "0::/slurm/job7/step0\n", {
        "cgroup.controllers": "cpu", "slurm/job7/step0/cpu.max": "max 100000",
        "slurm/job7/cpu.max": "150000 100000", "slurm/cpu.max": "400000 100000"})
    assert cpu_budget(proc, cg, mask(8)) == {"cpus": 2, "affinity": 8, "cgroup_quota": 1.5}
    assert cpu_budget(proc, cg, mask(1))["cpus"] == 1  # the mask is tighter


def test_cgroup_v2_hybrid_mount_and_namespaced_path(tmp_path):
    # a container's cgroup namespace: its path is not under the mount; the mount's own limit counts
    proc, cg = fake_system(tmp_path, "1:cpu:/\n0::/docker/abc\n", {"unified/cpu.max": "50000 100000"})
    assert cpu_budget(proc, cg, mask(4)) == {"cpus": 1, "affinity": 4, "cgroup_quota": 0.5}


@pytest.mark.parametrize("quota, expected", [("250000", 3), ("-1", 8)])
def test_cgroup_v1_cfs_quota(tmp_path, quota, expected):
    proc, cg = fake_system(tmp_path, "5:cpuacct,cpu:/slurm/job1\n4:memory:/x\n", {
        "cpu,cpuacct/slurm/job1/cpu.cfs_quota_us": quota, "cpu,cpuacct/slurm/job1/cpu.cfs_period_us": "100000",
        "memory/x/cpu.cfs_quota_us": "100000", "memory/x/cpu.cfs_period_us": "100000"})
    assert cpu_budget(proc, cg, mask(8))["cpus"] == expected


def test_unreadable_cgroup_files_leave_the_mask(tmp_path):
    proc, cg = fake_system(tmp_path, "garbage\n0::/a\n", {"cgroup.controllers": "", "a/cpu.max": "lots 0"})
    assert cpu_budget(proc, cg, mask(2))["cpus"] == 2


def test_explicit_setting_wins_then_omp_num_threads_then_budget():
    budget = {"cpus": 2, "affinity": 2, "cgroup_quota": None}
    assert choose_threads(5, {"OMP_NUM_THREADS": "3"}, budget) == (5, "--threads")
    assert choose_threads(None, {"OMP_NUM_THREADS": "3,1"}, budget) == (3, "OMP_NUM_THREADS")
    assert choose_threads(None, {"OMP_NUM_THREADS": ""}, budget) == (2, "cpu budget")
    with pytest.raises(ValueError, match="--threads 0 must be ≥ 1"):
        choose_threads(0, {}, budget)
    with pytest.raises(PRLFError, match="OMP_NUM_THREADS='many'"):
        choose_threads(None, {"OMP_NUM_THREADS": "many"}, budget)


def test_sweep_cells_share_the_budget(monkeypatch):
    monkeypatch.setattr(threads, "cpu_budget", lambda: {"cpus": 7, "affinity": 16, "cgroup_quota": 6.5})
    assert launch.cpu_cores() == 7


def test_wait_policy_is_set_unless_the_user_chose_one():
    env = {"PATH": "/bin"}
    assert configure_openmp(env) == DEFAULT_WAIT and env == {"PATH": "/bin", **DEFAULT_WAIT}
    for var in WAIT_VARS:
        env = {var: "7"}
        assert configure_openmp(env) == {} and env == {var: "7"}


def _python(code: str, **env_overrides):
    env = {k: v for k, v in os.environ.items() if k not in (*WAIT_VARS, "OMP_NUM_THREADS")}
    env.update(PYTHONPATH=ROOT, **env_overrides)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


SPY = """
import json, os, sys
import prlf_fast.threads as t
seen = []
real = t.configure_openmp
t.configure_openmp = lambda *a, **k: (seen.append("torch" in sys.modules), real(*a, **k))[1]
from prlf_fast.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "torch_before": seen, "torch_after": "torch" in sys.modules,
                  "env": {v: os.environ.get(v) for v in t.WAIT_VARS}}))
"""


@pytest.mark.parametrize("user", [{}, {"OMP_WAIT_POLICY": "ACTIVE"}])
def test_cli_sets_the_wait_policy_before_torch_is_imported(user):
    out = json.loads(_python(SPY.replace("sys.argv[1:]", "['info']"), **user).splitlines()[-1])
    assert out["code"] == 0 and out["torch_before"] == [False] and out["torch_after"]
    expected = user or DEFAULT_WAIT
    assert out["env"] == {v: expected.get(v) for v in WAIT_VARS}


@pytest.mark.parametrize("case", ["defaults", "user"])
def test_train_records_threads_budget_and_wait_policy(tmp_path, case):
    out = tmp_path / "run"
    argv = ["train", *TINY_RUN, "--out", str(out), "--no-eval", *(["--threads", "1"] if case == "defaults" else [])]
    user = {} if case == "defaults" else {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    _python(f"import sys; from prlf_fast.cli import main; sys.exit(main({argv!r}))", **user)
    p = json.loads((out / "config.json").read_text())["provenance"]
    rec, log = p["cpu_threads"], (out / "train.log").read_text()
    assert p["threads"] == 1 and rec["cpu_budget"] == cpu_budget() and rec["runtime"]
    if case == "defaults":
        assert rec["source"] == "--threads" and rec["openmp"] == {"variables": DEFAULT_WAIT, "set_by": "prlf-fast"}
        line = f"threads: 1 (--threads; cpu budget: affinity {cpu_budget()['affinity']}, cgroup quota "
        wait = " ".join(f"{k}={v}" for k, v in DEFAULT_WAIT.items())
        assert line in log and f"OpenMP: {wait} (set by prlf-fast)" in log
    else:
        assert rec["source"] == "OMP_NUM_THREADS"
        assert rec["openmp"] == {"variables": {"OMP_WAIT_POLICY": "PASSIVE"}, "set_by": "user"}
        assert "threads: 1 (OMP_NUM_THREADS; " in log and "OpenMP: OMP_WAIT_POLICY=PASSIVE (set by user)" in log


def test_predict_takes_threads():
    from prlf_fast.cli import build_parser

    assert build_parser().parse_args(["predict", "--run", "r", "--out", "o.csv", "--threads", "2"]).threads == 2
