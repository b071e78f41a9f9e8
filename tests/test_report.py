"""Report figures and Markdown: the files exist, are PNGs, and the report links them."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from boneage.evaluation import report
from boneage.evaluation.metrics import summary

PNG = b"\x89PNG\r\n\x1a\n"


def is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG


def fake_history(epochs: int = 6) -> dict[str, list[float]]:
    e = np.arange(1, epochs + 1, dtype=float)
    return {
        "loss": list(600 / e),
        "val_loss": list(650 / e),
        "mae": list(40 / np.sqrt(e)),
        "val_mae": list(42 / np.sqrt(e)),
        "rmse": list(50 / np.sqrt(e)),
        "val_rmse": list(52 / np.sqrt(e)),
        "r2": list(1 - 1.5 / e),  # negative first epoch: linear axis
        "val_r2": list(1 - 1.6 / e),
    }


@pytest.fixture(scope="module")
def predictions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    t = rng.uniform(1, 228, 150).round()
    return t, t + rng.normal(1.0, 8.0, 150), rng.random(150) < 0.5


def test_load_history_from_csv(tmp_path) -> None:
    hist = fake_history()
    path = tmp_path / "log.csv"
    with open(path, "w", newline="") as f:  # as keras.callbacks.CSVLogger writes it
        writer = csv.writer(f)
        writer.writerow(["epoch", *hist])
        for i in range(6):
            writer.writerow([i, *(v[i] for v in hist.values())])
    loaded = report.load_history(path)
    assert loaded["epoch"] == [0, 1, 2, 3, 4, 5]
    np.testing.assert_allclose(loaded["val_mae"], hist["val_mae"])
    assert is_png(report.plot_history(path, tmp_path / "from_csv"))


def test_plot_history(tmp_path) -> None:
    out = report.plot_history(fake_history(), tmp_path, title="DenseNet121")
    assert out == tmp_path / "history.png" and is_png(out)
    partial = {"loss": [3.0, 2.0], "mae": [2.0, 1.0]}  # no validation, no R^2/RMSE
    assert is_png(report.plot_history(partial, tmp_path, filename="partial.png"))


def test_plot_schedule(tmp_path) -> None:
    from boneage.training.schedules import WarmupCosine

    single = report.plot_schedule(
        WarmupCosine(5e-3, 600), 600, tmp_path / "lr.png", steps_per_epoch=10
    )
    assert is_png(single)
    both = {"DenseNet121": WarmupCosine(5e-3, 600), "ResNet34+CBAM": WarmupCosine(1e-3, 400)}
    assert is_png(report.plot_schedule(both, 600, tmp_path / "lr2.png"))
    plain = report.plot_schedule(lambda s: 1e-3 * math.exp(-s / 50), 100, tmp_path / "lr3.png")
    assert is_png(plain)


def test_plot_predictions(tmp_path, predictions) -> None:
    t, p, male = predictions
    paths = report.plot_predictions(t, p, tmp_path, male=male)
    assert set(paths) == {"scatter", "bland_altman", "error_hist"}
    assert all(is_png(path) for path in paths.values())
    assert all(is_png(q) for q in report.plot_predictions(t, p, tmp_path, prefix="x_").values())
    with pytest.raises(ValueError):
        report.plot_predictions(t, p[:-1], tmp_path)


def test_write_report_links_figures(tmp_path, predictions) -> None:
    t, p, male = predictions
    s = summary(t, p, male, n_boot=100, train_ages=t)
    figs = tmp_path / "figs"
    plots = report.plot_predictions(t, p, figs, male=male)
    plots["training curves"] = report.plot_history(fake_history(), figs)
    md_path = report.write_report(s, plots, tmp_path, title="Synthetic run")
    assert md_path == tmp_path / "report.md"
    md = md_path.read_text()
    assert md.startswith("# Synthetic run")
    for path in plots.values():
        rel = path.relative_to(tmp_path).as_posix()
        assert f"]({rel})" in md
        assert (tmp_path / rel).is_file()
    low, high = s["ci"]["mae"]
    assert f"{s['mae']:.2f}" in md and f"{low:.2f} to {high:.2f}" in md
    assert "## By sex" in md and "## By age band" in md and "15-19 y" in md
    assert f"{s['baseline_mae']:.2f}" in md
    # A plain list of plots works too, captioned by file name.
    assert "### scatter" in report.write_report(s, [plots["scatter"]], tmp_path).read_text()


def test_compare_table(predictions) -> None:
    t, p, male = predictions
    rng = np.random.default_rng(3)
    dense = summary(t, p, male, n_boot=50)
    resnet = summary(t, p + rng.normal(0, 5, t.size), male, n_boot=50)
    table = report.compare_table(
        {"DenseNet121": dense, "ResNet34 + CBAM": resnet},
        params={"DenseNet121": 7_075_241, "ResNet34 + CBAM": 22_590_634},
    )
    lines = table.strip().splitlines()
    assert lines[0] == "| model | MAE (months) | RMSE (months) | R^2 | params |"
    assert len(lines) == 4
    assert "7,075,241" in lines[2] and "22,590,634" in lines[3]
    assert f"{dense['mae']:.2f} (" in lines[2]
    # Flat metric dicts (no CIs) with a loss column, like the paper's Table IV.
    flat = report.compare_table({"A": {"loss": 60.07, "mae": 8.18, "rmse": 11.49, "r2": 0.93}})
    assert "| model | loss | MAE (months) | RMSE (months) | R^2 |" in flat
    assert "| A | 60.07 | 8.18 | 11.49 | 0.930 |" in flat
