"""End to end: ``tools/create_data.py synthetic`` writes a dataset that the official devkit
loads; our reader and the devkit agree on every box; the devkit scores its GT perfectly;
info files, GT database and the BEV render work on it; real roots prepare too."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from pointformer.data.classes import NUSCENES_CATEGORY_TO_DETECTION, NUSCENES_DETECTION_CLASSES
from pointformer.data.gt_database import GTDatabase
from pointformer.data.infos import load_infos, load_sample
from pointformer.data.prepare import info_file_name, prepare_dataset
from pointformer.structures.rotation import normalize_yaw

REPO = Path(__file__).resolve().parents[2]
REALDATA = REPO.parent / "shared" / "realdata"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    argv = ["synthetic", "--out", str(root), "--scenes", "2", "--samples-per-scene", "2", "--seed", "3",
            "--max-sweeps", "3"]
    assert _tool("create_data").main(argv) == 0
    return root


def test_layout_and_training_files(synthetic_root):
    assert (synthetic_root / "v1.0-trainval" / "sample.json").is_file()
    for split in ("train", "val"):
        infos, header = load_infos(synthetic_root / info_file_name(split))
        assert len(infos) == 2 and header["split"] == split and header["dataset"] == "nuscenes"
        assert all(i.max_sweeps == 3 for i in infos)
    database = GTDatabase(synthetic_root / "gt_database" / "gt_database.json")
    assert set(database.class_counts) <= set(NUSCENES_DETECTION_CLASSES) and database.class_counts["car"] > 0


def test_devkit_loads_it_and_agrees_on_every_box(synthetic_root):
    pytest.importorskip("nuscenes")
    from nuscenes import NuScenes
    from nuscenes_fixtures import devkit_boxes_in_ours

    nusc = NuScenes("v1.0-trainval", str(synthetic_root), verbose=False)
    infos = [i for split in ("train", "val") for i in load_infos(synthetic_root / info_file_name(split))[0]]
    assert len(infos) == len(nusc.sample) == 4
    compared = 0
    for info in infos:
        expected = devkit_boxes_in_ours(nusc, nusc.get("sample", info.sample_id))
        record = info.annotations
        assert sorted(record["ids"]) == sorted(expected)
        for index, instance in enumerate(record["ids"]):
            ours = np.array([np.nan if v is None else v for v in record["boxes"][index]])
            theirs = expected[instance]
            np.testing.assert_allclose(ours[:6], theirs[:6], atol=1e-4)
            assert abs(normalize_yaw(ours[6] - theirs[6])) < 1e-4
            np.testing.assert_allclose(ours[7:], theirs[7:], atol=1e-4, equal_nan=True)
            compared += 1
    assert compared == len(nusc.sample_annotation) > 20


def test_devkit_scores_the_ground_truth_perfectly(synthetic_root, tmp_path):
    pytest.importorskip("nuscenes")
    from nuscenes import NuScenes
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    nusc = NuScenes("v1.0-trainval", str(synthetic_root), verbose=False)
    attribute_names = {a["token"]: a["name"] for a in nusc.attribute}
    val_tokens = {info.sample_id for info in load_infos(synthetic_root / info_file_name("val"))[0]}
    results = {token: [] for token in val_tokens}
    for annotation in nusc.sample_annotation:
        name = NUSCENES_CATEGORY_TO_DETECTION.get(annotation["category_name"])
        if name is None or annotation["sample_token"] not in val_tokens:
            continue
        velocity = nusc.box_velocity(annotation["token"])[:2]
        results[annotation["sample_token"]].append({
            "sample_token": annotation["sample_token"], "translation": annotation["translation"],
            "size": annotation["size"], "rotation": annotation["rotation"],
            "velocity": [0.0, 0.0] if np.isnan(velocity).any() else velocity.tolist(),
            "detection_name": name, "detection_score": 1.0,
            "attribute_name": "".join(attribute_names[t] for t in annotation["attribute_tokens"]),
        })
    meta = {"use_lidar": True, "use_camera": False, "use_radar": False, "use_map": False, "use_external": False}
    (tmp_path / "gt.json").write_text(json.dumps({"meta": meta, "results": results}))
    evaluation = DetectionEval(nusc, config_factory("detection_cvpr_2019"), str(tmp_path / "gt.json"),
                               eval_set="val", output_dir=str(tmp_path / "eval"), verbose=False)
    metrics = evaluation.evaluate()[0].serialize()
    present = {box.detection_name for box in evaluation.gt_boxes.all}
    assert len(present) >= 5
    # A class with no ground truth in these two samples scores AP 0 in the devkit; all others 1.
    assert {c: ap for c, ap in metrics["mean_dist_aps"].items() if c in present} == pytest.approx({c: 1.0 for c in present})
    for name in present:
        assert metrics["label_tp_errors"][name]["trans_err"] == pytest.approx(0.0, abs=1e-9)
        assert metrics["label_tp_errors"][name]["scale_err"] == pytest.approx(0.0, abs=1e-9)


def test_samples_load_and_render(synthetic_root, tmp_path):
    infos, _ = load_infos(synthetic_root / info_file_name("val"))
    sample = load_sample(infos[-1], synthetic_root)
    assert sample.point_columns == ("x", "y", "z", "intensity", "time_lag")
    lags = np.unique(sample.column("time_lag").numpy())
    assert len(lags) == 4 and lags[0] == 0.0  # keyframe + 3 sweeps at 20 Hz
    np.testing.assert_allclose(np.diff(lags), 0.05, atol=1e-3)
    visualize = _tool("visualize")
    out = tmp_path / "bev.png"
    assert visualize.main(["sample", "--data", str(synthetic_root), "--split", "val", "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000


def test_bad_root_is_a_clear_error(tmp_path, capsys):
    assert _tool("create_data").main(["kitti", "--root", str(tmp_path / "missing")]) == 1
    assert "missing" in capsys.readouterr().out


def test_real_kitti_root_prepares(tmp_path):
    kitti = REALDATA / "kitti_openpcdet_pr653"
    if not kitti.is_dir():
        pytest.skip("shared/realdata not present")
    prepared = prepare_dataset(kitti, "kitti", out_dir=tmp_path, progress=False)
    assert prepared.sample_counts == {"training": 6}
    database = GTDatabase(prepared.gt_database)
    assert database.class_counts == {"Car": 5, "Pedestrian": 2, "Cyclist": 1}
