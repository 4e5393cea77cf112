"""ONNX export: the graph run by onnxruntime against the PyTorch model (which voxelizes and plans
inside its own forward), on clouds of other sizes than the traced example; the traceable encoder
and BEV scatter against the numba / in-place paths; the tool end to end."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from pointformer.models.bev import sparse_to_bev
from pointformer.models.encoders import DynamicVFE, MeanVFE
from pointformer.models.export import (
    ModelDescription,
    bev_scatter,
    export_onnx,
    head_outputs,
    onnx_session,
    prepare_inputs,
    pytorch_outputs,
    run_onnx,
)
from pointformer.structures import PointBatch, SparseVoxels

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["Vehicle", "Pedestrian", "Cyclist"]
VOXEL_SIZE = [0.5, 0.5, 6.0]
RANGE = [-8.0, -8.0, -2.0, 8.0, 8.0, 4.0]  # 32 x 32 pillars
GROUP_SIZE = 12
SMALL_DETECTOR = {
    "type": "Detector",
    "encoder": {"type": "DynamicVFE", "feat_channels": [8, 16]},
    "backbone": {"type": "FlatFormer", "channels": 16, "num_heads": 2, "num_blocks": 1, "window_shape": [5, 5],
                 "group_size": GROUP_SIZE},
    "neck": {"type": "SecondFPN", "layer_nums": [1, 1], "out_channels": [8, 16], "upsample_channels": [8, 8]},
    "head": {"type": "CenterHead", "with_iou": True, "share_conv_channels": 8, "head_conv": 8},
}
SMALL_SEGMENTOR = {
    "type": "Segmentor",
    "encoder": {"type": "MeanVFE"},
    "backbone": {"type": "FlatFormer", "channels": 8, "num_heads": 2, "num_blocks": 1, "window_shape": [4, 6],
                 "group_size": 10, "mask_padding": True, "pre_norm": True},
    "head": {"type": "SegmentationHead", "hidden_channels": [16]},
}


def description(config, classes=CLASSES) -> ModelDescription:
    return ModelDescription(config, tuple(classes), 4, tuple(VOXEL_SIZE), tuple(RANGE))


def cloud(count: int, seed: int, spread: float = 9.0, outliers: int = 0) -> PointBatch:
    """``count`` points in a square of half-side ``spread`` around the origin (so some fall out of the
    +-8 m range when spread > 8), plus ``outliers`` NaN / far-away points."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, (count, 4)).astype(np.float32)
    points[:, :2] = (points[:, :2] * 2 - 1) * spread
    points[:, 2] = points[:, 2] * 5.5 - 2
    if outliers:
        bad = np.tile(np.array([[np.nan, 0, 0, 1], [1e6, 0, 0, 1], [0, 0, 9.0, 1]], np.float32), (outliers, 1))
        points = np.concatenate([points, bad[:outliers]])
        points = points[rng.permutation(len(points))]
    return PointBatch.from_list([torch.from_numpy(points)])


def max_difference(model, graph, points) -> float:
    got = run_onnx(graph.path, prepare_inputs(model, points))
    expected = pytorch_outputs(model, points)
    assert [a.shape for a in got] == [tuple(e.shape) for e in expected]
    return max((float(np.abs(a - e.numpy()).max()) for a, e in zip(got, expected) if a.size), default=0.0)


@pytest.fixture(scope="module")
def exported_detector(tmp_path_factory):
    torch.manual_seed(0)
    model = description(SMALL_DETECTOR).build().eval()
    with torch.no_grad():  # trained-like output scales: scores spread below 1, box sizes finite
        for task in model.head.task_heads:
            for branch in task.branches.values():
                branch[-1].weight.mul_(0.03)
            task.branches["heatmap"][-1].bias.add_(2.0)
            task.branches["iou"][-1].bias.fill_(0.6)
    example = cloud(400, seed=0)
    graph = export_onnx(model, example, tmp_path_factory.mktemp("onnx") / "detector.onnx")
    return model, graph, prepare_inputs(model, example)


def sizes(inputs) -> tuple[int, int, int]:
    return inputs["points"].shape[0], inputs["coords"].shape[0], inputs["plan_x_index"].shape[0] // GROUP_SIZE


def test_detector_graph_matches_pytorch_on_other_sizes(exported_detector):
    model, graph, example_inputs = exported_detector
    example = sizes(example_inputs)
    assert example[2] > 1
    for points in (cloud(1500, seed=1, outliers=3), cloud(9, seed=2, spread=1.2)):
        inputs = prepare_inputs(model, points)
        points_voxels_groups = sizes(inputs)
        assert all(a != b for a, b in zip(points_voxels_groups, example)), (points_voxels_groups, example)
        assert max_difference(model, graph, points) < 1e-4
    assert sizes(prepare_inputs(model, cloud(9, seed=2, spread=1.2)))[1] < GROUP_SIZE  # fewer voxels than a group


def test_detector_graph_on_a_cloud_without_points_in_range(exported_detector):
    model, graph, _ = exported_detector
    points = PointBatch.from_list([torch.tensor([[100.0, 0, 0, 1], [float("nan"), 0, 0, 1]])])
    assert sizes(prepare_inputs(model, points)) == (0, 0, 0)
    assert max_difference(model, graph, points) < 1e-4


def test_graph_interface_and_dynamic_dims(exported_detector):
    import onnx

    _, graph, _ = exported_detector
    proto = onnx.load(str(graph.path))
    dims = {value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
            for value in [*proto.graph.input, *proto.graph.output]}
    assert dims["points"] == ["num_points", 4] and dims["point_to_voxel"] == ["num_points"]
    assert dims["coords"] == ["num_voxels", 4]
    for order in ("x", "x_shift", "y", "y_shift"):
        assert dims[f"plan_{order}_index"] == ["num_slots"] and dims[f"plan_{order}_inverse"] == ["num_voxels"]
    assert dims["heatmap/task0"] == [1, 3, 32, 32] and dims["iou/task0"] == [1, 1, 32, 32]
    # No sort, unique or top-k inside the graph: the data-dependent work stays in Python.
    ops = {node.op_type for node in proto.graph.node}
    assert not ops & {"TopK", "Unique", "NonZero", "NonMaxSuppression", "Loop"}, ops
    assert graph.output_names == tuple(n.name for n in proto.graph.output)


def test_decoding_onnx_maps_gives_the_pytorch_detections(exported_detector):
    model, graph, _ = exported_detector
    points = cloud(800, seed=5)
    got = model.head.predict(head_outputs(graph.output_names, run_onnx(graph.path, prepare_inputs(model, points))))
    expected = model.predict(points)
    assert len(got) == len(expected) == 1
    got, expected = got[0], expected[0]
    assert len(expected.scores) > 10 and len(expected.scores.unique()) == len(expected.scores)
    assert got.boxes.tensor.shape == expected.boxes.tensor.shape
    # Scores within 1e-5 of each other may swap places; compare in a fixed order.
    got_order, expected_order = torch.argsort(got.boxes.tensor[:, 0]), torch.argsort(expected.boxes.tensor[:, 0])
    assert torch.equal(got.labels[got_order], expected.labels[expected_order])
    assert torch.allclose(got.scores[got_order], expected.scores[expected_order], atol=1e-5)
    assert torch.allclose(got.boxes.tensor[got_order], expected.boxes.tensor[expected_order], atol=1e-4)


def test_segmentor_graph_with_masked_padding(tmp_path):
    torch.manual_seed(1)
    model = description(SMALL_SEGMENTOR, classes=["a", "b", "c", "d", "e"]).build().eval()
    graph = export_onnx(model, cloud(300, seed=3), tmp_path / "segmentor.onnx")
    assert "plan_y_padding" in graph.input_names and graph.output_names == ("logits",)
    for points in (cloud(1200, seed=4, outliers=2), cloud(5, seed=6, spread=1.0)):
        assert max_difference(model, graph, points) < 1e-4


@pytest.mark.parametrize("seed", [0, 1])
def test_traceable_encoders_match_the_numba_path(seed):
    torch.manual_seed(seed)
    points = cloud(700 if seed else 3, seed=seed, spread=9.0, outliers=3)
    for encoder in (DynamicVFE(4, VOXEL_SIZE, RANGE, feat_channels=(8, 16)), MeanVFE(4, VOXEL_SIZE, RANGE)):
        encoder.eval()
        for layer in getattr(encoder, "vfe_layers", []):  # non-trivial BatchNorm statistics
            layer[1].running_mean.uniform_(-1, 1)
            layer[1].running_var.uniform_(0.5, 2)
        with torch.no_grad():
            expected = encoder(points)
            kept = expected.point_to_voxel >= 0
            point_feats, voxel_feats = encoder.encode_assigned(
                points.points[kept], expected.point_to_voxel[kept], expected.voxels.coords, traceable=True)
        assert torch.allclose(voxel_feats, expected.voxels.feats, atol=1e-6)
        if expected.point_feats is not None:
            assert torch.allclose(point_feats, expected.point_feats[kept], atol=1e-6)


def test_bev_scatter_equals_sparse_to_bev():
    rng = np.random.default_rng(0)
    shape = (3, 5, 7)
    cells = rng.choice(2 * 3 * 5 * 7, 40, replace=False)
    coords = np.stack([cells // 105, cells // 35 % 3, cells // 7 % 5, cells % 7], 1)
    voxels = SparseVoxels(torch.from_numpy(coords), torch.randn(40, 4), shape, 2)
    assert torch.equal(bev_scatter(voxels), sparse_to_bev(voxels))


def test_bad_inputs_are_rejected(exported_detector, tmp_path):
    model, graph, inputs = exported_detector
    with pytest.raises(ValueError, match="one sample"):
        prepare_inputs(model, PointBatch.from_list([torch.zeros(3, 4), torch.zeros(2, 4)]))
    with pytest.raises(ValueError, match="columns"):
        prepare_inputs(model, PointBatch.from_list([torch.zeros(3, 5)]))
    with pytest.raises(ValueError, match="lack"):
        run_onnx(onnx_session(graph.path), {k: v for k, v in inputs.items() if k != "coords"})
    with pytest.raises(FileNotFoundError):
        run_onnx(tmp_path / "missing.onnx", inputs)
    with pytest.raises(FileNotFoundError, match="folder"):
        export_onnx(model, cloud(50, seed=0), tmp_path / "no" / "model.onnx")
    sst = description({**SMALL_DETECTOR, "backbone": {"type": "SSTBackbone", "channels": 16, "num_heads": 2,
                                                      "num_layers": 2}}).build()
    with pytest.raises(TypeError, match="FlatFormer"):
        prepare_inputs(sst, cloud(50, seed=0))
    with pytest.raises(ValueError, match="missing keys"):
        ModelDescription.from_mapping({"model_config": SMALL_DETECTOR}, "checkpoint x")


def load_tool():
    spec = importlib.util.spec_from_file_location("export_tool", REPO / "tools" / "export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_exports_and_checks_a_checkpoint(tmp_path, capsys):
    tool = load_tool()
    torch.manual_seed(2)
    model = description(SMALL_DETECTOR).build()
    checkpoint = tmp_path / "model.ckpt"
    torch.save({"state_dict": model.state_dict(), **description(SMALL_DETECTOR).to_mapping()}, checkpoint)
    out = tmp_path / "model.onnx"
    assert tool.main(["--ckpt", str(checkpoint), "--out", str(out), "--check", "--points", "3000"]) == 0
    printed = capsys.readouterr().out
    difference = float(printed.split("max |onnxruntime - pytorch| = ")[1].split()[0])
    assert out.is_file() and difference < 1e-4

    torch.save({"state_dict": {}, **description(SMALL_DETECTOR).to_mapping()}, tmp_path / "empty.ckpt")
    for argv, message in (
        (["--ckpt", str(tmp_path / "none.ckpt")], "not found"),
        (["--ckpt", str(tmp_path / "empty.ckpt")], "does not fit"),
        (["--config", str(tmp_path / "none.yaml")], "not found"),
    ):
        assert tool.main([*argv, "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
