"""ONNX export of FlatFormer detectors and segmentors, with the data-dependent work outside the graph.

What a graph cannot hold well (sorts, unique, top-K, NMS) stays in Python/numba and runs before
or after it:

- before: ``prepare_inputs`` voxelizes the cloud (``dynamic_voxelize``: unique voxels, point ->
  voxel), keeps the points that landed in a voxel and computes FlatFormer's flattened-window
  plans (``flat_window_plans``: one sort per order);
- in the graph: the voxel encoder on the given assignment, the FlatFormer layers on the given
  plans, the BEV scatter, the neck and the head's raw maps (a segmentor: the per-point logits);
- after: decoding (top-K, NMS) with ``head.predict`` on the graph's maps (``head_outputs``
  turns the onnxruntime arrays back into the head's dicts).

Graph inputs (batch size 1; dynamic dims named in brackets, the group size S is static):

=========================  ====================  ==============================================
name                       dtype, shape          meaning
=========================  ====================  ==============================================
``points``                 float32 (K, C)        the points that fell in a voxel [num_points]
``point_to_voxel``         int64 (K,)            row of ``coords`` of every point
``coords``                 int32 (M, 4)          voxels [b=0, z, y, x], sorted [num_voxels]
``plan_<order>_index``     int64 (G * S,)        slot -> voxel of each group [num_slots]
``plan_<order>_inverse``   int64 (M,)            voxel -> its real slot
``plan_<order>_padding``   bool (G, S)           filler slots; only when the backbone masks them
=========================  ====================  ==============================================

Outputs: a detector's head maps, ``"<name>/task<i>"`` (e.g. ``heatmap/task0`` (1, C_task, H,
W)) in the head's order, all static; a segmentor's ``logits`` (K, num_classes) for the kept
points in input order.

Exporter. The graph is traced with the TorchScript exporter (``torch.onnx.export(...,
dynamo=False)``, deprecated since torch 2.9 but present in 2.13). The model code keeps Python-side
validation (``GroupPlan`` counts its dropped voxels with ``int(tensor)``, ``sparse_to_bev`` checks
coordinate ranges with ``.tolist()``): the tracer evaluates those once on the example and leaves
them out of the graph while tensor sizes stay symbolic, whereas ``torch.export`` (the dynamo
exporter) stops at the first of them (``GuardOnDataDependentSymNode``). Two pieces are written for
the tracer: the voxel max is exported as one ``ScatterElements(reduction="max")`` (the built-in
``scatter_reduce`` translation wraps it in ``If`` branches that lose the tensor rank), and the
BEV scatter is ``bev_scatter`` (out of place; ``sparse_to_bev``'s in-place ``index_put_`` through a
permuted view is mistranslated).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pointformer.ops import dynamic_voxelize, flat_window_plans
from pointformer.structures import GroupBucket, GroupPlan, PointBatch, SparseVoxels

from .backbones.flatformer import FlatFormer
from .detector import Detector, batch_points
from .encoders import DynamicVFE, MeanVFE
from .segmentor import Segmentor

DEFAULT_OPSET = 18  # ScatterElements with reduction "max" (the voxel max) needs opset 18
MAX_OPSET = 20  # the highest the TorchScript exporter writes
STATIC_INPUTS = ("points", "point_to_voxel", "coords")


@dataclass(frozen=True)
class ExportedGraph:
    """Where the graph was written and the names of its inputs and outputs, in order."""

    path: Path
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    num_bytes: int


def check_exportable(model: nn.Module) -> None:
    """TypeError unless ``model`` is a Detector / Segmentor with a DynamicVFE or MeanVFE encoder
    and a FlatFormer backbone (SST's bucket count is data-dependent; spconv has no ONNX path)."""
    if not isinstance(model, (Detector, Segmentor)):
        raise TypeError(f"export: model must be a Detector or Segmentor, got {type(model).__name__}")
    if not isinstance(model.encoder, (DynamicVFE, MeanVFE)):
        raise TypeError(f"export: the encoder must be DynamicVFE or MeanVFE, got {type(model.encoder).__name__}")
    if not isinstance(model.backbone, FlatFormer):
        raise TypeError(f"export: only FlatFormer backbones export to ONNX, got {type(model.backbone).__name__} "
                         "(SST windows have a data-dependent number of buckets, SparseResNet8x runs on spconv)")


def plan_orders(model: nn.Module) -> tuple[str, ...]:
    """The distinct flattened-window orders of the backbone, in first-use order."""
    return tuple(dict.fromkeys(model.backbone.orders))


def masks_padding(model: nn.Module) -> bool:
    """True when some attention layer masks padded slots (the graph then takes the padding)."""
    return any(layer.attention.mask_padding for layer in model.backbone.layers)


def input_names(model: nn.Module) -> tuple[str, ...]:
    """Graph input names, in the order the graph takes them."""
    names = list(STATIC_INPUTS)
    for order in plan_orders(model):
        names += [f"plan_{order}_index", f"plan_{order}_inverse"]
        if masks_padding(model):
            names.append(f"plan_{order}_padding")
    return tuple(names)


def prepare_inputs(model: nn.Module, points: PointBatch) -> dict[str, torch.Tensor]:
    """The data-dependent part of the forward pass: graph inputs (see the module docstring) for a
    one-sample ``points`` (a PointBatch or SampleBatch), on the CPU. Points out of range or
    with non-finite x, y, z are left out, as the PyTorch encoder leaves them out."""
    check_exportable(model)
    points = batch_points(points)
    if points.batch_size != 1:
        raise ValueError(f"prepare_inputs: the graph takes one sample, got a batch of {points.batch_size}")
    if points.num_features != model.encoder.in_channels:
        raise ValueError(f"prepare_inputs: points have {points.num_features} columns, the encoder expects "
                         f"{model.encoder.in_channels}")
    cloud = points.points.detach().to("cpu", torch.float32)
    grid = model.encoder.grid
    assignment = dynamic_voxelize(PointBatch(cloud, points.offsets.cpu()), grid.voxel_size, grid.point_cloud_range)
    kept = assignment.point_to_voxel >= 0
    inputs = {
        "points": cloud[kept].contiguous(),
        "point_to_voxel": assignment.point_to_voxel[kept].contiguous(),
        "coords": assignment.coords.contiguous(),
    }
    no_feats = cloud.new_zeros((assignment.num_voxels, 0))
    voxels = SparseVoxels(assignment.coords, no_feats, assignment.spatial_shape, 1)
    backbone = model.backbone
    plans = flat_window_plans(voxels, backbone.window_shape, backbone.group_size, plan_orders(model))
    for order, plan in plans.items():
        (bucket,) = plan.buckets
        inputs[f"plan_{order}_index"] = bucket.index.contiguous()
        inputs[f"plan_{order}_inverse"] = plan.inverse.contiguous()
        if masks_padding(model):
            inputs[f"plan_{order}_padding"] = bucket.padding.contiguous()
    return inputs


def kept_points(model: nn.Module, points: PointBatch) -> torch.Tensor:
    """int64 (K,): rows of ``points`` that the graph's ``points`` input holds (for a segmentor's
    logits), in order."""
    points = batch_points(points)
    grid = model.encoder.grid
    assignment = dynamic_voxelize(points.points.detach().cpu(), grid.voxel_size, grid.point_cloud_range,
                                  points.offsets.cpu())
    return torch.nonzero(assignment.point_to_voxel >= 0).squeeze(1)


class GraphModule(nn.Module):
    """The part of ``model`` that goes into the graph: tensors of ``prepare_inputs`` in, the head
    maps (detector) or the kept points' logits (segmentor) out, as a flat tuple.
    ``output_names``: ``"<map>/task<i>"`` of the last forward's outputs (``("logits",)``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        check_exportable(model)
        self.model = model
        self.orders = plan_orders(model)
        self.with_padding = masks_padding(model)
        self.output_names: tuple[str, ...] = ("logits",) if isinstance(model, Segmentor) else ()

    def forward(self, points: torch.Tensor, point_to_voxel: torch.Tensor, coords: torch.Tensor,
                *plan_tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        encoder = self.model.encoder
        point_feats, voxel_feats = encoder.encode_assigned(points, point_to_voxel, coords, traceable=True)
        voxels = SparseVoxels(coords, voxel_feats, encoder.spatial_shape, 1)
        voxels = self.model.backbone(voxels, plans=self.plans(plan_tensors))
        if isinstance(self.model, Segmentor):
            head = self.model.head
            return (head(voxels.feats, point_to_voxel, point_feats if head.point_channels else None),)
        maps = self.model.head(self.model.neck(bev_scatter(voxels)))
        self.output_names = tuple(f"{name}/task{i}" for i, task in enumerate(maps) for name in task)
        return tuple(tensor for task in maps for tensor in task.values())

    def plans(self, plan_tensors: Sequence[torch.Tensor]) -> dict[str, GroupPlan]:
        """``GroupPlan`` per order from its input tensors (one bucket of static group size S)."""
        per_order = 3 if self.with_padding else 2
        if len(plan_tensors) != per_order * len(self.orders):
            raise ValueError(f"GraphModule: expected {per_order} plan tensors for each of the orders {self.orders}, "
                             f"got {len(plan_tensors)}")
        size = self.model.backbone.group_size
        plans = {}
        for i, order in enumerate(self.orders):
            index, inverse, *padding = plan_tensors[per_order * i: per_order * (i + 1)]
            padding = padding[0] if padding else index.view(-1, size) < 0
            batch = torch.zeros_like(padding[:, 0], dtype=torch.int64)
            plans[order] = GroupPlan((GroupBucket(index, padding, batch),), inverse)
        return plans


def bev_scatter(voxels: SparseVoxels) -> torch.Tensor:
    """``sparse_to_bev`` written out of place, on one flat cell index: the TorchScript exporter
    mistranslates ``sparse_to_bev``'s in-place ``index_put_`` through a permuted view."""
    depth, height, width = voxels.spatial_shape
    channels = voxels.feats.shape[1]
    b, z, y, x = voxels.coords.long().unbind(1)
    cell = ((b * depth + z) * height + y) * width + x
    canvas = voxels.feats.new_zeros((voxels.batch_size * depth * height * width, channels))
    canvas = canvas.index_put((cell,), voxels.feats)
    grid = canvas.view(voxels.batch_size, depth, height, width, channels).permute(0, 4, 1, 2, 3)
    return grid.reshape(voxels.batch_size, channels * depth, height, width)


def _require(name: str):
    """Import ``name`` (onnx, onnxruntime), or say which extra installs it."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(f"{name} is not installed; install pointformer's 'export' extra "
                          f"(pip install -e '.[export]')") from error


@contextlib.contextmanager
def _scatter_max_as_one_node(opset: int):
    """Export ``scatter_reduce(..., "amax", include_self=True)`` as one ``ScatterElements``
    (reduction max) while the context lasts. The built-in symbolic wraps it in rank-0 ``If``
    branches whose outputs lose their rank, which breaks shape inference downstream."""
    from torch.onnx import symbolic_helper

    @symbolic_helper.parse_args("v", "i", "v", "v", "s", "b")
    def scatter_reduce(g, self, dim, index, src, reduce, include_self):
        if reduce != "amax" or not include_self:
            raise ValueError(f"export: only scatter_reduce 'amax' with include_self=True is supported, got "
                             f"{reduce!r}, include_self={include_self}")
        return g.op("ScatterElements", self, index, src, axis_i=dim, reduction_s="max")

    torch.onnx.register_custom_op_symbolic("aten::scatter_reduce", scatter_reduce, opset)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::scatter_reduce", opset)


def export_onnx(model: nn.Module, example_points: PointBatch, path: str | os.PathLike,
                opset: int = DEFAULT_OPSET) -> ExportedGraph:
    """Trace ``model`` (put in eval mode; a CPU copy is traced when it lives elsewhere) on
    ``example_points`` (one sample) into an ONNX file at ``path`` with dynamic points, voxels and
    groups, and check it with ``onnx.checker``."""
    onnx = _require("onnx")
    check_exportable(model)
    if isinstance(opset, bool) or not isinstance(opset, int) or not DEFAULT_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"export_onnx: opset must be an int in [{DEFAULT_OPSET}, {MAX_OPSET}] (ScatterElements max "
                         f"needs {DEFAULT_OPSET}; the TorchScript exporter stops at {MAX_OPSET}), got {opset!r}")
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"export_onnx: the folder of {str(path)!r} does not exist")
    model.eval()
    if any(tensor.device.type != "cpu" for tensor in [*model.parameters(), *model.buffers()]):
        model = copy.deepcopy(model).cpu()
    inputs = prepare_inputs(model, example_points)
    if inputs["coords"].shape[0] == 0:
        raise ValueError("export_onnx: example_points has no point inside the point cloud range")
    names_in = input_names(model)
    dynamic_axes = {"points": {0: "num_points"}, "point_to_voxel": {0: "num_points"}, "coords": {0: "num_voxels"}}
    for order in plan_orders(model):
        dynamic_axes[f"plan_{order}_index"] = {0: "num_slots"}
        dynamic_axes[f"plan_{order}_inverse"] = {0: "num_voxels"}
        if masks_padding(model):
            dynamic_axes[f"plan_{order}_padding"] = {0: "num_groups"}
    if isinstance(model, Segmentor):
        dynamic_axes["logits"] = {0: "num_points"}
    graph = GraphModule(model).eval()
    with torch.no_grad(), warnings.catch_warnings(), _scatter_max_as_one_node(opset):
        # The tracer warns about every Python-side check it evaluates once (see the module docstring).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # The TorchScript exporter announces its own deprecation (see the module docstring for the choice).
        for message in ("You are using the legacy TorchScript-based ONNX export", "The feature will be removed"):
            warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
        torch.onnx.export(graph, tuple(inputs[name] for name in names_in), str(path), input_names=list(names_in),
                          output_names=list(graph.output_names) or None, dynamic_axes=dynamic_axes,
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    if not isinstance(model, Segmentor):
        # A detector's map names are known once the trace has run the head.
        _rename_outputs(onnx, path, graph.output_names)
    onnx.checker.check_model(str(path))
    return ExportedGraph(path, names_in, graph.output_names, path.stat().st_size)


def _rename_outputs(onnx, path: Path, names: Sequence[str]) -> None:
    """Give the graph outputs of the ONNX file at ``path`` the ``names``, in order."""
    proto = onnx.load(str(path))
    renamed = {output.name: name for output, name in zip(proto.graph.output, names, strict=True)}
    for node in proto.graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
        node.output[:] = [renamed.get(name, name) for name in node.output]
    for output in proto.graph.output:
        output.name = renamed[output.name]
    onnx.save(proto, str(path))


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU ``InferenceSession`` for the graph at ``path`` (``threads``: intra-op threads)."""
    onnxruntime = _require("onnxruntime")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"onnx_session: no ONNX file at {str(path)!r}")
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(path, inputs: Mapping[str, torch.Tensor | np.ndarray]) -> list[np.ndarray]:
    """Run the graph (a path, or a session from ``onnx_session``) on ``prepare_inputs``' tensors;
    the outputs in the graph's order."""
    session = path if hasattr(path, "run") else onnx_session(path)
    wanted = [node.name for node in session.get_inputs()]
    missing = [name for name in wanted if name not in inputs]
    if missing:
        raise ValueError(f"run_onnx: inputs lack {missing}; the graph takes {wanted}")
    feed = {name: _numpy(inputs[name]) for name in wanted}
    return session.run(None, feed)


def _numpy(value: torch.Tensor | np.ndarray) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def pytorch_outputs(model: nn.Module, points: PointBatch) -> list[torch.Tensor]:
    """The PyTorch model's outputs on ``points`` in the graph's output order (a segmentor: the
    logits of the kept points), for comparing against ``run_onnx``."""
    model.eval()
    with torch.no_grad():
        if isinstance(model, Segmentor):
            return [model(points)[kept_points(model, points)]]
        return [tensor for task in model(points) for tensor in task.values()]


def head_outputs(names: Sequence[str], arrays: Sequence[np.ndarray]) -> list[dict[str, torch.Tensor]]:
    """Graph outputs ``name/task<i>`` back to the head's ``list[dict]`` (for ``head.predict``)."""
    if len(names) != len(arrays):
        raise ValueError(f"head_outputs: {len(names)} names for {len(arrays)} arrays")
    tasks: dict[int, dict[str, torch.Tensor]] = {}
    for name, array in zip(names, arrays):
        key, _, task = name.rpartition("/task")
        if not key or not task.isdigit():
            raise ValueError(f"head_outputs: output name {name!r} is not '<map>/task<i>'")
        tasks.setdefault(int(task), {})[key] = torch.from_numpy(np.asarray(array))
    return [tasks[i] for i in sorted(tasks)]


# ------------------------------------------------------------------ models to export

CHECKPOINT_KEYS = ("state_dict", "model_config", "class_names", "point_channels", "voxel_size", "point_cloud_range")


@dataclass(frozen=True)
class ModelDescription:
    """What builds a model: the ``Detector`` / ``Segmentor`` config (``{"type": "Detector" |
    "Segmentor", "encoder": ..., "backbone": ..., ...}``; without ``type`` a model whose head is a
    ``SegmentationHead`` is a segmentor), the class names (a segmentor: one per class), the point
    columns and the grid."""

    model_config: Mapping
    class_names: tuple[str, ...]
    point_channels: int
    voxel_size: tuple[float, ...]
    point_cloud_range: tuple[float, ...]

    @staticmethod
    def from_mapping(values: Mapping, where: str) -> ModelDescription:
        """From a checkpoint / config mapping with the keys of ``CHECKPOINT_KEYS`` but ``state_dict``."""
        if not isinstance(values, Mapping):
            raise TypeError(f"{where}: expected a mapping with keys {list(CHECKPOINT_KEYS[1:])}, "
                             f"got {type(values).__name__}")
        missing = [key for key in CHECKPOINT_KEYS[1:] if key not in values]
        if missing:
            raise ValueError(f"{where}: missing keys {missing}; expected {list(CHECKPOINT_KEYS[1:])}")
        config, names = values["model_config"], values["class_names"]
        if not isinstance(config, Mapping):
            raise TypeError(f"{where}: model_config must be a mapping, got {type(config).__name__}")
        if isinstance(names, str) or not all(isinstance(name, str) for name in names) or not names:
            raise ValueError(f"{where}: class_names must be a non-empty list of strings, got {names!r}")
        channels = values["point_channels"]
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 3:
            raise ValueError(f"{where}: point_channels must be an int >= 3, got {channels!r}")
        voxel_size, point_range = values["voxel_size"], values["point_cloud_range"]
        for key, value, count in (("voxel_size", voxel_size, 3), ("point_cloud_range", point_range, 6)):
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != count:
                raise ValueError(f"{where}: {key} must hold {count} numbers, got {value!r}")
        return ModelDescription(config, tuple(names), channels, tuple(float(v) for v in voxel_size),
                                tuple(float(v) for v in point_range))

    @property
    def is_segmentor(self) -> bool:
        kind = self.model_config.get("type")
        if kind is not None and kind not in ("Detector", "Segmentor"):
            raise ValueError(f"model_config.type must be 'Detector' or 'Segmentor', got {kind!r}")
        if kind is not None:
            return kind == "Segmentor"
        head = self.model_config.get("head")
        return isinstance(head, Mapping) and head.get("type") == "SegmentationHead"

    def build(self) -> nn.Module:
        """A freshly initialised model."""
        if self.is_segmentor:
            config = {key: value for key, value in self.model_config.items() if key != "type"}
            return Segmentor.from_config(config, len(self.class_names), self.point_channels, self.voxel_size,
                                         self.point_cloud_range)
        return Detector.from_config(self.model_config, self.class_names, self.point_channels, self.voxel_size,
                                    self.point_cloud_range)

    def to_mapping(self) -> dict:
        return {"model_config": dict(self.model_config), "class_names": list(self.class_names),
                "point_channels": self.point_channels, "voxel_size": list(self.voxel_size),
                "point_cloud_range": list(self.point_cloud_range)}


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint file's dict, read with ``torch.load(weights_only=True)``: tensors and plain
    containers only; clear errors for a missing, unsafe or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for files that are not (safe) checkpoints
        raise ValueError(f"checkpoint {path} could not be read with weights_only=True: {error}") from error
    if not isinstance(payload, dict):
        raise ValueError(f"checkpoint {path} holds a {type(payload).__name__}, not a checkpoint dict")
    return payload


def model_from_checkpoint(payload: Mapping[str, Any], where: str) -> tuple[nn.Module, ModelDescription]:
    """The model a checkpoint dict describes (``state_dict``, ``model_config``, ``class_names``,
    ``point_channels``, ``voxel_size``, ``point_cloud_range``), weights loaded strictly, in eval
    mode; ``where`` names the checkpoint in errors."""
    description = ModelDescription.from_mapping(payload, where)
    if not isinstance(payload.get("state_dict"), Mapping):
        raise TypeError(f"{where}: 'state_dict' must be a mapping of parameter tensors")
    model = description.build()
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as error:
        raise ValueError(f"{where}: the state_dict does not fit model_config: {error}") from error
    return model.eval(), description


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, ModelDescription]:
    """The model of a checkpoint file (see :func:`model_from_checkpoint`)."""
    return model_from_checkpoint(read_checkpoint(path), f"checkpoint {path}")


def synthetic_cloud(model: nn.Module, num_points: int = 180_000, seed: int = 0) -> PointBatch:
    """One sample of ``num_points`` points spread over the model's grid like a spinning LiDAR's
    returns (denser near the sensor: radius ~ max radius * u^2), z over the grid's height,
    further columns (intensity, ...) uniform in [0, 1)."""
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 0:
        raise ValueError(f"synthetic_cloud: num_points must be an int >= 0, got {num_points!r}")
    x0, y0, z0, x1, y1, z1 = model.encoder.grid.point_cloud_range
    rng = np.random.default_rng(seed)
    radius = min(x1 - x0, y1 - y0) / 2 * rng.uniform(0.0, 1.0, num_points) ** 2
    angle = rng.uniform(-np.pi, np.pi, num_points)
    cloud = rng.uniform(0.0, 1.0, (num_points, model.encoder.in_channels))
    cloud[:, 0] = (x0 + x1) / 2 + radius * np.cos(angle)
    cloud[:, 1] = (y0 + y1) / 2 + radius * np.sin(angle)
    cloud[:, 2] = rng.uniform(z0, z1, num_points)
    return PointBatch.from_list([torch.from_numpy(cloud.astype(np.float32))])

