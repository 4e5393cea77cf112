"""End to end: ``tools/create_data.py synthetic`` writes a dataset that the official devkit
loads; our reader and the devkit agree on every box; the devkit scores its GT perfectly;
info files, GT database and the BEV render work on it; real roots prepare too."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from pointformer.data.classes import NUSCENES_DETECTION_CLASSES
from pointformer.data.gt_database import GTDatabase
from pointformer.data.infos import load_infos, load_sample
from pointformer.data.prepare import info_file_name, prepare_dataset

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
    from nuscenes_fixtures import assert_box_row_matches, devkit_boxes_in_ours

    nusc = NuScenes("v1.0-trainval", str(synthetic_root), verbose=False)
    infos = [i for split in ("train", "val") for i in load_infos(synthetic_root / info_file_name(split))[0]]
    assert len(infos) == len(nusc.sample) == 4
    compared = 0
    for info in infos:
        expected = devkit_boxes_in_ours(nusc, nusc.get("sample", info.sample_id))
        record = info.annotations
        assert sorted(record["ids"]) == sorted(expected)
        for index, instance in enumerate(record["ids"]):
            assert_box_row_matches(record["boxes"][index], expected[instance])
            compared += 1
    assert compared == len(nusc.sample_annotation) > 20


def test_devkit_scores_the_ground_truth_perfectly(synthetic_root, tmp_path):
    pytest.importorskip("nuscenes")
    from nuscenes import NuScenes
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    nusc = NuScenes("v1.0-trainval", str(synthetic_root), verbose=False)
    from nuscenes_fixtures import ground_truth_as_results

    val_tokens = [info.sample_id for info in load_infos(synthetic_root / info_file_name("val"))[0]]
    results = ground_truth_as_results(nusc, val_tokens, lambda a: nusc.box_velocity(a["token"])[:2])
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


def test_generation_refuses_a_foreign_root(tmp_path):
    from pointformer.data.synthetic.generate import generate_nuscenes

    (tmp_path / "v1.0-trainval").mkdir()
    (tmp_path / "v1.0-trainval" / "sample.json").write_text("[]")
    with pytest.raises(FileExistsError, match="synthetic_dataset.json"):
        generate_nuscenes(tmp_path, 1, 1, progress=False)
    assert (tmp_path / "v1.0-trainval" / "sample.json").read_text() == "[]"


def test_regeneration_of_a_synthetic_root_is_allowed(synthetic_root):
    from pointformer.data.synthetic.generate import read_settings

    settings = read_settings(synthetic_root)
    assert settings.complete and settings.num_scenes == 2 and settings.seed == 3


def test_scene_counts_beyond_the_official_lists_are_an_error():
    from pointformer.data.synthetic.generate import split_counts

    assert split_counts(10, 0.2) == (8, 2) and split_counts(1, 0.2) == (1, 0)
    with pytest.raises(ValueError, match="official nuScenes split lists"):
        split_counts(1000, 0.2)


def test_lyft_schema_root_prepares_as_one_split(tmp_path):
    lyft = REALDATA / "mmdetection3d" / "tests" / "data" / "lyft"
    if not lyft.is_dir():
        pytest.skip("shared/realdata not present")
    from pointformer.data.readers.layouts import default_splits, detect_layout

    root = lyft / "v1.01-train"
    assert detect_layout(root) == "nuscenes"
    assert default_splits(root, "nuscenes") == ["all"]


def test_prepare_with_no_matching_split_is_an_error(synthetic_root, tmp_path):
    with pytest.raises(ValueError, match="selects a sample"):
        prepare_dataset(synthetic_root, "nuscenes", splits=["mini_val"], out_dir=tmp_path, progress=False)
