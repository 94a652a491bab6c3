"""The reliability permutation test (prlf_fast.eval.permutation): identity permutations change
nothing, constant scores give a gap of exactly 0, the positive control is never worse than the
clean run, permutations keep each sample's presence pattern, scores that matter move the
predictions, and ``prlf-fast eval --permutations`` writes it into results.json and report.md."""
import json

import numpy as np
import pytest
import torch
from conftest import tiny_config
from helpers import TINY_OPTS, run_cli, tiny_split

from prlf_fast import PRLF
from prlf_fast.cli import main
from prlf_fast.eval import permutation
from prlf_fast.eval.robustness import robustness

RATES, SEEDS = (0.0, 0.5), (0, 1)


def entries(result):
    """Every reported entry (per rate, configuration and the averages)."""
    return [*result["intra"]["per_rate"], result["intra"]["average"], *result["inter"]["per_config"],
            result["inter"]["average"]]


def model_and_split(**switches):
    cfg = tiny_config(**switches)
    torch.manual_seed(0)
    with torch.no_grad():
        model = PRLF(cfg, backend="reference").eval()
        model.amre.alpha_raw.fill_(3.0)  # scores that vary strongly between samples
    return model, tiny_split(cfg, 23)


def run(model, split, k=6):
    return permutation.permutation_test(model, split, "mosi", RATES, SEEDS, k=k, batch_size=5)


def test_draws_keep_each_presence_pattern():
    g = torch.Generator().manual_seed(1)
    present = torch.rand(40, 3, generator=g) < 0.6
    perms = permutation.draw_permutations(present, 5, np.random.default_rng(0))
    assert perms.shape == (5, 40)
    for row in perms:
        assert sorted(row.tolist()) == list(range(40))
        assert torch.equal(present[row], present)
    assert (perms != torch.arange(40)).any()  # not all identities


def test_identity_permutations_change_nothing(monkeypatch):
    model, split = model_and_split()
    monkeypatch.setattr(permutation, "draw_permutations",
                        lambda present, k, rng: torch.arange(len(present)).repeat(k, 1))
    result = run(model, split)
    clean = robustness(model, split, "mosi", RATES, SEEDS, batch_size=5, amp=False, anchors=False)
    for e in entries(result):
        for key, v in e.items():
            if isinstance(v, dict):
                assert v["gap"] == 0.0 and v["p"] == 1.0, (e, key)
    # the clean column is the evaluation's own result
    assert result["intra"]["average"]["MAE"]["clean"] == pytest.approx(clean["intra"]["average"]["mean"]["MAE"],
                                                                        abs=1e-12)
    inter = {r["config"]: r["metrics"]["MAE"] for r in clean["inter"]["records"]}
    for e in result["inter"]["per_config"]:
        assert e["MAE"]["clean"] == inter[e["config"]]


def test_constant_scores_give_a_gap_of_exactly_zero():
    model, split = model_and_split(reliability="uniform")
    for e in entries(run(model, split)):
        assert e["MAE"]["gap"] == 0.0 and e["Has0_acc_2"]["gap"] == 0.0


def test_scores_that_vary_move_the_predictions_and_the_control_is_never_worse():
    model, split = model_and_split()
    result = run(model, split)
    assert any(e["MAE"]["gap"] != 0.0 for e in entries(result))
    for e in entries(result):
        assert e["MAE"]["oracle_gap"] >= 0.0      # clean − control: the control's MAE is never higher
        assert 1 / 7 <= e["MAE"]["p"] <= 1.0      # (1 + count) / (K + 1), K = 6
    assert result["inter"]["per_config"][-1]["config"] == "complete"


def test_fewer_than_one_permutation_is_refused():
    model, split = model_and_split()
    with pytest.raises(ValueError, match="k=0"):
        run(model, split, k=0)


def test_eval_permutations_writes_results_and_report(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY_OPTS, "--out", str(out), "--rates", "0.0", "0.5", "--seeds", "0"]) == 0
    code, _, err = run_cli(capsys, "eval", "--run", out, "--device", "cpu", "--permutations", "4")
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["permutation"]["k"] == 4 and results["permutation"]["seconds"] >= 0
    assert "Reliability permutation test" in (out / "report.md").read_text()
    code, _, err = run_cli(capsys, "eval", "--run", out, "--device", "cpu", "--permutations", "-1")
    assert code != 0 and "--permutations -1" in err
