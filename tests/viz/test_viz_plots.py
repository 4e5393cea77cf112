"""Run plots: CSV logs read back as Lightning's CSVLogger wrote them, curves grouped into panels,
AP bars and PR curves from devkit-shaped JSON."""

import json

import numpy as np
import pytest
from pytorch_lightning.loggers import CSVLogger
from viz_fixtures import color_mask, load_rgb

from pointformer.viz.plots import (
    group_series, plot_class_ap, plot_pr_curves, plot_run, plot_training_curves, read_metrics_csv,
)

CLASSES = ("car", "pedestrian")
DISTANCES = ("0.5", "1.0", "2.0", "4.0")


def _log_run(root, resumed=False):
    """A run as CSVLogger writes it: per-step losses and lr, per-epoch validation metrics."""
    logged = {}
    versions = [range(0, 40, 10), range(40, 80, 10)] if resumed else [range(0, 40, 10)]
    for steps in versions:
        logger = CSVLogger(str(root), name="lightning_logs")
        for step in steps:
            values = {"train/loss": 3.0 / (step + 1), "train/loss_heatmap": 2.0 / (step + 1),
                      "lr-AdamW": 1e-3 * (1 - step / 100), "epoch": step // 20}
            logger.log_metrics(values, step=step)
            for name, value in values.items():
                logged.setdefault(name, []).append((step, value))
            if step % 20 == 10:
                metrics = {"val/mAP": step / 100, "val/NDS": step / 80, "epoch": step // 20}
                logger.log_metrics(metrics, step=step)
                for name, value in metrics.items():
                    logged.setdefault(name, []).append((step, value))
        logger.save()
    return logged


def test_metrics_read_back_as_logged_across_versions(tmp_path):
    logged = _log_run(tmp_path / "run", resumed=True)
    files = sorted((tmp_path / "run").rglob("metrics.csv"))
    assert len(files) == 2
    series = read_metrics_csv(files)
    assert set(series) == set(logged) - {"epoch"}
    for name, pairs in logged.items():
        if name == "epoch":
            continue
        steps, values = np.array(sorted(pairs)).T
        np.testing.assert_array_equal(series[name].steps, steps)
        np.testing.assert_allclose(series[name].values, values)
    groups = group_series(series)
    assert {k: [s.name for s in v] for k, v in groups.items()} == {
        "loss": ["train/loss"], "loss terms": ["train/loss_heatmap"], "metrics": ["val/NDS", "val/mAP"],
        "learning rate": ["lr-AdamW"]}


def test_curves_png_has_a_panel_per_group(tmp_path):
    _log_run(tmp_path / "run")
    image = load_rgb(plot_training_curves(tmp_path / "run", tmp_path / "curves.png"))
    assert image.shape[:2] == (800, 1300)  # 2 x 2 panels of 6.5 x 4 inches at 100 dpi
    assert color_mask(image, "#1f77b4", 20).sum() > 100  # the first line colour, in every panel

    only_loss = tmp_path / "only_loss.csv"
    only_loss.write_text("epoch,step,train/loss\n0,0,1.0\n0,1,0.5\n")
    assert load_rgb(plot_training_curves(only_loss, tmp_path / "loss.png")).shape[:2] == (400, 650)


def test_bad_csv_names_the_line_and_column(tmp_path):
    bad = tmp_path / "metrics.csv"
    bad.write_text("epoch,step,train/loss\n0,0,1.0\n0,1,oops\n")
    with pytest.raises(ValueError, match=r"metrics.csv:3: column 'train/loss'"):
        read_metrics_csv(bad)
    bad.write_text("epoch,train/loss\n0,1.0\n")
    with pytest.raises(ValueError, match="'step' column"):
        read_metrics_csv(bad)


def _summary():
    aps = {"car": dict(zip(DISTANCES, (0.6, 0.8, 0.9, 0.95))), "pedestrian": dict(zip(DISTANCES, (0.2, 0.3, 0.4, 0.5)))}
    tp = {"car": {"trans_err": 0.2, "scale_err": 0.15, "orient_err": 0.1, "vel_err": 0.3, "attr_err": 0.1},
          "pedestrian": {"trans_err": 0.3, "scale_err": 0.3, "orient_err": 0.5, "vel_err": 0.6, "attr_err": 0.2}}
    return {"label_aps": aps, "mean_ap": 0.58, "nd_score": 0.6, "label_tp_errors": tp,
            "tp_errors": {"trans_err": 0.25}}


def _details():
    recall = np.linspace(0, 1, 101)
    return {f"{name}:{d}": {"recall": recall.tolist(), "precision": np.clip(1 - recall * k / 4, 0, 1).tolist(),
                            "confidence": (1 - recall).tolist()}
            for name in CLASSES for k, d in enumerate(DISTANCES, start=1)}


def test_class_ap_bars_and_pr_curves(tmp_path):
    image = load_rgb(plot_class_ap(_summary(), tmp_path / "ap.png"))
    assert color_mask(image, "#440154", 8).sum() > 50  # the 0.5 m bars (viridis start)
    assert color_mask(image, "#fde725", 8).sum() > 50  # the 4.0 m bars (viridis end)
    image = load_rgb(plot_pr_curves(_details(), tmp_path / "pr.png"))
    assert image.shape[:2] == (320, 640)  # one panel per class
    with pytest.raises(ValueError, match="label_aps"):
        plot_class_ap({"mean_ap": 0.1}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="<class>:<distance>"):
        plot_pr_curves({"car": {"recall": [0, 1], "precision": [1, 0]}}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="same length"):
        plot_pr_curves({"car:1.0": {"recall": [0, 1], "precision": [1]}}, tmp_path / "x.png")


def test_run_folder_gives_every_plot_it_supports(tmp_path):
    run = tmp_path / "run"
    _log_run(run)
    (run / "eval").mkdir()
    (run / "eval" / "metrics_summary.json").write_text(json.dumps(_summary()))
    (run / "eval" / "metrics_details.json").write_text(json.dumps(_details()))
    written = plot_run(run, tmp_path / "plots")
    assert [p.name for p in written] == ["curves.png", "class_ap.png", "pr_curves.png"]
    assert all(p.stat().st_size > 1000 for p in written)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="found no metrics.csv"):
        plot_run(tmp_path / "empty", tmp_path / "plots")
    with pytest.raises(FileNotFoundError):
        plot_run(tmp_path / "missing", tmp_path / "plots")
