"""Plots of a training run: loss, metric and learning-rate curves from Lightning's CSV logs, a
per-class AP bar chart and precision-recall curves from nuScenes-devkit-shaped evaluation JSON.

Inputs: ``<run>/**/metrics.csv`` (CSVLogger: ``epoch``, ``step`` and one column per logged
name, empty where a row does not log it); ``metrics_summary.json`` (``label_aps`` {class:
{"0.5": ap, "1.0": ..., "2.0": ..., "4.0": ...}}, ``mean_ap``, ``nd_score``,
``label_tp_errors``); ``metrics_details.json`` ("<class>:<distance>" -> {"recall": [...],
"precision": [...], ...}).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .colors import class_color
from .figures import pyplot, save_figure

INDEX_COLUMNS = ("epoch", "step")
TP_ERRORS = ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err")


@dataclass
class MetricSeries:
    """One logged name: ``values`` (K,) at ``steps`` (K,), in step order."""

    name: str
    steps: np.ndarray
    values: np.ndarray


# ------------------------------------------------------------------ reading
def find_metrics_csvs(run: str | os.PathLike) -> list[Path]:
    """The CSV logs of a run: ``run`` itself if it is a file, else every ``metrics.csv`` below it (sorted)."""
    run = Path(run)
    if run.is_file():
        return [run]
    if not run.is_dir():
        raise FileNotFoundError(f"run {run} not found")
    return sorted(run.rglob("metrics.csv"))


def read_metrics_csv(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> dict[str, MetricSeries]:
    """Every logged name of one or more CSVLogger files (several versions of a resumed run are
    merged), as series sorted by step. Raises ``ValueError`` for a file without a ``step``
    column or with a value that is not a number."""
    paths = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    collected: dict[str, list[tuple[float, float]]] = {}
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"metrics file {path} not found")
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "step" not in reader.fieldnames:
                raise ValueError(f"{path}: a CSVLogger metrics file needs a 'step' column, got {reader.fieldnames}")
            for line, row in enumerate(reader, start=2):
                step = _number(row["step"], path, line, "step")
                for name, text in row.items():
                    if name in INDEX_COLUMNS or name is None or text in (None, ""):
                        continue
                    collected.setdefault(name, []).append((step, _number(text, path, line, name)))
    series = {}
    for name, pairs in collected.items():
        pairs.sort(key=lambda pair: pair[0])
        array = np.array(pairs, dtype=np.float64)
        series[name] = MetricSeries(name, array[:, 0], array[:, 1])
    return series


def _number(text: str, path: Path, line: int, column: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{path}:{line}: column {column!r} holds {text!r}, expected a number") from None


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file, with errors naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error


# ------------------------------------------------------------------ curves
def group_series(series: Mapping[str, MetricSeries]) -> dict[str, list[MetricSeries]]:
    """Panels of a curves figure: 'loss' (the total losses), 'loss terms' (other names with
    'loss'), 'learning rate' (names starting 'lr'), 'metrics' (the rest); empty panels left out."""
    groups: dict[str, list[MetricSeries]] = {"loss": [], "loss terms": [], "metrics": [], "learning rate": []}
    for name in sorted(series):
        leaf = name.rsplit("/", 1)[-1]
        if leaf.startswith("lr") or "/lr" in name:
            groups["learning rate"].append(series[name])
        elif leaf in ("loss", "loss_step", "loss_epoch"):
            groups["loss"].append(series[name])
        elif "loss" in leaf:
            groups["loss terms"].append(series[name])
        else:
            groups["metrics"].append(series[name])
    return {key: value for key, value in groups.items() if value}


def plot_training_curves(run: str | os.PathLike | Sequence[str | os.PathLike], path: str | os.PathLike,
                         *, title: str | None = None) -> Path:
    """Curves of every logged name against the step, one panel per :func:`group_series` group,
    to a PNG at ``path``. ``run``: a run folder, a ``metrics.csv`` or a list of them."""
    files = find_metrics_csvs(run) if isinstance(run, (str, os.PathLike)) else [Path(p) for p in run]
    if not files:
        raise ValueError(f"{run}: no metrics.csv found (Lightning's CSVLogger writes <run>/**/metrics.csv)")
    groups = group_series(read_metrics_csv(files))
    if not groups:
        raise ValueError(f"{', '.join(map(str, files))}: no logged values besides epoch and step")
    plt = pyplot()
    columns = min(2, len(groups))
    rows = math.ceil(len(groups) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.0 * rows), dpi=100, squeeze=False)
    for ax, (group, members) in zip(axes.flat, groups.items()):
        for member in members:
            marker = "o" if len(member.steps) <= 30 else None
            ax.plot(member.steps, member.values, lw=1.2, marker=marker, ms=3, label=member.name)
        positive = all((m.values > 0).all() for m in members)
        if group in ("loss", "loss terms", "learning rate") and positive:
            ax.set_yscale("log")
        ax.set_title(group)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    fig.suptitle(title or f"training curves: {files[0].parent}")
    fig.tight_layout()
    return save_figure(fig, path)


# ------------------------------------------------------------------ evaluation
def _summary_aps(summary: Mapping[str, Any], where: str) -> dict[str, dict[str, float]]:
    if not isinstance(summary, Mapping) or not isinstance(summary.get("label_aps"), Mapping):
        raise ValueError(f"{where}: expected a metrics summary with 'label_aps' {{class: {{distance: ap}}}}")
    aps = {}
    for name, by_distance in summary["label_aps"].items():
        if not isinstance(by_distance, Mapping) or not by_distance:
            raise ValueError(f"{where}: label_aps[{name!r}] must map match distances to APs, got {by_distance!r}")
        aps[name] = {str(d): float(v) for d, v in by_distance.items()}
    if not aps:
        raise ValueError(f"{where}: label_aps is empty")
    return aps


def plot_class_ap(summary: Mapping[str, Any] | str | os.PathLike, path: str | os.PathLike,
                  *, title: str | None = None) -> Path:
    """Per-class AP bars (one bar per match distance, the class mean marked) and, where the
    summary has ``label_tp_errors``, per-class TP error bars; to a PNG at ``path``."""
    where = str(summary) if isinstance(summary, (str, os.PathLike)) else "summary"
    if isinstance(summary, (str, os.PathLike)):
        summary = read_json(summary)
    aps = _summary_aps(summary, where)
    classes = list(aps)
    distances = sorted({d for by_distance in aps.values() for d in by_distance}, key=float)
    tp_errors = summary.get("label_tp_errors")
    plt = pyplot()
    panels = 2 if isinstance(tp_errors, Mapping) and tp_errors else 1
    fig, axes = plt.subplots(panels, 1, figsize=(max(8.0, 0.9 * len(classes) + 2), 4.2 * panels), dpi=100,
                             squeeze=False)
    ax = axes[0, 0]
    width = 0.8 / len(distances)
    positions = np.arange(len(classes))
    for k, distance in enumerate(distances):
        values = [aps[name].get(distance, np.nan) for name in classes]
        ax.bar(positions + (k - (len(distances) - 1) / 2) * width, values, width, label=f"{distance} m",
               color=pyplot().cm.viridis(k / max(1, len(distances) - 1)))
    means = [np.nanmean(list(aps[name].values())) for name in classes]
    ax.scatter(positions, means, color="red", marker="_", s=400, zorder=3, label="class mean")
    for x, mean in zip(positions, means):
        ax.text(x, mean + 0.02, f"{mean:.2f}", ha="center", fontsize=7)
    ax.set_xticks(positions, classes, rotation=30, ha="right")
    for tick, name in zip(ax.get_xticklabels(), classes):
        tick.set_color(class_color(name) if class_color(name) != "#444444" else "black")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("AP")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=len(distances) + 1)
    ax.set_title(title or _summary_title(summary))
    if panels == 2:
        _draw_tp_errors(axes[1, 0], tp_errors, classes)
    fig.tight_layout()
    return save_figure(fig, path)


def _summary_title(summary: Mapping[str, Any]) -> str:
    parts = [f"{label} {float(summary[key]):.4f}" for key, label in (("mean_ap", "mAP"), ("nd_score", "NDS"))
             if key in summary]
    return "per-class AP" + (f"  ({', '.join(parts)})" if parts else "")


def _draw_tp_errors(ax, tp_errors: Mapping[str, Mapping[str, float]], classes: list[str]) -> None:
    names = [n for n in TP_ERRORS if any(n in (tp_errors.get(c) or {}) for c in classes)]
    width = 0.8 / max(1, len(names))
    positions = np.arange(len(classes))
    for k, name in enumerate(names):
        values = [float((tp_errors.get(c) or {}).get(name, np.nan)) for c in classes]
        ax.bar(positions + (k - (len(names) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(positions, classes, rotation=30, ha="right")
    ax.set_ylabel("error (NaN: not defined)")
    ax.set_title("true-positive errors")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=len(names))


def parse_detail_key(key: str) -> tuple[str, str]:
    """'car:2.0' -> ('car', '2.0')."""
    name, separator, distance = key.rpartition(":")
    if not separator or not name:
        raise ValueError(f"metrics details key {key!r} must be '<class>:<distance>'")
    float(distance)
    return name, distance


def plot_pr_curves(details: Mapping[str, Any] | str | os.PathLike, path: str | os.PathLike,
                   *, title: str | None = None) -> Path:
    """Precision-recall curves, one panel per class with one curve per match distance, from
    devkit ``metrics_details``; to a PNG at ``path``."""
    where = str(details) if isinstance(details, (str, os.PathLike)) else "details"
    if isinstance(details, (str, os.PathLike)):
        details = read_json(details)
    if not isinstance(details, Mapping) or not details:
        raise ValueError(f"{where}: expected metrics details {{'<class>:<distance>': {{'recall', 'precision'}}}}")
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for key, record in details.items():
        try:
            name, distance = parse_detail_key(key)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        if not isinstance(record, Mapping) or "recall" not in record or "precision" not in record:
            raise ValueError(f"{where}: details[{key!r}] needs 'recall' and 'precision' lists")
        recall, precision = np.asarray(record["recall"], float), np.asarray(record["precision"], float)
        if recall.shape != precision.shape or recall.ndim != 1:
            raise ValueError(f"{where}: details[{key!r}] recall {recall.shape} and precision {precision.shape} "
                             "must be lists of the same length")
        curves.setdefault(name, {})[distance] = (recall, precision)
    plt = pyplot()
    columns = min(5, len(curves))
    rows = math.ceil(len(curves) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.2 * rows), dpi=100, squeeze=False,
                             sharex=True, sharey=True)
    for ax, (name, by_distance) in zip(axes.flat, curves.items()):
        distances = sorted(by_distance, key=float)
        for k, distance in enumerate(distances):
            recall, precision = by_distance[distance]
            ax.plot(recall, precision, lw=1.3, label=f"{distance} m",
                    color=plt.cm.viridis(k / max(1, len(distances) - 1)))
        ax.set_title(name, color=class_color(name) if class_color(name) != "#444444" else "black")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower left")
    for ax in list(axes.flat)[len(curves):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("recall")
    for ax in axes[:, 0]:
        ax.set_ylabel("precision")
    fig.suptitle(title or "precision-recall")
    fig.tight_layout()
    return save_figure(fig, path)


# ------------------------------------------------------------------ a run
def plot_run(run: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Every plot a run folder supports, into ``out_dir``: ``curves.png`` from its
    ``metrics.csv`` files, ``class_ap.png`` from ``metrics_summary.json`` and ``pr_curves.png``
    from ``metrics_details.json`` (the newest of each, searched recursively). Raises
    ``ValueError`` when the folder holds none of them."""
    run, out_dir = Path(run), Path(out_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} not found")
    written = []
    csvs = find_metrics_csvs(run)
    if csvs:
        written.append(plot_training_curves(csvs, out_dir / "curves.png", title=f"training curves: {run.name}"))
    summary = _newest(run, "metrics_summary.json")
    if summary is not None:
        written.append(plot_class_ap(summary, out_dir / "class_ap.png"))
    details = _newest(run, "metrics_details.json")
    if details is not None:
        written.append(plot_pr_curves(details, out_dir / "pr_curves.png"))
    if not written:
        raise ValueError(f"{run}: found no metrics.csv, metrics_summary.json or metrics_details.json to plot")
    return written


def _newest(root: Path, name: str) -> Path | None:
    found = sorted(root.rglob(name), key=lambda p: (p.stat().st_mtime, str(p)))
    return found[-1] if found else None
