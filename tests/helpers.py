"""Plain helpers and constants shared by several test modules (no test module imports another).
Fixtures and collection hooks stay in conftest.py; tests/ is on sys.path (pytest's default
"prepend" import mode for a tests/ folder without __init__.py), so ``from helpers import ...``."""
import copy

import torch
from conftest import assert_error_rule, random_batch

from prlf_fast import PRLF, Batch
from prlf_fast.cli import main
from prlf_fast.data import Split
from prlf_fast.io import atomic

# -- the command line ----------------------------------------------------------------------------

# A tiny model on MOSI-shaped inputs: fast enough for tests on 2 CPU cores.
TINY_MODEL = ["--set", "d_model=16", "--set", "n_heads=2", "--set", "n_tokens=2", "--set", "ffn_dim=32",
              "--set", "recog_hidden=16", "--set", "n_encoder_layers=1", "--set", "n_interact=1"]
TINY_OPTS = ["--epochs", "2", "--batch-size", "16", "--device", "cpu", *TINY_MODEL]
TINY_RUN = ["--synthetic", "48,16,24", *TINY_OPTS]

# The smallest run the safety and untrusted-input tests train once per module, and its evaluation.
RUN = ["--synthetic", "16,8,8", "--epochs", "1", "--batch-size", "8", "--device", "cpu", *TINY_MODEL]
EVAL = ["--device", "cpu", "--rates", "0.0", "--seeds", "0"]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code, err, *fragments):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prlf-fast: error: "), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], lines[0]


def copy_run(src, dst, names=("config.json", "best.safetensors", "metrics.jsonl", "results.json", "report.md")):
    dst.mkdir()
    for name in names:
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


# -- kills at a commit boundary ------------------------------------------------------------------

class Killed(BaseException):
    """kill -9, as seen from inside: nothing after it runs, nothing is cleaned up."""


def kill_at(monkeypatch, k):
    """Kill the process just before its k-th rename or removal (k = 0: never; count them)."""
    state = {"n": 0, "dead": False}
    replace, remove = atomic._replace, atomic.remove

    def boundary():
        if state["dead"]:
            return True
        state["n"] += 1
        if state["n"] == k:
            state["dead"] = True
            raise Killed
        return False

    def killable_replace(src, dst):
        if boundary():
            raise Killed
        replace(src, dst)

    def killable_remove(path):
        if not boundary():  # a dead process removes nothing (its temporary files stay)
            remove(path)

    monkeypatch.setattr(atomic, "_replace", killable_replace)
    monkeypatch.setattr(atomic, "remove", killable_remove)
    return state


# -- data ----------------------------------------------------------------------------------------

def tiny_split(cfg, n, seed=0):
    """Random samples, some with a modality (or everything) already absent."""
    g = torch.Generator().manual_seed(seed)
    lengths = {m: torch.randint(0, cfg.lengths()[m] + 1, (n,), generator=g) for m in cfg.dims()}
    lengths["text"][0] = lengths["audio"][0] = lengths["vision"][0] = 0
    batch = random_batch(cfg, n, seed=seed, lengths=lengths)
    return Split(batch.text, batch.text_mask, batch.audio, batch.audio_mask, batch.vision,
                 batch.vision_mask, batch.label)


# Valid lengths with awkward cases: sample 0 lacks audio, sample 2 lacks everything, sample 3
# lacks audio and vision.
LENGTHS = {"text": torch.tensor([4, 9, 0, 2]), "audio": torch.tensor([0, 5, 0, 0]),
           "vision": torch.tensor([13, 1, 0, 0])}


# -- the whole model against the reference -------------------------------------------------------

def batch_to(batch, dtype, device):
    return Batch(**{k: (v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device))
                    for k, v in vars(batch).items() if v is not None})


def run_model(model, batch, dtype, backend, device):
    model = copy.deepcopy(model).to(device=device, dtype=dtype)
    model.backend = backend
    batch = batch_to(batch, dtype, device)
    out = model(batch)
    loss = model.loss(out, batch)
    names, params = zip(*model.named_parameters())
    grads = torch.autograd.grad(loss["total"], params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    return [out.prediction, out.weights, loss["total"], *grads], ["prediction", "weights", "loss", *names]


def check_backend_parity(cfg, batch, backend, training: bool = False):
    """``backend`` in float32 against the reference in float32 and float64 (the error rule); in
    eval mode, or in training mode (for a config without dropout) with ``training``."""
    torch.manual_seed(0)
    model = PRLF(cfg, backend="reference").double().train(training)
    exact, names = run_model(model, batch, torch.float64, "reference", "cpu")
    same, _ = run_model(model, batch, torch.float32, "reference", "cpu")
    fast, _ = run_model(model, batch, torch.float32, backend, "cpu")
    assert_error_rule(fast, same, exact, names)


def fix_reference_dropout(monkeypatch, keep_mask) -> None:
    """Make the reference ProgInteract iteration's dropout (``F.dropout`` in
    ``prlf_fast.reference.interact``) use ``keep_mask(x, p)`` (1 = keep) in training mode instead
    of drawing its own, so that a test can give it the fused iteration's masks."""
    import prlf_fast.reference.interact

    class Functional:
        def __getattr__(self, name):
            return getattr(torch.nn.functional, name)

        def dropout(self, x, p, training):
            if not training or p == 0:
                return x
            return x * keep_mask(x, p).to(x.dtype) / (1 - p)

    monkeypatch.setattr(prlf_fast.reference.interact, "F", Functional())
