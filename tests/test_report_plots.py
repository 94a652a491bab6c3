"""report.md's per-dataset note and the run's plots: units on every y axis, a grid that fits a
Markdown viewer, a dominant-modality legend that covers no band, a training plot with every loss
and the selected epoch."""
import matplotlib.image
import numpy as np
import pytest

from prlf_fast.eval.robustness import summarize_inter, summarize_intra
from prlf_fast.metrics import mmsa_metrics
from prlf_fast.report import plots
from prlf_fast.report.run import columns, write_report

MODALITIES = ("text", "audio", "vision")
RATES = [0.0, 0.3, 0.6, 0.9]


def fake_results(dataset, seeds=(0, 1), n=60):
    """results.json's layout with metrics of noisy predictions that worsen with the rate."""
    rng = np.random.default_rng(0)
    span = 1.0 if dataset == "sims" else 3.0
    label = np.round(rng.uniform(-span, span, n) * 3) / 3

    def metrics(noise):
        return mmsa_metrics(label + rng.normal(0, noise, n), label, dataset)

    def share():
        p = rng.dirichlet(np.ones(3))
        return dict(zip(MODALITIES, p.tolist()))

    intra = [{"rate": r, "seed": s, "metrics": metrics(0.3 + r), "dominant_share": share()}
             for s in seeds for r in RATES]
    configs = [("text",), ("audio",), ("vision",), ("text", "audio"), ("text", "vision"), ("audio", "vision"), ()]
    inter = [{"config": "-".join(c) or "complete", "dropped": list(c),
              "available": [m for m in MODALITIES if m not in c], "metrics": metrics(0.3 + 0.3 * len(c)),
              "mean_residual": float(rng.normal()), "dominant_share": share()} for c in configs]
    return {"dataset": dataset, "checkpoint": {"file": "best.safetensors", "epoch": 2},
            "intra": {"records": intra, **summarize_intra(intra)},
            "inter": {"records": inter, **summarize_inter(inter)}}


HISTORY = [{"epoch": e, "train": {"total": 1.5 - 0.1 * e, "task": 1.2 - 0.1 * e, "rec": 1.0, "align": 0.8 / e},
            "valid": {"MAE": m, "Has0_acc_2": 0.7}, "select": {"metric": "MAE", "rate": 0.5, "score": m}}
           for e, m in ((1, 1.1), (2, 0.9), (3, 1.0))]


@pytest.mark.parametrize("dataset", ["mosi", "sims"])
def test_report_files_fit_a_markdown_viewer(tmp_path, dataset):
    results = fake_results(dataset)
    paths = write_report(str(tmp_path), results, {"dataset": dataset}, HISTORY, "MAE")
    report = (tmp_path / "report.md").read_text()
    for path in paths[1:]:
        height, width = matplotlib.image.imread(path).shape[:2]
        assert 300 <= width <= plots.MAX_WIDTH_PX and 250 <= height <= 700, (path, width, height)
        assert path.replace(str(tmp_path) + "/", "") in report
    note = report.split("## Intra")[0]
    if dataset == "sims":
        assert "Has0" not in note and "MOSI" not in note and "Acc-3" in note
    else:
        assert "Has0/Non0" in note and "Non0: samples labelled 0 left out" in note


@pytest.mark.parametrize("dataset", ["mosei", "sims"])
def test_every_metric_axis_names_its_unit(dataset):
    results = fake_results(dataset)
    cols = columns(dataset)
    for fig, panels in ((plots.intra_figure(results, dataset, cols), cols),
                        (plots.inter_figure(results, dataset, cols),
                         [c for c in cols if c[0] in ("Acc-2", "F1", "MAE", "Corr")])):
        axes = [ax for ax in fig.axes if ax.get_visible()]
        assert len(axes) == len(panels)
        rows = {round(ax.get_position().y0, 3) for ax in axes}
        assert len(rows) == 2, "a grid of two rows, not one wide row"
        for ax, (title, _, pct) in zip(axes, panels):
            label = ax.get_ylabel()
            assert ax.get_title() == title and label
            assert label.endswith("(%)") == pct, label
            if title == "MAE":
                assert ("[−1, 1]" if dataset == "sims" else "[−3, 3]") in label
        plots.plt.close(fig)


def test_dominant_legend_is_outside_the_bands():
    fig = plots.dominant_figure(fake_results("mosi"))
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert legend.get_window_extent().x0 >= ax.get_window_extent().x1
    assert [t.get_text() for t in legend.get_texts()] == ["vision", "audio", "text"]  # top band first
    assert ax.get_ylabel() == "test samples (%)"
    plots.plt.close(fig)


def test_training_plot_draws_every_loss_and_marks_the_selected_epoch():
    fig = plots.training_figure(HISTORY, "MAE", selected_epoch=2)
    main, aux, val = fig.axes
    labels = {line.get_label(): line for ax in (main, aux) for line in ax.get_lines()}
    for name, key in (("total", "total"), ("task (|ŷ − y|)", "task"), ("recognition (CE)", "rec"),
                      ("alignment (1 − cos)", "align")):
        assert list(labels[name].get_ydata()) == [h["train"][key] for h in HISTORY]
    star = next(line for line in val.get_lines() if line.get_label().startswith("selected"))
    assert star.get_label() == "selected: epoch 2"
    assert (list(star.get_xdata()), list(star.get_ydata())) == ([2], [0.9])
    for ax in (main, aux, val):  # the dotted line at the selected epoch
        assert any(list(line.get_xdata()) == [2, 2] for line in ax.get_lines())
    assert val.get_title() == "validation MAE at r = 0.5"
    plots.plt.close(fig)


def test_training_plot_of_an_accuracy_metric_is_in_percent():
    fig = plots.training_figure(HISTORY, "Has0_acc_2", selected_epoch=None)
    val = fig.axes[2]
    assert val.get_ylabel() == "Has0_acc_2 (%)"
    assert list(val.get_lines()[0].get_ydata()) == [70.0, 70.0, 70.0]
    plots.plt.close(fig)


def test_dominant_figure_with_one_rate_warns_nothing(recwarn):
    """A run evaluated at one missing rate (``--rates 0.5``) draws one stacked bar, no warning."""
    results = {"intra": {"per_rate": [{"rate": 0.5, "dominant_share": {"text": 0.5, "audio": 0.3, "vision": 0.2}}]}}
    fig = plots.dominant_figure(results)
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == pytest.approx([50.0, 30.0, 20.0])
