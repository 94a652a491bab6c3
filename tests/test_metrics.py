"""mmsa_metrics on hand-worked cases (docs/design.md §6)."""
import math

import numpy as np
import pytest
import torch

from prlf_fast.metrics import metric_names, mmsa_metrics, sims_class, weighted_f1

MOSI_KEYS = {"Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score", "Mult_acc_5", "Mult_acc_7",
             "MAE", "Corr"}
SIMS_KEYS = {"Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr"}


def test_zero_labels_and_zero_predictions():
    # y = 0 is positive for Has0 and dropped for Non0; ŷ = 0 is positive for Has0, negative for Non0
    r = mmsa_metrics(np.array([-0.5, 0.5, 0.0, 1.0]), np.array([0.0, 1.0, -1.0, 2.0]), "mosi")
    assert set(r) == MOSI_KEYS
    assert r["Has0_acc_2"] == 0.5          # [T,T,F,T] vs [F,T,T,T]
    assert r["Has0_F1_score"] == pytest.approx(3 / 4 * 2 / 3)
    assert r["Non0_acc_2"] == 1.0          # [T,F,T] vs [T,F,T]
    assert r["Non0_F1_score"] == 1.0


def test_round_half_to_even_and_clipping():
    pred = np.array([0.5, -0.5, 1.5, 2.5, -2.5, 3.7, 2.4])
    label = np.array([0.0, 0.0, 2.0, 2.0, -2.0, 3.0, 3.0])
    r = mmsa_metrics(pred, label, "mosei")
    assert r["Mult_acc_7"] == pytest.approx(6 / 7)   # 2.4 → 2 ≠ 3; ±0.5 → 0, 2.5 → 2 (half to even)
    assert r["Mult_acc_5"] == 1.0                    # everything above 2 clips to 2
    assert r["MAE"] == pytest.approx(np.mean(np.abs(pred - label)))


def test_f1_argument_order_with_one_class_predictions():
    r = mmsa_metrics(torch.ones(4), torch.tensor([1.0, 1.0, 1.0, -1.0]), "mosi")
    assert r["Has0_acc_2"] == 0.75
    assert r["Has0_F1_score"] == pytest.approx(9 / 14)  # f1(y_true, y_pred); swapped would be 6/7
    assert r["Non0_F1_score"] == pytest.approx(9 / 14)
    assert weighted_f1(np.array([1, 1, 1, 1]), np.array([1, 1, 1, 0])) == pytest.approx(6 / 7)


def test_mae_corr_and_undefined_cases():
    r = mmsa_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 5.0], "mosi")
    assert r["MAE"] == pytest.approx(2 / 3)
    assert r["Corr"] == pytest.approx(12 / math.sqrt(156))
    r = mmsa_metrics([0.3, 0.3], [0.0, 0.0], "mosi")
    assert math.isnan(r["Corr"]) and math.isnan(r["Non0_acc_2"]) and math.isnan(r["Non0_F1_score"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sims_bin_edges(dtype):
    x = np.array([-1.0, -0.7, -0.69, -0.1, -0.09, 0.0, 0.01, 0.1, 0.11, 0.7, 0.71, 1.0], dtype=dtype)
    assert sims_class(x, 2).tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert sims_class(x, 3).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert sims_class(x, 5).tolist() == [0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4]


def test_sims_hand_case():
    pred = np.array([0.15, -0.1, 2.0, -0.5], dtype=np.float32)
    label = np.array([0.1, -0.1, 0.6, -1.0], dtype=np.float32)
    r = mmsa_metrics(pred, label, "sims")
    assert set(r) == SIMS_KEYS
    assert r["Mult_acc_2"] == 1.0
    assert r["Mult_acc_3"] == 0.75       # 0.1 is in (−0.1, 0.1], 0.15 is not
    assert r["Mult_acc_5"] == 0.25       # classes [3, 1, 4, 1] vs [2, 1, 3, 0]
    assert r["F1_score"] == 1.0
    assert r["MAE"] == pytest.approx(0.95 / 4, abs=1e-6)  # prediction 2.0 clipped to 1 first
    one_class = mmsa_metrics(np.full(4, -0.5), np.array([-0.5, -0.2, 0.0, 0.4]), "sims")
    assert one_class["F1_score"] == pytest.approx(9 / 14)


def test_torch_and_numpy_agree_and_bad_input():
    g = torch.Generator().manual_seed(0)
    pred, label = torch.randn(50, 1, generator=g, requires_grad=True), torch.randn(50, generator=g)
    assert mmsa_metrics(pred, label, "mosi") == mmsa_metrics(pred.detach().numpy(), label.numpy(), "MOSI")
    with pytest.raises(ValueError, match="unknown dataset"):
        mmsa_metrics(label, label, "iemocap")
    with pytest.raises(ValueError, match="same"):
        mmsa_metrics(label[:3], label, "mosi")
    with pytest.raises(ValueError, match="finite"):
        mmsa_metrics(torch.tensor([float("nan")]), torch.tensor([0.0]), "sims")


@pytest.mark.parametrize("dataset", ["mosi", "mosei", "sims"])
def test_metric_names_are_the_keys(dataset):
    pred, label = np.array([0.3, -0.2, 0.9, -0.7]), np.array([0.5, -0.4, 0.1, -0.9])
    assert tuple(mmsa_metrics(pred, label, dataset)) == metric_names(dataset)


# -- Corr on constant inputs: NaN exactly, whatever the rounding of the centred sums -------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pred, label, dataset", [
    (np.full(3, 0.1), np.array([-1.0, 0.0, 1.0]), "mosi"),         # gave 0.0
    (np.full(10, 0.3), np.linspace(-1, 1, 10), "sims"),            # gave -3.5e-17
    (np.linspace(-1, 1, 10), np.full(10, 1 / 3), "sims"),          # gave +3.5e-17
    (np.linspace(-2, 2, 7), np.full(7, 1 / 3), "mosei"),
    (np.array([2.0, 3.0, 5.0]), np.array([0.2, -0.4, 0.6]), "sims"),  # constant once clipped to 1
], ids=["const-pred-mosi", "const-pred-sims", "const-label-sims", "const-label-mosei", "clipped-sims"])
def test_corr_of_a_constant_input_is_nan(pred, label, dataset, dtype):
    r = mmsa_metrics(pred.astype(dtype), label.astype(dtype), dataset)
    assert math.isnan(r["Corr"]), r["Corr"]
    swapped = mmsa_metrics(label.astype(dtype), pred.astype(dtype), dataset)
    assert math.isnan(swapped["Corr"]), swapped["Corr"]


def test_corr_at_extreme_scales_is_finite():
    assert mmsa_metrics([1e-200, 2e-200, 4e-200], [1.0, 2.0, 4.0], "mosi")["Corr"] == pytest.approx(1.0)
    assert mmsa_metrics([1e200, -1e200, 3e200], [1.0, -1.0, 3.0], "mosi")["Corr"] == pytest.approx(1.0)


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402


@st.composite
def _pairs(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n = draw(st.integers(2, 12))
    width = 32 if dtype is np.float32 else 64
    values = st.floats(allow_nan=False, allow_infinity=False, width=width)
    # Constant vectors (one repeated value) are drawn as often as free ones.
    def vector():
        return st.one_of(arrays(dtype, n, elements=values),
                         values.map(lambda v: np.full(n, v, dtype=dtype)))
    return draw(vector()), draw(vector()), draw(st.sampled_from(["mosi", "mosei", "sims"]))


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # MAE of values near 1e308
@settings(max_examples=200, deadline=None)
@given(_pairs())
def test_corr_is_nan_exactly_when_an_input_is_constant(pair):
    pred, label, dataset = pair
    if dataset == "sims":
        pred, label = np.clip(pred, -1, 1), np.clip(label, -1, 1)
    constant = np.all(pred == pred[0]) or np.all(label == label[0])
    corr = mmsa_metrics(*pair)["Corr"]
    if constant:
        assert math.isnan(corr)
    else:
        assert -1 - 1e-9 <= corr <= 1 + 1e-9
