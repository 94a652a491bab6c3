"""MMSA/LNLN regression metrics (docs/design.md §6), as fractions, for numpy or torch inputs.

Class boundaries are compared in each input's own float precision (a float32 label of 0.1 is in
SIMS's (−0.1, 0.1] bin, as in MMSA). Weighted F1 is f1(y_true, y_pred): class weights are the
true supports. A metric that is undefined on the inputs (Corr when the predictions or the labels are
constant, decided exactly on the values; Non0 metrics when every label is 0) is NaN.
"""
from __future__ import annotations

import numpy as np

DATASETS = ("mosi", "mosei", "sims")
SIMS_EDGES = {2: (0.0,), 3: (-0.1, 0.1), 5: (-0.7, -0.1, 0.1, 0.7)}  # class = #edges < value


def _as_array(x) -> np.ndarray:
    """A flat float array; torch tensors leave the graph and the device, halves become float32."""
    if hasattr(x, "detach"):  # torch.Tensor
        x = x.detach().cpu()
        x = (x.float() if x.dtype.is_floating_point and x.dtype.itemsize < 4 else x).numpy()
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    elif arr.dtype.itemsize < 4:
        arr = arr.astype(np.float32)
    return arr.reshape(-1)


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Σ_c support_c / N · F1_c over the classes present in ``y_true``."""
    total = 0.0
    for c in np.unique(y_true):
        true_c, pred_c = y_true == c, y_pred == c
        tp = np.sum(true_c & pred_c)
        f1 = 2.0 * tp / (np.sum(true_c) + np.sum(pred_c))
        total += np.sum(true_c) / y_true.size * f1
    return float(total)


def _accuracy(a, b) -> float:
    return float(np.mean(a == b))


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation in float64, or None when a sum of squares under- or overflows."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        a = a.astype(np.float64) - a.mean(dtype=np.float64)
        b = b.astype(np.float64) - b.mean(dtype=np.float64)
        saa, sbb = np.sum(a * a), np.sum(b * b)
        if not (np.isfinite(saa * sbb) and saa * sbb > 0):
            return None
        return float(np.sum(a * b) / np.sqrt(saa * sbb))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN exactly when ``a`` or ``b`` is constant (decided on the exact
    values, not after rounding the centred sums)."""
    if a.min() == a.max() or b.min() == b.max():
        return float("nan")
    r = _pearson(a, b)
    if r is None:  # an extreme scale: the same on inputs scaled to a maximum magnitude of 1
        r = _pearson(a / np.max(np.abs(a)), b / np.max(np.abs(b)))
    return r


def _mae(a, b) -> float:
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def _mosi(pred, label) -> dict:
    has0_true, has0_pred = label >= 0, pred >= 0
    nonzero = label != 0
    if nonzero.any():
        non0_true, non0_pred = label[nonzero] > 0, pred[nonzero] > 0
        non0_acc, non0_f1 = _accuracy(non0_pred, non0_true), weighted_f1(non0_true, non0_pred)
    else:
        non0_acc = non0_f1 = float("nan")

    def mult(bound):
        return _accuracy(np.round(np.clip(pred, -bound, bound)), np.round(np.clip(label, -bound, bound)))

    return {
        "Has0_acc_2": _accuracy(has0_pred, has0_true),
        "Has0_F1_score": weighted_f1(has0_true, has0_pred),
        "Non0_acc_2": non0_acc,
        "Non0_F1_score": non0_f1,
        "Mult_acc_5": mult(2.0),
        "Mult_acc_7": mult(3.0),
        "MAE": _mae(pred, label),
        "Corr": _corr(pred, label),
    }


def sims_class(x: np.ndarray, n_classes: int) -> np.ndarray:
    """SIMS bin of each value (already clipped to [−1, 1]): the number of bin edges below it."""
    return np.searchsorted(np.asarray(SIMS_EDGES[n_classes], dtype=x.dtype), x, side="left")


def _sims(pred, label) -> dict:
    pred, label = np.clip(pred, -1.0, 1.0), np.clip(label, -1.0, 1.0)
    acc = {k: _accuracy(sims_class(pred, k), sims_class(label, k)) for k in SIMS_EDGES}
    return {
        "Mult_acc_2": acc[2],
        "Mult_acc_3": acc[3],
        "Mult_acc_5": acc[5],
        "F1_score": weighted_f1(sims_class(label, 2), sims_class(pred, 2)),
        "MAE": _mae(pred, label),
        "Corr": _corr(pred, label),
    }


METRIC_NAMES = {
    "mosi": ("Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score", "Mult_acc_5", "Mult_acc_7",
             "MAE", "Corr"),
    "sims": ("Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr"),
}


def metric_names(dataset: str) -> tuple:
    """Keys of ``mmsa_metrics(..., dataset)``."""
    return METRIC_NAMES["sims" if dataset.lower() == "sims" else "mosi"]


def mmsa_metrics(pred, label, dataset: str) -> dict:
    """MMSA's metrics of predictions against labels for ``dataset`` ("mosi", "mosei" or "sims")."""
    dataset = dataset.lower()
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    pred, label = _as_array(pred), _as_array(label)
    if pred.shape != label.shape or pred.size == 0:
        raise ValueError(f"pred has {pred.size} values and label {label.size}; expected the same, ≥ 1")
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(label))):
        raise ValueError("pred and label must be finite")
    return _sims(pred, label) if dataset == "sims" else _mosi(pred, label)


def acc2_key(dataset: str) -> str:
    """The binary accuracy the reports show: MMSA's ``Mult_acc_2`` on SIMS, ``Has0_acc_2`` else."""
    return "Mult_acc_2" if dataset == "sims" else "Has0_acc_2"
