"""Figures and a Markdown report of a training run and its evaluation.

The figures follow the paper: training curves of loss, MAE, R^2 and RMSE in log scale
(Figures 7 and 8), the learning-rate schedule (Figure 9), and for the test set a scatter of
prediction against truth, a Bland-Altman plot and an error histogram. :func:`write_report`
puts them in ``report.md`` with the metrics and their bootstrap intervals from
:func:`boneage.evaluation.metrics.summary`; :func:`compare_table` sets models side by side like the
paper's Table IV.

Matplotlib is driven through :class:`~matplotlib.figure.Figure` and the Agg canvas
directly, never through ``pyplot``: nothing opens a window or touches global backend state,
so this runs on headless machines and inside other programs.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "compare_table",
    "load_history",
    "plot_history",
    "plot_predictions",
    "plot_schedule",
    "write_report",
]

StrPath = str | os.PathLike[str]
History = Mapping[str, Sequence[float]]

# Panels of Figures 7-8, in the paper's order, with the names Keras may log them under.
_PANELS = (
    ("Loss", ("loss",)),
    ("MAE (months)", ("mae", "mean_absolute_error")),
    ("R$^2$", ("r2", "r2_score", "r_squared")),
    ("RMSE (months)", ("rmse", "root_mean_squared_error")),
)
_DPI = 110


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    return path


def load_history(history: StrPath | History | Any) -> dict[str, list[float]]:
    """Training history as ``{name: values per epoch}``.

    Accepts the CSV written by ``keras.callbacks.CSVLogger``, a dict like
    ``History.history``, or a ``keras.callbacks.History`` itself. Non-numeric CSV cells
    become ``nan``.
    """
    if hasattr(history, "history") and isinstance(history.history, Mapping):
        history = history.history
    if isinstance(history, Mapping):
        return {str(k): [float(v) for v in vals] for k, vals in history.items()}
    with open(history, newline="") as f:
        rows = list(csv.DictReader(f))
    out: dict[str, list[float]] = {}
    for row in rows:
        for key, cell in row.items():
            try:
                value = float(cell)
            except (TypeError, ValueError):
                value = math.nan
            out.setdefault(str(key), []).append(value)
    return out


def _first(hist: Mapping[str, list[float]], names: Sequence[str], prefix: str) -> list[float]:
    for name in names:
        if prefix + name in hist:
            return hist[prefix + name]
    return []


def plot_history(
    history: StrPath | History | Any,
    out_dir: StrPath,
    title: str | None = None,
    filename: str = "history.png",
) -> Path:
    """Figures 7-8: loss, MAE, R^2 and RMSE per epoch, training and validation, log scale.

    A panel falls back to a linear axis when its values are not all positive (R^2 is
    negative early in training), and says so when the metric was not logged at all.
    Returns the path of the PNG.
    """
    hist = load_history(history)
    fig = _new_figure(10.0, 7.0)
    axes = fig.subplots(2, 2)
    for ax, (label, names) in zip(axes.flat, _PANELS, strict=True):
        logged = [("train", _first(hist, names, "")), ("validation", _first(hist, names, "val_"))]
        curves = [(name, np.asarray(v, dtype=np.float64)) for name, v in logged if len(v)]
        if not curves:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
        for name, values in curves:
            ax.plot(np.arange(1, values.size + 1), values, marker=".", label=name)
        finite = np.concatenate([v[np.isfinite(v)] for _, v in curves]) if curves else np.empty(0)
        if len(finite) and np.all(finite > 0.0):
            ax.set_yscale("log")
        ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.grid(True, which="both", alpha=0.3)
        if curves:
            ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, Path(out_dir) / filename)


Schedule = Any  # an object with .lr_at(steps) (WarmupCosine), or a callable step -> rate


def _schedule_values(schedule: Schedule, steps: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    if hasattr(schedule, "lr_at"):
        return np.asarray(schedule.lr_at(steps), dtype=np.float64)
    if callable(schedule):
        fn: Callable[[int], Any] = schedule
        return np.array([float(fn(int(s))) for s in steps], dtype=np.float64)
    raise TypeError(f"cannot evaluate a schedule of type {type(schedule).__name__}")


def plot_schedule(
    schedule: Schedule | Mapping[str, Schedule],
    total_steps: int,
    out_path: StrPath,
    steps_per_epoch: int | None = None,
) -> Path:
    """Figure 9: learning rate against step; a mapping of schedules gives one panel each.

    Takes a :class:`boneage.training.schedules.WarmupCosine` (evaluated in NumPy) or any callable
    ``step -> rate`` (a Keras schedule is called per step). The end of the warm-up is
    marked when the schedule says where it is (``warmup_steps``).
    """
    panels = dict(schedule) if isinstance(schedule, Mapping) else {"": schedule}
    steps = np.arange(int(total_steps) + 1)
    fig = _new_figure(5.0 * len(panels), 3.6)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (name, sched) in zip(axes, panels.items(), strict=True):
        x = steps / steps_per_epoch if steps_per_epoch else steps
        ax.plot(x, _schedule_values(sched, steps), color="tab:blue")
        warm = getattr(sched, "warmup_steps", None)
        if warm:
            ax.axvline(
                warm / steps_per_epoch if steps_per_epoch else warm,
                color="tab:gray",
                linestyle="--",
                label="end of warm-up",
            )
            ax.legend()
        ax.set_xlabel("epoch" if steps_per_epoch else "step")
        ax.set_ylabel("learning rate")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.grid(True, alpha=0.3)
        if name:
            ax.set_title(name)
    return _save(fig, Path(out_path))


def plot_predictions(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    out_dir: StrPath,
    male: npt.ArrayLike | None = None,
    prefix: str = "",
) -> dict[str, Path]:
    """Test-set figures: ``scatter`` (prediction vs truth, identity line), ``bland_altman``
    (difference vs mean, with bias and 95 % limits of agreement) and ``error_hist``.

    Points are coloured by sex when ``male`` is given. Returns ``{name: path}``.
    """
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    out = Path(out_dir)
    sex = None if male is None else np.asarray(male).reshape(-1).astype(bool)
    groups = (
        [("all", np.ones(t.size, dtype=bool))] if sex is None else [("female", ~sex), ("male", sex)]
    )
    paths: dict[str, Path] = {}

    fig = _new_figure(5.5, 5.0)
    ax = fig.subplots()
    for name, mask in groups:
        ax.scatter(t[mask], p[mask], s=10, alpha=0.6, label=name)
    lo = float(min(t.min(initial=0.0), p.min(initial=0.0)))
    hi = float(max(t.max(initial=1.0), p.max(initial=1.0)))
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, label="identity")
    ax.set_xlabel("true bone age (months)")
    ax.set_ylabel("predicted bone age (months)")
    ax.set_aspect("equal", adjustable="box")
    ax.grid(True, alpha=0.3)
    ax.legend()
    paths["scatter"] = _save(fig, out / f"{prefix}scatter.png")

    diff, mean = p - t, 0.5 * (p + t)
    bias = float(diff.mean()) if diff.size else 0.0
    sd = float(diff.std(ddof=1)) if diff.size > 1 else 0.0
    fig = _new_figure(6.0, 4.5)
    ax = fig.subplots()
    for name, mask in groups:
        ax.scatter(mean[mask], diff[mask], s=10, alpha=0.6, label=name)
    ax.axhline(bias, color="black", label=f"bias {bias:+.2f}")
    for sign in (-1.0, 1.0):
        ax.axhline(bias + sign * 1.96 * sd, color="gray", linestyle="--")
    ax.set_xlabel("mean of prediction and truth (months)")
    ax.set_ylabel("prediction - truth (months)")
    ax.set_title(f"Bland-Altman (limits of agreement +/-{1.96 * sd:.1f})")
    ax.grid(True, alpha=0.3)
    ax.legend()
    paths["bland_altman"] = _save(fig, out / f"{prefix}bland_altman.png")

    fig = _new_figure(6.0, 4.0)
    ax = fig.subplots()
    ax.hist(diff, bins=min(40, max(5, diff.size // 5)), color="tab:blue", alpha=0.8)
    ax.axvline(0.0, color="black", linewidth=1)
    ax.set_xlabel("prediction - truth (months)")
    ax.set_ylabel("cases")
    ax.grid(True, alpha=0.3)
    paths["error_hist"] = _save(fig, out / f"{prefix}error_hist.png")
    return paths


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{float(value):.{digits}f}"


def _with_ci(value: Any, ci: Any, digits: int = 2) -> str:
    text = _fmt(value, digits)
    if ci and len(ci) == 2 and all(c is not None for c in ci):
        text += f" ({_fmt(ci[0], digits)} to {_fmt(ci[1], digits)})"
    return text


def _overall(summary: Mapping[str, Any]) -> Mapping[str, Any]:
    """The overall metrics: a :func:`~boneage.evaluation.metrics.summary` or
    :func:`regression_metrics` dict holds them at the top; a nested ``overall`` mapping is read
    too."""
    overall = summary.get("overall")
    return overall if isinstance(overall, Mapping) else summary


def _group_table(groups: Mapping[str, Mapping[str, Any]], what: str) -> list[str]:
    lines = [f"| {what} | n | MAE (95% CI) | RMSE | R^2 | bias |", "|---|---:|---|---:|---:|---:|"]
    for label, m in groups.items():
        lines.append(
            f"| {label} | {_fmt(m.get('n'))} | {_with_ci(m.get('mae'), m.get('mae_ci'))} | "
            f"{_fmt(m.get('rmse'))} | {_fmt(m.get('r2'), 3)} | {_fmt(m.get('bias'))} |"
        )
    return lines


def write_report(
    summary: Mapping[str, Any],
    plots: Mapping[str, StrPath] | Sequence[StrPath],
    out_dir: StrPath,
    title: str = "Bone age evaluation",
) -> Path:
    """Writes ``out_dir/report.md``: metrics with their intervals, subgroup tables, figures.

    ``summary`` is what :func:`boneage.evaluation.metrics.summary` returns; ``plots`` are PNGs (a
    mapping gives them captions), linked by paths relative to ``out_dir`` so the folder
    can be moved as a whole. Returns the report's path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    overall = _overall(summary)
    ci = summary.get("ci", {}) or {}
    alpha = ci.get("alpha", 0.05)
    level = f"{100 * (1 - alpha):.0f}%"
    lines = [f"# {title}", ""]
    lines += [f"Test cases: {_fmt(overall.get('n'))}."]
    if ci.get("n_boot"):
        lines += [f"Intervals: {level} percentile bootstrap over {ci['n_boot']} resamples."]
    lines += ["", "## Metrics", "", f"| metric | value | {level} CI |", "|---|---:|---|"]
    names = {
        "mae": "MAE (months)",
        "rmse": "RMSE (months)",
        "r2": "R^2",
        "median_ae": "median absolute error",
        "p90_ae": "90th percentile abs. error",
        "bias": "bias (mean of prediction - truth)",
    }
    for key, label in names.items():
        if key in overall:
            digits = 3 if key == "r2" else 2
            bounds = ci.get(key)
            interval = f"{_fmt(bounds[0], digits)} to {_fmt(bounds[1], digits)}" if bounds else ""
            lines.append(f"| {label} | {_fmt(overall[key], digits)} | {interval} |")
    baseline = summary.get("baseline_mae")
    if baseline is not None:
        lines += ["", f"Baseline (always the training mean): MAE {_fmt(baseline)} months."]
    if summary.get("by_sex"):
        lines += ["", "## By sex", "", *_group_table(summary["by_sex"], "sex")]
    if summary.get("by_age_band"):
        lines += [
            "",
            "## By age band (true age)",
            "",
            *_group_table(summary["by_age_band"], "band"),
        ]
    items = plots.items() if isinstance(plots, Mapping) else ((None, p) for p in plots)
    figures = []
    for caption, path in items:
        rel = Path(os.path.relpath(Path(path).resolve(), out.resolve())).as_posix()
        name = caption or Path(path).stem
        figures += [f"### {name}", "", f"![{name}]({rel})", ""]
    if figures:
        lines += ["", "## Figures", "", *figures]
    report = out / "report.md"
    report.write_text("\n".join(lines).rstrip() + "\n")
    return report


def compare_table(
    summaries: Mapping[str, Mapping[str, Any]],
    params: Mapping[str, int] | None = None,
) -> str:
    """Markdown table of models side by side, like the paper's Table IV.

    Columns: model, loss (when any summary has one), MAE and RMSE with their intervals when
    known, R^2, and parameters (from ``params`` or a summary's ``params`` key) when given.
    """
    params = dict(params or {})
    rows = []
    for name, s in summaries.items():
        overall, ci = _overall(s), (s.get("ci") or {})
        rows.append(
            (
                name,
                s.get("loss", overall.get("loss")),
                overall,
                ci,
                params.get(name, s.get("params")),
            )
        )
    has_loss = any(r[1] is not None for r in rows)
    has_params = any(r[4] is not None for r in rows)
    head = [
        "model",
        *(["loss"] if has_loss else []),
        "MAE (months)",
        "RMSE (months)",
        "R^2",
        *(["params"] if has_params else []),
    ]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    for name, loss, overall, ci, n_params in rows:
        cells = [name]
        if has_loss:
            cells.append(_fmt(loss))
        cells += [
            _with_ci(overall.get("mae"), ci.get("mae")),
            _with_ci(overall.get("rmse"), ci.get("rmse")),
            _with_ci(overall.get("r2"), ci.get("r2"), 3),
        ]
        if has_params:
            cells.append(_fmt(int(n_params)) if n_params is not None else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
