"""The reliability permutation test: do AMRE's per-sample scores, beyond the presence
pattern, drive the predictions? After Moon et al., "When Does Quality-Aware Multimodal Fusion
Matter? A Leakage-Safe Diagnostic for Decision-Level Dependence" (INTERSPEECH 2026, arXiv
2606.26473).

On the frozen model and the evaluation's own inputs (each intra rate and mask seed, each inter
configuration), the reliability scores s (N, 3) are permuted across the test samples that share a
present-modality pattern, so presence is never shuffled; AMRE's weights softmax(s/τ), the dominant
modality and the stream order are recomputed from the permuted scores, then ProgInteract and the
head run again on the same encodings (each batch is encoded once for all permutations, after one
pass that collects the scores the permutations draw from). K
permutations (seeded) give the null distribution of each metric. Reported per case: the clean
metric, the mean over permutations, the gap clean − permuted, and the one-sided permutation
p-value (1 + #{k: permuted k at least as good as clean}) / (K + 1) (Phipson & Smyth 2010: never 0).
A gap of MAE below 0 (or of Acc-2 above 0) means the scores help.

Positive control (a bound: it sees the label): per sample, the lowest |ŷ − y| among the rule fed
its own scores and the rule fed the one-hot score of each present modality (that modality as the
dominant one, the one-hot through softmax(·/τ) as the weights). By construction it is never worse
than the clean run per sample, so its gap shows how much a score that marks the right modality
could move the predictions through this fusion rule.
"""
from __future__ import annotations

import numpy as np
import torch

from prlf_fast.config import MODALITIES
from prlf_fast.data import missing
from prlf_fast.eval import robustness
from prlf_fast.eval.anchors import per_sample_best
from prlf_fast.metrics import acc2_key, mmsa_metrics

DEFAULT_K = 100
CLEAN, ORACLE = "clean", "oracle"


def draw_permutations(present: torch.Tensor, k: int, rng: np.random.Generator) -> torch.Tensor:
    """(K, N) int64: each row a permutation of 0..N−1 that maps every sample to one with the same
    present-modality pattern (``present`` (N, 3) bool)."""
    codes = (present.long() * torch.tensor([1, 2, 4])).sum(dim=1).numpy()
    perms = np.tile(np.arange(len(codes)), (k, 1))
    for code in np.unique(codes):
        members = np.flatnonzero(codes == code)
        for row in perms:
            row[members] = members[rng.permutation(len(members))]
    return torch.from_numpy(perms)


def _one_hot_scores(present: torch.Tensor, m: int, dtype) -> torch.Tensor:
    """(B, 3): 1 for modality ``m``, 0 for the other present ones, −inf where absent."""
    hot = torch.zeros(present.shape, dtype=dtype, device=present.device)
    hot[:, m] = 1.0
    return hot.masked_fill(~present, float("-inf"))


def _permuted_fuse(model, scores: dict, perms: dict):
    """``fuse`` for ``robustness.corrupted``/``inter_encode_once``: per case ``name``, the rule with its
    own scores (``(name, CLEAN)``), with each permutation's (``(name, k)``) and with each
    modality's one-hot (``(name, ORACLE, m)``; samples without m keep their own scores)."""
    def fuse(name, hidden, present, idx):
        own = model.fuse(hidden, present)
        out = {(name, CLEAN): own}
        case_scores = scores[name].to(hidden.device)
        for k, perm in enumerate(perms[name]):
            out[(name, k)] = model.fuse(hidden, present, scores=case_scores[perm[idx]])
        for m in range(len(MODALITIES)):
            hot = torch.where(present[:, m:m + 1], _one_hot_scores(present, m, own.scores.dtype), own.scores)
            out[(name, ORACLE, m)] = model.fuse(hidden, present, scores=hot)
        return out
    return fuse


def _own_scores(model, split, run_batch_for, batch_size, device, amp) -> dict:
    """``{case: {"scores": (N, 3), "present": (N, 3)}}`` of the model's own rule."""
    fuse = lambda name, hidden, present, idx: {name: model.fuse(hidden, present)}  # noqa: E731
    return robustness.collect(model, split, run_batch_for(fuse), batch_size, device, amp, ("scores", "present"))


def _case_metrics(out: dict, name, k: int, label, dataset: str) -> dict:
    """Clean, permuted (K,) and oracle values of MAE and Acc-2 for one case."""
    acc = acc2_key(dataset)

    def two(pred):
        m = mmsa_metrics(pred, label, dataset)
        return {"MAE": m["MAE"], acc: m[acc]}

    clean = out[(name, CLEAN)]["prediction"]
    oracle, _ = per_sample_best(torch.stack([clean] + [out[(name, ORACLE, m)]["prediction"]
                                                        for m in range(len(MODALITIES))]), label)
    perm = [two(out[(name, i)]["prediction"]) for i in range(k)]
    return {"clean": two(clean), "permuted": {key: [p[key] for p in perm] for key in perm[0]},
            "oracle": two(oracle)}


def _summary(cases: list) -> dict:
    """Per metric over ``cases`` (their mean, permutation by permutation): clean, permuted mean,
    gap clean − permuted, p-value, oracle and its gap."""
    out = {}
    for key in cases[0]["clean"]:
        clean = float(np.mean([c["clean"][key] for c in cases]))
        permuted = np.mean([c["permuted"][key] for c in cases], axis=0)  # (K,)
        oracle = float(np.mean([c["oracle"][key] for c in cases]))
        as_good = permuted <= clean if key == "MAE" else permuted >= clean  # MAE: lower is better
        out[key] = {"clean": clean, "permuted": float(permuted.mean()), "gap": float(np.mean(clean - permuted)),
                    "p": float((1 + as_good.sum()) / (len(permuted) + 1)), "oracle": oracle,
                    "oracle_gap": clean - oracle}
    return out


@torch.no_grad()
def permutation_test(model, split, dataset: str, rates, seeds, k: int = DEFAULT_K, seed: int = 0,
                     batch_size: int = 256, device="cpu", amp=True) -> dict:
    """The test on ``split`` for a plain ``PRLF``: ``{"k", "seed", "intra": {"per_rate": [...],
    "average"}, "inter": {"per_config": [...], "average"}}``, each entry as ``_summary`` gives it
    (intra rates averaged over the mask ``seeds``; the inter average over the six configurations).
    Raises ValueError for k < 1."""
    if k < 1:
        raise ValueError(f"permutations k={k}: expected ≥ 1")
    device = torch.device(device)
    label = split.label.float().cpu()
    rng = np.random.default_rng(seed)
    per_case = {}

    def run(cases, run_batch_for):
        scores = _own_scores(model, split, run_batch_for, batch_size, device, amp)
        perms = {c: draw_permutations(scores[c]["present"], k, rng) for c in cases}
        out = robustness.collect(model, split, run_batch_for(_permuted_fuse(
            model, {c: scores[c]["scores"] for c in cases}, perms)), batch_size, device, amp, ("prediction",))
        per_case.update({c: _case_metrics(out, c, k, label, dataset) for c in cases})

    for mask_seed in seeds:
        uniforms = missing.eval_uniforms(split, mask_seed)
        corrupt = {(r, mask_seed): robustness.at_rate(uniforms, r) for r in rates}
        run(list(corrupt), lambda fuse: robustness.corrupted(model, corrupt, fuse))
    configs = [tuple(c) for c in missing.INTER_CONFIGS] + [()]
    run(configs, lambda fuse: robustness.inter_encode_once(model, configs, fuse))
    intra_cases = [per_case[(r, s)] for r in rates for s in seeds]
    return {
        "k": k, "seed": seed,
        "intra": {"per_rate": [{"rate": float(r), **_summary([per_case[(r, s)] for s in seeds])} for r in rates],
                  "average": _summary(intra_cases)},
        "inter": {"per_config": [{"config": robustness.inter_name(c), **_summary([per_case[c]])} for c in configs],
                  "average": _summary([per_case[c] for c in configs if c])},
    }
