"""tools/visualize.py: the five subcommands on a tiny dataset written here (and on the real
samples in shared/realdata where present)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from viz_fixtures import REALDATA, color_mask, load_rgb

from pointformer.data.infos import PointSource, SampleInfo, annotations_to_record, save_infos
from pointformer.structures import Annotations, Boxes3D, Detections
from pointformer.viz.colors import class_color, semantic_color

REPO = Path(__file__).resolve().parents[2]
SMALL_3D = ["--backend", "numpy", "--width", "160", "--height", "120", "--range", "30"]


def _tool():
    spec = importlib.util.spec_from_file_location("visualize_tool", REPO / "tools" / "visualize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dataset(root: Path, frames: int = 3) -> Path:
    """A scene of ``frames`` nuScenes-named samples: a ground patch (lidarseg 24) and a car (17)."""
    rng = np.random.default_rng(0)
    infos = []
    (root / "points").mkdir(parents=True)
    for k in range(frames):
        ground = np.c_[rng.uniform(-20, 20, (400, 2)), np.full(400, -1.8), rng.uniform(0, 255, 400)]
        car = np.c_[rng.normal([8 + k, -6, -1], 0.5, (100, 3)), rng.uniform(0, 255, 100)]
        np.save(root / "points" / f"{k}.npy", np.r_[ground, car].astype(np.float32))
        np.save(root / "points" / f"{k}_labels.npy", np.r_[np.full(400, 24), np.full(100, 17)].astype(np.int64))
        annotations = Annotations.from_boxes(Boxes3D(np.array([[8.0 + k, -6.0, -1.0, 4.5, 2.0, 1.6, 0.2]])), ["car"])
        infos.append(SampleInfo(
            dataset="nuscenes", sample_id=f"token{k}", scene="scene-x", timestamp_us=k * 500_000,
            lidar=PointSource(f"points/{k}.npy", "npy", ("x", "y", "z", "intensity"),
                              key={"labels": f"{k}_labels.npy"}),
            annotations=annotations_to_record(annotations), meta={"global_from_lidar": np.eye(4).tolist()}))
    save_infos(root / "infos.json", infos, dataset="nuscenes", root=".")
    return root / "infos.json"


def _results(infos_path: Path, out: Path) -> Path:
    from pointformer.data.infos import load_infos
    from pointformer.evaluation.nuscenes_results import write_results

    infos, _ = load_infos(infos_path)
    detections = {info.sample_id: Detections(Boxes3D(torch.tensor([[8.3 + k, -6.0, -1.0, 4.4, 2.0, 1.6, 0.1, 0, 0],
                                                                    [-5.0, 9.0, -1.0, 4.4, 2.0, 1.6, 0.0, 0, 0]])),
                                              torch.tensor([0.9, 0.1]), torch.tensor([0, 3]))
                  for k, info in enumerate(infos)}
    return write_results(out, detections, infos)


def test_sample_views(tmp_path):
    data = _dataset(tmp_path / "data")
    out = tmp_path / "out" / "s.png"
    assert _tool().main(["sample", "--data", str(data), "--index", "1", "--view", "bev", "3d", "seg",
                         "--out", str(out), *SMALL_3D]) == 0
    bev, view3d, seg = (load_rgb(tmp_path / "out" / f"s_{v}.png") for v in ("bev", "3d", "seg"))
    assert color_mask(bev, class_color("car"), 10).sum() > 20
    assert view3d.shape == (120, 160, 3) and color_mask(view3d, class_color("car"), 10).any()
    assert color_mask(seg, semantic_color("flat.driveable_surface"), 10).sum() > 50


def test_results_compare_and_threshold(tmp_path, capsys):
    data = _dataset(tmp_path / "data")
    results = _results(data, tmp_path / "results.json")
    out = tmp_path / "cmp.png"
    assert _tool().main(["results", "--data", str(data), "--results", str(results), "--sample", "token2",
                         "--score-threshold", "0.5", "--out", str(out)]) == 0
    assert "1 boxes, 1 predictions" in capsys.readouterr().out  # the 0.1-score bus is hidden
    image = load_rgb(out)
    right = image[:, image.shape[1] // 2:]
    assert color_mask(right, class_color("car"), 10).sum() > 20 and not color_mask(right, class_color("bus"), 10).any()


def test_sequence_gif_and_errors(tmp_path, capsys):
    data = _dataset(tmp_path / "data")
    gif = tmp_path / "scene.gif"
    assert _tool().main(["sequence", "--data", str(data), "--scene", "scene-x", "--view", "3d", "--out", str(gif),
                         *SMALL_3D]) == 0
    with Image.open(gif) as animation:
        assert animation.n_frames == 3 and animation.size == (160, 120)
    assert _tool().main(["sequence", "--data", str(data), "--max-frames", "2", "--out", str(tmp_path / "two.gif"),
                         "--range", "20"]) == 0
    with Image.open(tmp_path / "two.gif") as animation:
        assert animation.n_frames == 2
    capsys.readouterr()
    assert _tool().main(["sequence", "--data", str(data), "--scene", "nowhere", "--out", str(gif)]) == 1
    assert "scene 'nowhere' not found" in capsys.readouterr().err
    assert _tool().main(["sample", "--data", str(data), "--index", "7", "--out", str(gif)]) == 1
    assert "--index 7 out of range" in capsys.readouterr().err


def test_file_and_run(tmp_path):
    data = _dataset(tmp_path / "data", frames=1)
    out = tmp_path / "file.png"
    assert _tool().main(["file", str(data.parent / "points" / "0.npy"), "--labels",
                         str(data.parent / "points" / "0_labels.npy"), "--label-names", "nuscenes-lidarseg",
                         "--view", "seg", "--out", str(out)]) == 0
    assert color_mask(load_rgb(out), semantic_color("vehicle.car"), 10).sum() > 20

    run = tmp_path / "run"
    (run / "version_0").mkdir(parents=True)
    (run / "version_0" / "metrics.csv").write_text("epoch,step,train/loss,val/mAP\n0,0,2.0,\n0,5,1.0,\n0,5,,0.3\n")
    (run / "metrics_summary.json").write_text(json.dumps({"label_aps": {"car": {"0.5": 0.1, "1.0": 0.5}}}))
    assert _tool().main(["run", str(run)]) == 0
    assert sorted(p.name for p in (run / "plots").iterdir()) == ["class_ap.png", "curves.png"]


@pytest.mark.skipif(not (REALDATA / "kitti_openpcdet_pr653").is_dir(), reason="shared/realdata is absent")
def test_real_kitti_sample_and_semantickitti_file(tmp_path):
    out = tmp_path / "kitti.png"
    assert _tool().main(["sample", "--data", str(REALDATA / "kitti_openpcdet_pr653"), "--index", "0",
                         "--view", "bev", "3d", "--out", str(out), *SMALL_3D]) == 0
    assert color_mask(load_rgb(tmp_path / "kitti_bev.png"), class_color("Pedestrian"), 10).any()
    scans = REALDATA / "semantickitti_open3d_ml" / "examples" / "data"
    seg = tmp_path / "skitti.png"
    assert _tool().main(["file", str(scans / "kitti_01_points_000000.npy"), "--labels",
                         str(scans / "kitti_01_labels_000000.npy"), "--label-names", "semantickitti",
                         "--view", "seg", "--out", str(seg)]) == 0
    image = load_rgb(seg)
    for name in ("road", "vegetation", "terrain"):
        assert color_mask(image, semantic_color(name), 10).sum() > 100, name
