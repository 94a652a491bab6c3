"""MOSEI-shaped end-to-end timings: one training epoch and one full robustness evaluation on
synthetic data of MOSEI's size (16,326 training samples), reference against fast, with
torch.compile of the reference as the peer a user would try first.

    python bench/e2e_mosei.py --device cuda --json $OUT/e2e_mosei.json

Times are wall clock with device synchronisation; each variant trains a fresh model from the same
seed. The training epoch is the trainer's step (intra-protocol corruption, forward, loss,
backward, clipping, the trainer's AdamW and schedule) over shuffled batches; the evaluation is
the full robustness evaluation of `prlf-fast train` (intra protocol at ten rates × three mask
seeds, the seven inter configurations) on the test split. The JSON is rewritten after every variant, so a run cut short
keeps the variants it finished.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
from environment import environment_info

from prlf_fast import PRLF, PRLFConfig
from prlf_fast.config import TrainConfig
from prlf_fast.data import Split, epoch_generator, prepare_mmsa, synthesize, train_corrupt
from prlf_fast.eval.robustness import autocast, robustness
from prlf_fast.io.atomic import write_json
from prlf_fast.profiling import nvtx_range
from prlf_fast.train.optim import build_optimizer

VARIANTS = ("reference", "fast", "compiled-reference")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_epoch(model, forward, split, batch_size, device, amp, max_steps=None):
    steps = len(split) // batch_size if max_steps is None else max_steps
    tc = TrainConfig(lr=5e-4)
    opt, schedule = build_optimizer(model, tc, steps)
    gen = epoch_generator(0, 0, device)
    order = torch.randperm(len(split), device=split.device)
    model.train()
    for i in range(steps):
        with nvtx_range("data"):
            batch = train_corrupt(split.batch(order[i * batch_size:(i + 1) * batch_size]), gen, inplace=True)
        with autocast(device, amp):
            out = forward(batch)
        loss = model.loss(out, batch)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        schedule.step()
    return steps


def timed(fn, device):
    _sync(device)
    start = time.perf_counter()
    result = fn()
    _sync(device)
    return time.perf_counter() - start, result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--n-train", type=int, default=16326)
    p.add_argument("--n-test", type=int, default=4659)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--eval-batch-size", type=int, default=1024)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--json")
    args = p.parse_args(argv)
    device, amp = torch.device(args.device), not args.no_amp
    data = prepare_mmsa(synthesize("mosei", args.n_train, 8, args.n_test, seed=0), copy=False)[0]
    train, test = (Split.from_mmsa(data[s], device=device) for s in ("train", "test"))
    cfg = PRLFConfig.preset("mosei")
    command = " ".join(["python bench/e2e_mosei.py", *(sys.argv[1:] if argv is None else argv)])
    results = {**environment_info(command), "n_train": len(train), "n_test": len(test),
               "batch_size": args.batch_size, "amp": amp, "variants": {}}
    for variant in args.variants.split(","):
        torch.manual_seed(0)
        model = PRLF(cfg, backend="fast" if variant == "fast" else "reference").to(device)
        forward = torch.compile(model) if variant == "compiled-reference" else model
        warm, _ = timed(lambda: train_epoch(model, forward, train, args.batch_size, device, amp, max_steps=3), device)
        epoch, steps = timed(lambda: train_epoch(model, forward, train, args.batch_size, device, amp), device)
        evaluation, res = timed(lambda: robustness(forward, test, "mosei",
                                                   batch_size=args.eval_batch_size, device=device, amp=amp),
                                device)
        results["variants"][variant] = {"warmup_s": warm, "epoch_s": epoch, "steps": steps,
                                        "samples_per_s": steps * args.batch_size / epoch,
                                        "robustness_eval_s": evaluation,
                                        "intra_avg_mae": res["intra"]["average"]["mean"]["MAE"]}
        print(f"{variant:<20} epoch {epoch:8.2f} s ({steps} steps)  robustness eval {evaluation:8.2f} s", flush=True)
        base = results["variants"].get("reference")
        if base:
            for r in results["variants"].values():
                r["epoch_speedup_vs_reference"] = base["epoch_s"] / r["epoch_s"]
                r["eval_speedup_vs_reference"] = base["robustness_eval_s"] / r["robustness_eval_s"]
        if args.json:
            write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
