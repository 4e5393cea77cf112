"""End to end on the tiny dataset: train a few steps, checkpoint, resume, test, demo; for a
detector and a segmentor, through the tools' own ``main`` functions."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from conftest import ALL_CLASSES, tool

from pointformer.data.infos import load_infos
from pointformer.engine.checkpoint import load_checkpoint_file
from pointformer.engine.config import load_config
from pointformer.engine.runner import RunOptions, evaluate
from pointformer.evaluation.nuscenes_results import read_results
from pointformer.models.export import load_checkpoint

QUIET = ["--no-progress"]
train_tool, test_tool, demo = tool("train"), tool("test"), tool("demo")


@pytest.fixture(scope="module")
def detector_run(detector_config, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("detector_run")
    assert train_tool.main([str(detector_config), "--work-dir", str(work_dir), *QUIET]) == 0
    return work_dir


def metrics_rows(work_dir):
    rows = []
    for path in sorted(work_dir.glob("csv/version_*/metrics.csv")):
        with open(path, newline="") as handle:
            rows += list(csv.DictReader(handle))
    return rows


def test_training_writes_checkpoints_logs_and_config(detector_run):
    checkpoints = detector_run / "checkpoints"
    assert (checkpoints / "last.ckpt").is_file() and (checkpoints / "best.ckpt").is_file()
    assert not list(checkpoints.glob(".*tmp*")), "a temporary checkpoint file was left behind"
    assert (detector_run / "config.yaml").is_file()
    assert list(detector_run.glob("tensorboard/version_*/events.out.tfevents.*"))
    rows = metrics_rows(detector_run)
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert any(r.get("train/heatmap/task0") for r in rows)
    assert any(r.get("val/mAP") for r in rows) and any(r.get("val/NDS") for r in rows)
    assert any(r.get("val/AP/car") for r in rows)


def test_checkpoint_rebuilds_the_model_without_the_config(detector_run, detector_config):
    path = detector_run / "checkpoints" / "last.ckpt"
    payload = load_checkpoint_file(path)  # weights_only=True
    config = load_config(detector_config)
    for key, value in config.model_description().items():
        assert payload[key] == value, key
    assert payload["point_columns"] == ["x", "y", "z", "intensity"]
    assert not any(key.startswith("model.") for key in payload["state_dict"])
    model, description = load_checkpoint(path)  # pointformer.models.export's reader
    reference = config.build_model()
    reference.load_state_dict(payload["state_dict"])
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name
    assert description.class_names == tuple(config.dataset.class_names)


def test_resume_of_a_finished_run_keeps_it_and_a_longer_schedule_is_refused(detector_run, detector_config, capsys):
    before = load_checkpoint_file(detector_run / "checkpoints" / "last.ckpt")
    assert before["global_step"] == 4 and before["lr_schedulers"][0]["total_steps"] == 4
    assert train_tool.main([str(detector_config), "--work-dir", str(detector_run), "--resume", *QUIET]) == 0
    after = load_checkpoint_file(detector_run / "checkpoints" / "last.ckpt")
    assert after["global_step"] == 4
    assert train_tool.main([str(detector_config), "train.max_steps=6", "--work-dir", str(detector_run), "--resume",
                            *QUIET]) == 2
    assert "one-cycle schedule spans 4 steps" in capsys.readouterr().err


def test_test_tool_writes_devkit_metrics_and_results_that_read_back(detector_run, detector_config, tiny_root, tmp_path):
    checkpoint = detector_run / "checkpoints" / "best.ckpt"
    out = tmp_path / "test"
    assert test_tool.main([str(detector_config), "--ckpt", str(checkpoint), "--out", str(out), "--render", "1",
                           *QUIET]) == 0
    summary = json.loads((out / "metrics_summary.json").read_text())
    for key in ("label_aps", "mean_dist_aps", "mean_ap", "label_tp_errors", "tp_errors", "tp_scores", "nd_score",
                "eval_time", "cfg", "meta"):
        assert key in summary, key
    assert set(summary["label_aps"]["car"]) == {"0.5", "1.0", "2.0", "4.0"}
    assert (out / "metrics_details.json").is_file() and (out / "bev_00.png").is_file()

    config = load_config(detector_config)
    module, _ = evaluate(config, checkpoint, RunOptions(work_dir=tmp_path / "again", progress_bar=False,
                                                        loggers=False))
    infos, _ = load_infos(tiny_root / "pointformer_infos_val.json")
    read = read_results(out / "results_nusc.json", infos, config.dataset.class_names)
    assert list(read) == [info.sample_id for info in infos]
    for token, detections in module.test_predictions.items():
        back = read[token]
        order, back_order = detections.scores.argsort(descending=True), back.scores.argsort(descending=True)
        assert torch.allclose(back.scores[back_order], detections.scores[order])
        assert torch.equal(back.labels[back_order], detections.labels[order])
        mine, theirs = detections.boxes.tensor[order], back.boxes.tensor[back_order]
        assert torch.allclose(theirs[:, :6], mine[:, :6], atol=1e-3)
        yaw_gap = torch.remainder(theirs[:, 6] - mine[:, 6] + torch.pi, 2 * torch.pi) - torch.pi
        assert float(yaw_gap.abs().max()) < 1e-3
        assert torch.allclose(theirs[:, 7:9], mine[:, 7:9], atol=1e-3)
    assert summary["mean_ap"] == pytest.approx(module.test_evaluation.summary["mean_ap"])


def test_demo_on_a_file_and_on_a_sample_token(detector_run, tiny_root, tmp_path):
    checkpoint = detector_run / "checkpoints" / "last.ckpt"
    infos, _ = load_infos(tiny_root / "pointformer_infos_val.json")
    cloud = tiny_root / infos[0].lidar.path
    assert demo.main(["--ckpt", str(checkpoint), str(cloud), "--out", str(tmp_path)]) == 0
    stem = cloud.name.split(".")[0]
    document = json.loads((tmp_path / f"{stem}.json").read_text())
    assert (tmp_path / f"{stem}.png").is_file()
    model, _ = load_checkpoint(checkpoint)
    from pointformer.structures import PointBatch
    from pointformer.viz.frames import file_sample

    sample = file_sample(cloud)
    points = PointBatch.from_list([sample.points[:, :4]])
    with torch.no_grad():
        expected = model.predict(points)[0]
    assert len(document["detections"]) == len(expected)
    boxes = np.array([d["box"] for d in document["detections"]]).reshape(-1, expected.boxes.tensor.shape[1])
    np.testing.assert_allclose(boxes, expected.boxes.tensor.numpy(), rtol=1e-5, atol=1e-4)

    assert demo.main(["--ckpt", str(checkpoint), infos[0].sample_id, "--data", str(tiny_root), "--out",
                      str(tmp_path)]) == 0
    assert (tmp_path / f"{infos[0].sample_id}.png").is_file()
    assert demo.main(["--ckpt", str(checkpoint), "no-such-sample", "--out", str(tmp_path)]) == 2


def test_segmentation_trains_tests_and_demos(segmentor_config, tiny_root, tmp_path):
    work_dir = tmp_path / "seg"
    assert train_tool.main([str(segmentor_config), "--work-dir", str(work_dir), *QUIET]) == 0
    rows = metrics_rows(work_dir)
    assert any(r.get("val/mIoU") for r in rows) and any(r.get("train/ce") for r in rows)
    checkpoint = work_dir / "checkpoints" / "last.ckpt"
    out = tmp_path / "seg_test"
    assert test_tool.main([str(segmentor_config), "--ckpt", str(checkpoint), "--out", str(out), "--render", "1",
                           *QUIET]) == 0
    summary = json.loads((out / "metrics_summary.json").read_text())
    assert 0.0 <= summary["miou"] <= 1.0 and len(summary["iou"]) == 16
    infos, _ = load_infos(tiny_root / "pointformer_infos_val.json")
    assert demo.main(["--ckpt", str(checkpoint), str(tiny_root / infos[0].lidar.path), "--out", str(tmp_path)]) == 0
    labels = np.load(tmp_path / f"{(tiny_root / infos[0].lidar.path).name.split('.')[0]}_labels.npy")
    assert labels.min() >= 0 and labels.max() < 16


def test_bad_paths_and_configs_are_clear_errors(detector_config, tmp_path, capsys):
    assert train_tool.main([str(tmp_path / "missing.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    assert train_tool.main([str(detector_config), "train.optimizer.lrr=1e-3"]) == 2
    assert "train.optimizer.lrr" in capsys.readouterr().err
    assert test_tool.main([str(detector_config), "--ckpt", str(tmp_path / "none.ckpt")]) == 2
    assert "none.ckpt" in capsys.readouterr().err
    assert train_tool.main([str(detector_config), "--resume", str(tmp_path / "gone.ckpt"), "--work-dir",
                            str(tmp_path / "w")]) == 2
    assert "gone.ckpt" in capsys.readouterr().err


def test_quickstart_generates_trains_evaluates_and_reports(detector_config, tmp_path, capsys):
    """The README's main job at toy size: it makes its data, trains, scores the held-out scenes
    and writes what it promises; a second run reuses the data."""
    quickstart = tool("quickstart")
    data, work_dir = tmp_path / "data", tmp_path / "demo"
    arguments = ["--data", str(data), "--work-dir", str(work_dir), "--config", str(detector_config), "--scenes", "2",
                 "--samples-per-scene", "2", "--renders", "1", "train.max_steps=2", *QUIET]
    assert quickstart.main(arguments) == 0
    for name in ("checkpoints/last.ckpt", "config.yaml", "metrics_summary.json", "metrics_details.json",
                 "results_nusc.json", "bev_00.png", "curves.png", "class_ap.png", "quickstart.json"):
        assert (work_dir / name).is_file(), name
    assert not (work_dir / "checkpoints" / "best.ckpt").exists()  # no validation during training
    summary = json.loads((work_dir / "metrics_summary.json").read_text())
    figures = json.loads((work_dir / "quickstart.json").read_text())
    assert figures["steps"] == 2 and figures["samples_per_second"] > 0
    assert figures["car_ap_2m"] == summary["label_aps"]["car"]["2.0"]
    assert figures["NDS"] == summary["nd_score"] and set(figures["ap_2m"]) == set(summary["label_aps"])
    infos, _ = load_infos(data / "pointformer_infos_val.json")
    assert set(read_results(work_dir / "results_nusc.json", infos, ALL_CLASSES)) == {i.sample_id for i in infos}
    output = capsys.readouterr().out
    assert "car AP @ 2 m on the held-out scenes" in output and "NDS" in output

    assert quickstart.main(arguments) == 0
    assert "using the synthetic dataset" in capsys.readouterr().out
