"""NVTX ranges: with the optional ``nvtx`` package the model, the data path and the evaluation
are marked in the ``prlf_fast`` domain; without it every range is a no-op."""
import contextlib

import pytest
import torch

from prlf_fast import PRLF, PRLFConfig, profiling
from prlf_fast.data import Split, prepare_mmsa, synthesize
from prlf_fast.eval.robustness import intra

SMALL = dict(d_model=16, n_heads=2, n_tokens=2, ffn_dim=32, recog_hidden=16, n_encoder_layers=1, n_interact=1)


class RecordingNvtx:
    def __init__(self):
        self.ranges = []

    @contextlib.contextmanager
    def annotate(self, name, domain):
        self.ranges.append((domain, name))
        yield


@pytest.fixture
def recorder(monkeypatch):
    rec = RecordingNvtx()
    monkeypatch.setattr(profiling, "_nvtx", rec)
    return rec


def test_evaluation_marks_data_and_every_model_stage(recorder):
    data = prepare_mmsa(synthesize("mosi", 4, 4, 4, seed=0), copy=False)[0]
    model = PRLF(PRLFConfig.preset("mosi", **SMALL), backend="fast")
    intra(model, Split.from_mmsa(data["test"]), "mosi", rates=[0.5], seeds=[0], batch_size=4)
    assert {d for d, _ in recorder.ranges} == {"prlf_fast"}
    names = [n for _, n in recorder.ranges]
    assert names[:7] == ["data", "encoder/text", "encoder/audio", "encoder/vision", "amre", "proginteract", "head"]


class PushPopNvtx:
    """An ``nvtx`` whose annotate pushes on enter and pops on exit, as the real one does."""

    def __init__(self):
        self.events = []

    @contextlib.contextmanager
    def annotate(self, name, domain):
        self.events.append(("push", domain, name))
        try:
            yield
        finally:
            self.events.append(("pop", domain, name))


def test_without_nvtx_ranges_run_the_body_and_propagate_errors(monkeypatch):
    monkeypatch.setattr(profiling, "_nvtx", None)
    assert not profiling.nvtx_available()
    ran = []
    with profiling.nvtx_range("anything"):
        ran.append(1)
    assert ran == [1]
    with pytest.raises(ZeroDivisionError):
        with profiling.nvtx_range("anything"):
            1 / 0
    # The no-op costs no allocation: every range is the same null context.
    assert profiling.nvtx_range("a") is profiling.nvtx_range("b")


def test_with_nvtx_a_range_pushes_and_pops_around_the_body_even_on_error(monkeypatch):
    fake = PushPopNvtx()
    monkeypatch.setattr(profiling, "_nvtx", fake)
    assert profiling.nvtx_available()
    with profiling.nvtx_range("outer"):
        fake.events.append("body")
        with profiling.nvtx_range("inner"):
            pass
    assert fake.events == [("push", "prlf_fast", "outer"), "body", ("push", "prlf_fast", "inner"),
                           ("pop", "prlf_fast", "inner"), ("pop", "prlf_fast", "outer")]
    fake.events.clear()
    with pytest.raises(KeyError):
        with profiling.nvtx_range("failing"):
            raise KeyError("x")
    assert fake.events == [("push", "prlf_fast", "failing"), ("pop", "prlf_fast", "failing")]


def test_with_nvtx_ranges_are_no_ops_while_torch_compile_traces(monkeypatch):
    fake = PushPopNvtx()
    monkeypatch.setattr(profiling, "_nvtx", fake)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    with profiling.nvtx_range("traced"):
        pass
    assert fake.events == []
