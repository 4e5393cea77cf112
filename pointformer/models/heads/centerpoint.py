"""CenterPoint's centre-based 3D detection head (Yin et al. 2021; mmdetection3d ``CenterHead`` with
``CenterPointBBoxCoder``), with FlatFormer's IoU branch and score rectification.

One shared 3x3 conv, then per task (a group of classes) a ``SeparateHead``: a class heatmap and
the regression maps ``reg`` (sub-cell x/y offset), ``height`` (z of the centre of gravity),
``dim`` (log l, w, h), ``rot`` (sin, cos of yaw), ``vel`` (vx, vy) and optionally ``iou``.

BEV layout: maps are (B, C, H, W) with rows along y and columns along x of our frame. A box with
centre (x, y) falls in column ``floor((x - x_min) / (voxel_x * out_size_factor))`` and row
``floor((y - y_min) / (voxel_y * out_size_factor))``; its flat cell index is ``row * W + col`` and
its offset target the fractional part, so decoding ``(col + offset) * cell + x_min`` gives x back.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from pointformer.data.classes import NUSCENES_DETECTION_CLASSES, WAYMO_CLASSES
from pointformer.models.losses import clip_sigmoid, gaussian_focal_loss, weighted_l1_loss
from pointformer.ops import box_iou, nms_circle, nms_rotated
from pointformer.structures import Boxes3D, Detections
from pointformer.structures.rotation import normalize_yaw

logger = logging.getLogger(__name__)

NMS_TYPES = ("circle", "rotated", "none")
BOX_BRANCHES = (("reg", 2), ("height", 1), ("dim", 3), ("rot", 2))
VELOCITY_BRANCH = ("vel", 2)
LOG_SIZE_LIMIT = 20.0  # log-size predictions are clamped here before exp() for the IoU target only

NUSCENES_TASKS: tuple[tuple[str, ...], ...] = (
    ("car",), ("truck", "construction_vehicle"), ("bus", "trailer"), ("barrier",),
    ("motorcycle", "bicycle"), ("pedestrian", "traffic_cone"),
)


# --------------------------------------------------------------- heatmaps
def gaussian_radius(height: torch.Tensor, width: torch.Tensor, min_overlap: float = 0.5) -> torch.Tensor:
    """CenterNet's heatmap radius (in cells) of boxes ``height`` x ``width`` cells, elementwise.

    The smallest of the three values CenterNet derives from the corner-shift cases (both
    corners shifted out, both in, one each), with the expressions exactly as CenterNet,
    CenterPoint and mmdetection3d publish them: ``(b + sqrt(b^2 - 4 a c)) / 2`` for each
    quadratic ``(a, b, c)``. These are not the quadratics' roots, and the third value is
    always the smallest (it is at most (h + w)/4, the others at least (h + w)/2), so the
    published radius is the third one. Returns float64 of the broadcast shape.
    """
    if not 0.0 < min_overlap < 1.0:
        raise ValueError(f"gaussian_radius: min_overlap must lie in (0, 1), got {min_overlap}")
    height = torch.as_tensor(height, dtype=torch.float64)
    width = torch.as_tensor(width, dtype=torch.float64)
    if bool((height < 0).any()) or bool((width < 0).any()):
        raise ValueError("gaussian_radius: height and width must be >= 0")
    total, area = height + width, height * width
    b1, c1 = total, area * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1 * b1 - 4 * c1)) / 2
    b2, c2 = 2 * total, (1 - min_overlap) * area
    r2 = (b2 + torch.sqrt(b2 * b2 - 16 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * total, (min_overlap - 1) * area
    r3 = (b3 + torch.sqrt(b3 * b3 - 4 * a3 * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def gaussian_kernel(radius: int) -> torch.Tensor:
    """(2r+1, 2r+1) float64 Gaussian with sigma = diameter / 6 and peak 1; values below
    float64 eps times the peak are set to 0 (CenterNet's ``gaussian2D``)."""
    if radius < 0:
        raise ValueError(f"gaussian_kernel: radius must be >= 0, got {radius}")
    sigma = (2 * radius + 1) / 6
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma * sigma))
    kernel[kernel < torch.finfo(torch.float64).eps * kernel.max()] = 0
    return kernel


def draw_heatmap_gaussian(heatmap: torch.Tensor, column: int, row: int, radius: int) -> torch.Tensor:
    """Max-merge a Gaussian of ``radius`` cells centred on cell (row, column) into ``heatmap`` (H, W)
    in place, clipped at the map edges. Returns ``heatmap``."""
    if heatmap.dim() != 2:
        raise ValueError(f"draw_heatmap_gaussian: heatmap must be (H, W), got {tuple(heatmap.shape)}")
    height, width = heatmap.shape
    if not (0 <= column < width and 0 <= row < height):
        raise ValueError(f"draw_heatmap_gaussian: centre (row {row}, column {column}) outside the {height}x{width} map")
    kernel = gaussian_kernel(radius).to(heatmap)
    left, right = min(column, radius), min(width - column, radius + 1)
    top, bottom = min(row, radius), min(height - row, radius + 1)
    window = heatmap[row - top : row + bottom, column - left : column + right]
    patch = kernel[radius - top : radius + bottom, radius - left : radius + right]
    torch.maximum(window, patch, out=window)
    return heatmap


# ------------------------------------------------------------------ grid
@dataclass(frozen=True)
class BevGrid:
    """The output BEV grid: origin (x_min, y_min) in metres, cell size in metres, W x H cells."""

    x_min: float
    y_min: float
    cell_x: float
    cell_y: float
    width: int
    height: int

    @staticmethod
    def from_range(point_cloud_range: Sequence[float], voxel_size: Sequence[float], out_size_factor: int) -> BevGrid:
        if len(point_cloud_range) != 6:
            raise ValueError(f"point_cloud_range must be 6 numbers (x/y/z min, x/y/z max), got {point_cloud_range}")
        if len(voxel_size) < 2 or min(voxel_size[:2]) <= 0:
            raise ValueError(f"voxel_size must start with two positive sizes (x, y), got {voxel_size}")
        if int(out_size_factor) != out_size_factor or out_size_factor < 1:
            raise ValueError(f"out_size_factor must be a positive integer, got {out_size_factor}")
        x_min, y_min, _, x_max, y_max, _ = (float(v) for v in point_cloud_range)
        voxels_x = round((x_max - x_min) / voxel_size[0])
        voxels_y = round((y_max - y_min) / voxel_size[1])
        width, height = voxels_x // out_size_factor, voxels_y // out_size_factor
        if width < 1 or height < 1:
            raise ValueError(f"point_cloud_range {point_cloud_range} with voxel_size {voxel_size} and "
                             f"out_size_factor {out_size_factor} gives an empty {height}x{width} grid")
        factor = int(out_size_factor)
        return BevGrid(x_min, y_min, float(voxel_size[0]) * factor, float(voxel_size[1]) * factor, width, height)

    def to_cells(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Metres -> continuous (column, row) float64 cell coordinates. The origin is subtracted in
        the dtype of ``x`` and ``y`` (a float32 centre on ``x_min`` lands in column 0, as a float32
        range filter sees it), the division by the cell size is done in float64."""
        column = (x - torch.tensor(self.x_min, dtype=x.dtype)).double() / self.cell_x
        row = (y - torch.tensor(self.y_min, dtype=y.dtype)).double() / self.cell_y
        return column, row

    def to_metres(self, column: torch.Tensor, row: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous (column, row) cell coordinates -> metres."""
        return column * self.cell_x + self.x_min, row * self.cell_y + self.y_min


@dataclass
class TaskTargets:
    """Training targets of one task for a batch of B samples and M object slots per sample.

    heatmap (B, C_task, H, W) float32 in [0, 1], 1 exactly at object centre cells; boxes (B, M, D)
    regression codes (dx, dy, z, log l, log w, log h, sin, cos[, vx, vy]), NaN where unknown;
    indices (B, M) int64 flat cell ``row * W + column``; mask (B, M) bool, True where a slot
    holds an object. M is the most objects of the task in one sample (at least 1).
    """

    heatmap: torch.Tensor
    boxes: torch.Tensor
    indices: torch.Tensor
    mask: torch.Tensor


def gather_cells(maps: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """maps (B, D, H, W), cells (B, M) flat indices -> (B, M, D)."""
    batch, channels = maps.shape[:2]
    flat = maps.reshape(batch, channels, -1)
    return flat.gather(2, cells[:, None, :].expand(batch, channels, cells.shape[1])).transpose(1, 2)


# ---------------------------------------------------------------- modules
def _conv_norm_relu(in_channels: int, out_channels: int, kernel: int, eps: float, momentum: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels, eps=eps, momentum=momentum),
        nn.ReLU(inplace=True),
    )


class SeparateHead(nn.Module):
    """One task's branches: for each ``name -> (out_channels, num_convs)``, ``num_convs - 1``
    conv-BN-ReLU layers of ``head_conv`` channels and a final conv with bias. Regression
    branches get Kaiming-normal (fan-out) weights; the ``heatmap`` branch keeps PyTorch's default
    initialisation with its last bias at ``init_bias`` (OpenPCDet's rule), so every heatmap
    logit starts near ``init_bias``: Kaiming weights on the last conv spread the initial logits
    over several units and the focal loss starts in the hundreds."""

    def __init__(self, in_channels: int, branches: dict[str, tuple[int, int]], head_conv: int = 64,
                 final_kernel: int = 3, init_bias: float = -2.19, norm_eps: float = 1e-3, norm_momentum: float = 0.01):
        super().__init__()
        self.branches = nn.ModuleDict()
        for name, (out_channels, num_convs) in branches.items():
            if num_convs < 1 or out_channels < 1:
                raise ValueError(f"SeparateHead: branch {name!r} needs out_channels >= 1 and num_convs >= 1, "
                                 f"got {(out_channels, num_convs)}")
            layers: list[nn.Module] = []
            channels = in_channels
            for _ in range(num_convs - 1):
                layers.append(_conv_norm_relu(channels, head_conv, final_kernel, norm_eps, norm_momentum))
                channels = head_conv
            layers.append(nn.Conv2d(channels, out_channels, final_kernel, padding=final_kernel // 2, bias=True))
            self.branches[name] = nn.Sequential(*layers)
        for name, branch in self.branches.items():
            if name == "heatmap":
                continue
            for module in branch.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
        if "heatmap" in self.branches:
            nn.init.constant_(self.branches["heatmap"][-1].bias, init_bias)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: branch(features) for name, branch in self.branches.items()}


class CenterHead(nn.Module):
    """CenterPoint head: heatmaps and box regressions per task, their targets, losses and decoding.

    Constructor defaults follow mmdetection3d's CenterPoint nuScenes config (bbox loss weight
    0.25, min radius 2, code weights 1 x 8 + 0.2 x 2, top 500, rotated NMS 0.2 / 1000 / 83);
    :meth:`centerpoint_nuscenes` and :meth:`flatformer_waymo` build the published set-ups.

    Per-class settings (``nms_threshold``, ``pre_max_size``, ``post_max_size`` with per-class
    NMS, ``iou_pow``) are sequences indexed by the global class index of ``class_names``;
    ``circle_min_radius`` is one value per task, compared (as CenterPoint does) against the
    *squared* centre distance in m^2.
    """

    def __init__(
        self,
        in_channels: int,
        class_names: Sequence[str],
        tasks: Sequence[Sequence[str]],
        point_cloud_range: Sequence[float],
        voxel_size: Sequence[float],
        out_size_factor: int,
        with_velocity: bool = True,
        with_iou: bool = False,
        *,
        share_conv_channels: int = 64,
        head_conv: int = 64,
        num_branch_convs: int = 2,
        final_kernel: int = 3,
        init_bias: float = -2.19,
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.01,
        gaussian_overlap: float = 0.1,
        min_radius: int = 2,
        max_objs: int = 500,
        norm_bbox: bool = True,
        code_weights: Sequence[float] | None = None,
        heatmap_loss_weight: float = 1.0,
        bbox_loss_weight: float = 0.25,
        iou_loss_weight: float = 1.0,
        max_num: int = 500,
        score_threshold: float = 0.1,
        post_center_range: Sequence[float] | None = None,
        post_center_limit_range: Sequence[float] | None = None,
        iou_pow: float | Sequence[float] = 2.0,
        nms_type: str = "rotated",
        nms_threshold: float | Sequence[float] = 0.2,
        pre_max_size: int | Sequence[int] | None = 1000,
        post_max_size: int | Sequence[int] | None = 83,
        circle_min_radius: Sequence[float] | None = None,
    ):
        super().__init__()
        self.class_names = tuple(class_names)
        self.tasks = tuple(tuple(task) for task in tasks)
        self._check_tasks()
        self.grid = BevGrid.from_range(point_cloud_range, voxel_size, out_size_factor)
        self.with_velocity = bool(with_velocity)
        self.with_iou = bool(with_iou)
        self.code_size = 10 if self.with_velocity else 8
        self.box_dim = 9 if self.with_velocity else 7
        self.norm_bbox = bool(norm_bbox)
        self.gaussian_overlap = float(gaussian_overlap)
        self.min_radius = int(min_radius)
        self.max_objs = int(max_objs)
        if not 0.0 < self.gaussian_overlap < 1.0:
            raise ValueError(f"gaussian_overlap must lie in (0, 1), got {gaussian_overlap}")
        if self.min_radius < 0 or self.max_objs < 1:
            raise ValueError(f"min_radius must be >= 0 and max_objs >= 1, got {min_radius} and {max_objs}")
        self.code_weights = self._code_weights(code_weights)
        self.heatmap_loss_weight = float(heatmap_loss_weight)
        self.bbox_loss_weight = float(bbox_loss_weight)
        self.iou_loss_weight = float(iou_loss_weight)
        self.max_num = int(max_num)
        if self.max_num < 1:
            raise ValueError(f"max_num must be >= 1, got {max_num}")
        self.score_threshold = float(score_threshold)
        self.post_center_range = _optional_range(post_center_range, "post_center_range")
        self.post_center_limit_range = _optional_range(post_center_limit_range, "post_center_limit_range")
        self.iou_pow = self._per_class_or_scalar(iou_pow, "iou_pow", float)
        self._configure_nms(nms_type, nms_threshold, pre_max_size, post_max_size, circle_min_radius)

        class_task = torch.zeros(len(self.class_names), dtype=torch.int64)
        for task_id, task in enumerate(self.tasks):
            ids = torch.tensor([self.class_names.index(name) for name in task], dtype=torch.int64)
            class_task[ids] = task_id
            self.register_buffer(f"task_class_ids_{task_id}", ids, persistent=False)
        self.register_buffer("class_task", class_task, persistent=False)

        self.shared_conv = _conv_norm_relu(in_channels, share_conv_channels, 3, norm_eps, norm_momentum)
        nn.init.kaiming_normal_(self.shared_conv[0].weight, mode="fan_out", nonlinearity="relu")
        branches = {name: (channels, num_branch_convs) for name, channels in self.branch_channels().items()}
        self.task_heads = nn.ModuleList(
            SeparateHead(share_conv_channels, {**branches, "heatmap": (len(task), num_branch_convs)}, head_conv,
                         final_kernel, init_bias, norm_eps, norm_momentum)
            for task in self.tasks
        )

    # ------------------------------------------------------------ presets
    @classmethod
    def centerpoint_nuscenes(cls, in_channels: int = 512, **overrides: Any) -> CenterHead:
        """CenterPoint nuScenes (0.1 m voxels, stride 8): 6 tasks, velocity, circle NMS with the
        published per-task ``min_radius``, post 83, top 500, bbox loss 0.25, BN eps 1e-5."""
        settings: dict[str, Any] = dict(
            class_names=NUSCENES_DETECTION_CLASSES, tasks=NUSCENES_TASKS,
            point_cloud_range=(-51.2, -51.2, -5.0, 51.2, 51.2, 3.0), voxel_size=(0.1, 0.1, 0.2), out_size_factor=8,
            with_velocity=True, with_iou=False, norm_eps=1e-5, norm_momentum=0.1, min_radius=2,
            code_weights=(1.0,) * 8 + (0.2, 0.2), bbox_loss_weight=0.25, max_num=500, score_threshold=0.1,
            post_center_range=(-61.2, -61.2, -10.0, 61.2, 61.2, 10.0), nms_type="circle",
            circle_min_radius=(4.0, 12.0, 10.0, 1.0, 0.85, 0.175), pre_max_size=None, post_max_size=83,
        )
        return cls(in_channels, **{**settings, **overrides})

    @classmethod
    def flatformer_waymo(cls, in_channels: int = 256, **overrides: Any) -> CenterHead:
        """FlatFormer Waymo 3-class (0.32 m pillars, stride 1): one task, IoU branch, bbox loss 2,
        min radius 1, top 4096, per-class rotated NMS 0.8/0.55/0.55, pre 2048/1024/1024, post
        300/100/100, scores times IoU^2. Published code weights give velocity weight 0; here the
        velocity branch is left out unless ``with_velocity=True`` is passed."""
        with_velocity = bool(overrides.pop("with_velocity", False))
        settings: dict[str, Any] = dict(
            class_names=WAYMO_CLASSES, tasks=(WAYMO_CLASSES,),
            point_cloud_range=(-74.88, -74.88, -2.0, 74.88, 74.88, 4.0), voxel_size=(0.32, 0.32, 6.0),
            out_size_factor=1,
            with_velocity=with_velocity, with_iou=True, norm_eps=1e-3, norm_momentum=0.01, min_radius=1,
            code_weights=(1.0,) * 8 + ((0.0, 0.0) if with_velocity else ()), bbox_loss_weight=2.0, iou_loss_weight=1.0,
            max_num=4096, score_threshold=0.1, post_center_range=(-74.88, -74.88, -10.0, 74.88, 74.88, 10.0),
            post_center_limit_range=(-80.0, -80.0, -10.0, 80.0, 80.0, 10.0), iou_pow=2.0, nms_type="rotated",
            nms_threshold=(0.8, 0.55, 0.55), pre_max_size=(2048, 1024, 1024), post_max_size=(300, 100, 100),
        )
        return cls(in_channels, **{**settings, **overrides})

    # ------------------------------------------------------------ checks
    def _check_tasks(self) -> None:
        if not self.class_names or len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names must be non-empty and unique, got {self.class_names}")
        grouped = [name for task in self.tasks for name in task]
        if any(not task for task in self.tasks) or sorted(grouped) != sorted(self.class_names):
            raise ValueError(f"tasks must be non-empty groups covering every class name exactly once: "
                             f"tasks {self.tasks}, class_names {self.class_names}")

    def _code_weights(self, code_weights: Sequence[float] | None) -> tuple[float, ...]:
        if code_weights is None:
            return (1.0,) * 8 + ((0.2, 0.2) if self.with_velocity else ())
        weights = tuple(float(w) for w in code_weights)
        if len(weights) != self.code_size:
            raise ValueError(f"code_weights must have {self.code_size} entries (dx, dy, z, l, w, h, sin, cos"
                             f"{', vx, vy' if self.with_velocity else ''}), got {len(weights)}")
        return weights

    def _per_class_or_scalar(self, value, name: str, kind: type):
        if value is None or isinstance(value, numbers.Real):
            return None if value is None else kind(value)
        values = tuple(kind(v) for v in value)
        if len(values) != len(self.class_names):
            raise ValueError(f"{name} must be a number or one value per class ({len(self.class_names)}), got {value}")
        return values

    def _configure_nms(self, nms_type, nms_threshold, pre_max_size, post_max_size, circle_min_radius) -> None:
        if nms_type not in NMS_TYPES:
            raise ValueError(f"nms_type must be one of {NMS_TYPES}, got {nms_type!r}")
        self.nms_type = nms_type
        self.nms_threshold = self._per_class_or_scalar(nms_threshold, "nms_threshold", float)
        self.pre_max_size = self._per_class_or_scalar(pre_max_size, "pre_max_size", int)
        self.post_max_size = self._per_class_or_scalar(post_max_size, "post_max_size", int)
        self.circle_min_radius = None if circle_min_radius is None else tuple(float(r) for r in circle_min_radius)
        per_class = isinstance(self.nms_threshold, tuple)
        if nms_type == "rotated" and self.nms_threshold is None:
            raise ValueError("nms_type='rotated' needs an nms_threshold")
        if nms_type == "rotated" and not per_class:
            for name in ("pre_max_size", "post_max_size"):
                if isinstance(getattr(self, name), tuple):
                    raise ValueError(f"per-class {name} needs per-class nms_threshold (one per class)")
        if nms_type == "circle":
            if self.circle_min_radius is None or len(self.circle_min_radius) != len(self.tasks):
                raise ValueError(f"nms_type='circle' needs circle_min_radius with one value per task "
                                 f"({len(self.tasks)}), got {circle_min_radius}")
            for name in ("pre_max_size", "post_max_size"):
                if isinstance(getattr(self, name), tuple):
                    raise ValueError(f"nms_type='circle' needs a single {name}, got {getattr(self, name)}")

    def branch_channels(self) -> dict[str, int]:
        """Output channels of the regression branches of every task (the heatmap aside)."""
        channels = dict(BOX_BRANCHES)
        if self.with_velocity:
            channels[VELOCITY_BRANCH[0]] = VELOCITY_BRANCH[1]
        if self.with_iou:
            channels["iou"] = 1
        return channels

    def task_class_ids(self, task_id: int) -> torch.Tensor:
        """int64 (C_task,) global class index of each heatmap channel of task ``task_id``."""
        return getattr(self, f"task_class_ids_{task_id}")

    def _check_preds(self, preds: Sequence[dict[str, torch.Tensor]]) -> None:
        if len(preds) != len(self.tasks):
            raise ValueError(f"preds must hold one dict per task ({len(self.tasks)}), got {len(preds)}")
        size = (self.grid.height, self.grid.width)
        batch = None
        for task_id, (pred, task) in enumerate(zip(preds, self.tasks)):
            for name, channels in {**self.branch_channels(), "heatmap": len(task)}.items():
                if name not in pred:
                    raise ValueError(f"preds[{task_id}] lacks {name!r}")
                shape = tuple(pred[name].shape)
                batch = shape[0] if batch is None else batch
                if len(shape) != 4 or shape[0] != batch or shape[1] != channels or shape[2:] != size:
                    raise ValueError(f"preds[{task_id}][{name!r}] must be ({batch}, {channels}, {size[0]}, {size[1]}), "
                                     f"got {shape}")

    # ------------------------------------------------------------ forward
    def forward(self, bev: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """bev (B, in_channels, H, W) -> one dict per task: ``heatmap`` (B, C_task, H, W) logits,
        ``reg`` (B, 2, H, W), ``height`` (B, 1, ...), ``dim`` (B, 3, ...), ``rot`` (B, 2, ...),
        ``vel`` (B, 2, ...) with velocity, ``iou`` (B, 1, ...) with the IoU branch."""
        size = (self.grid.height, self.grid.width)
        if bev.dim() != 4 or tuple(bev.shape[2:]) != size:
            raise ValueError(f"CenterHead.forward: bev must be (B, C, {size[0]}, {size[1]}) for the grid of "
                             f"point_cloud_range / voxel_size / out_size_factor, got {tuple(bev.shape)}")
        shared = self.shared_conv(bev)
        return [head(shared) for head in self.task_heads]

    # ------------------------------------------------------------ targets
    def get_targets(self, gt_boxes: Sequence[Boxes3D], gt_labels: Sequence[torch.Tensor]) -> list[TaskTargets]:
        """Heatmaps and regression targets of every task for a batch (see :class:`TaskTargets`).

        gt_boxes: per sample ``Boxes3D`` (N, 7|9); gt_labels: per sample int64 (N,) indices into
        ``class_names``. Boxes whose centre lies outside the grid or with zero length or width
        are left out; past ``max_objs`` per task and sample the rest are left out (logged).
        """
        if len(gt_boxes) != len(gt_labels):
            raise ValueError(f"gt_boxes ({len(gt_boxes)} samples) and gt_labels ({len(gt_labels)}) differ in length")
        device = self.class_task.device
        per_sample = [self._sample_targets(boxes, labels, index) for index, (boxes, labels)
                      in enumerate(zip(gt_boxes, gt_labels))]
        return [self._stack_task(task_id, [sample[task_id] for sample in per_sample], device)
                for task_id in range(len(self.tasks))]

    def _sample_targets(self, boxes: Boxes3D, labels: torch.Tensor, sample: int):
        """Per task: heatmap (C_task, H, W), codes (n, D) float64, cells (n,) int64, on the CPU."""
        given = (boxes.tensor if isinstance(boxes, Boxes3D) else torch.as_tensor(boxes)).detach().cpu()
        if not given.is_floating_point():
            given = given.double()
        tensor = given.to(torch.float64)
        labels = torch.as_tensor(labels).detach().to("cpu")
        if tensor.dim() != 2 or tensor.shape[1] not in (7, 9):
            raise ValueError(f"gt_boxes[{sample}] must be (N, 7|9), got {tuple(tensor.shape)}")
        if labels.shape != (tensor.shape[0],) or labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"gt_labels[{sample}] must be integer ({tensor.shape[0]},), got {labels.dtype} "
                             f"{tuple(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(self.class_names)):
            raise ValueError(f"gt_labels[{sample}] must lie in [0, {len(self.class_names)}), got "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        if not bool(torch.isfinite(tensor[:, :7]).all()):
            raise ValueError(f"gt_boxes[{sample}]: x, y, z, l, w, h, yaw must be finite")
        column_f, row_f = self.grid.to_cells(given[:, 0], given[:, 1])
        column, row = torch.floor(column_f).long(), torch.floor(row_f).long()
        inside = (column >= 0) & (column < self.grid.width) & (row >= 0) & (row < self.grid.height)
        usable = inside & (tensor[:, 3] > 0) & (tensor[:, 4] > 0)
        if not bool(usable.all()):
            logger.debug("sample %d: %d of %d boxes left out of the targets (centre outside the grid or zero size)",
                         sample, int((~usable).sum()), len(usable))
        radius = gaussian_radius(tensor[:, 3] / self.grid.cell_x, tensor[:, 4] / self.grid.cell_y,
                                 self.gaussian_overlap)
        radius = torch.clamp(torch.floor(radius).long(), min=self.min_radius)
        codes = self._encode(tensor, column_f - column, row_f - row)
        task_of_box = self.class_task.cpu()[labels.long()]
        result = []
        for task_id, task in enumerate(self.tasks):
            chosen = torch.nonzero(usable & (task_of_box == task_id)).reshape(-1)
            if len(chosen) > self.max_objs:
                logger.warning("sample %d task %d: %d boxes, only the first max_objs=%d are trained on",
                               sample, task_id, len(chosen), self.max_objs)
                chosen = chosen[: self.max_objs]
            channel_of_class = {int(c): i for i, c in enumerate(self.task_class_ids(task_id).tolist())}
            heatmap = torch.zeros((len(task), self.grid.height, self.grid.width), dtype=torch.float32)
            for box in chosen.tolist():
                channel = channel_of_class[int(labels[box])]
                draw_heatmap_gaussian(heatmap[channel], int(column[box]), int(row[box]), int(radius[box]))
            result.append((heatmap, codes[chosen], row[chosen] * self.grid.width + column[chosen]))
        return result

    def _encode(self, tensor: torch.Tensor, offset_x: torch.Tensor, offset_y: torch.Tensor) -> torch.Tensor:
        """(N, 7|9) float64 boxes and their sub-cell offsets -> (N, code_size) regression codes."""
        dims = tensor[:, 3:6].log() if self.norm_bbox else tensor[:, 3:6]
        yaw = tensor[:, 6]
        columns = [offset_x[:, None], offset_y[:, None], tensor[:, 2:3], dims, yaw.sin()[:, None], yaw.cos()[:, None]]
        if self.with_velocity:
            velocity = tensor[:, 7:9] if tensor.shape[1] == 9 else torch.full_like(tensor[:, :2], float("nan"))
            columns.append(velocity)
        return torch.cat(columns, dim=1)

    def _stack_task(self, task_id: int, samples, device: torch.device) -> TaskTargets:
        slots = max([1] + [len(cells) for _, _, cells in samples])
        batch = len(samples)
        boxes = torch.zeros((batch, slots, self.code_size), dtype=torch.float32)
        indices = torch.zeros((batch, slots), dtype=torch.int64)
        mask = torch.zeros((batch, slots), dtype=torch.bool)
        for index, (_, codes, cells) in enumerate(samples):
            boxes[index, : len(cells)] = codes.float()
            indices[index, : len(cells)] = cells
            mask[index, : len(cells)] = True
        if samples:
            heatmap = torch.stack([heatmap for heatmap, _, _ in samples])
        else:
            heatmap = torch.zeros((0, len(self.tasks[task_id]), self.grid.height, self.grid.width))
        return TaskTargets(heatmap.to(device), boxes.to(device), indices.to(device), mask.to(device))

    # ------------------------------------------------------------ loss
    def loss(self, preds: Sequence[dict[str, torch.Tensor]], gt_boxes: Sequence[Boxes3D],
             gt_labels: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Scalar losses: ``heatmap/task{i}`` (Gaussian focal), ``bbox/task{i}`` (weighted L1),
        ``iou/task{i}`` (with the IoU branch) and their sum ``loss``."""
        self._check_preds(preds)
        batch = preds[0]["heatmap"].shape[0]
        if len(gt_boxes) != batch:
            raise ValueError(f"gt_boxes has {len(gt_boxes)} samples, preds {batch}")
        targets = self.get_targets(gt_boxes, gt_labels)
        balance = self._rank_balance(targets, preds[0]["heatmap"].device)
        terms: dict[str, torch.Tensor] = {}
        for task_id, (pred, target) in enumerate(zip(preds, targets)):
            device = pred["heatmap"].device
            heatmap = clip_sigmoid(pred["heatmap"].float())
            terms[f"heatmap/task{task_id}"] = self.heatmap_loss_weight * gaussian_focal_loss(
                heatmap, target.heatmap.to(device)) * balance[task_id, 0]
            codes = gather_cells(self._regression_map(pred).float(), target.indices.to(device))
            terms[f"bbox/task{task_id}"] = self.bbox_loss_weight * weighted_l1_loss(
                codes, target.boxes.to(device), target.mask.to(device), self.code_weights) * balance[task_id, 1]
            if self.with_iou:
                predicted_iou = gather_cells(pred["iou"].float(), target.indices.to(device))[..., 0]
                terms[f"iou/task{task_id}"] = self.iou_loss_weight * self._iou_loss(
                    codes, predicted_iou, target) * balance[task_id, 1]
        terms["loss"] = torch.stack(list(terms.values())).sum()
        return terms

    def _rank_balance(self, targets: Sequence[TaskTargets], device: torch.device) -> torch.Tensor:
        """(T, 2) float32 factors for each task's heatmap and box (and IoU) losses.

        The losses divide by this process's positives (``max(P, 1)``) and objects (``M + 1e-4``).
        Under DDP, training, each factor turns that normaliser into the global one over the world
        size (``max(sum P, 1) / W``, ``(sum M + 1e-4) / W``), so that DDP's gradient average equals
        one process on the global batch. Ones outside DDP training (no collective is run)."""
        ones = torch.ones((len(targets), 2), dtype=torch.float32, device=device)
        if not (self.training and torch.is_grad_enabled() and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return ones
        counts = torch.tensor([[float(t.heatmap.eq(1).sum()), float(t.mask.sum())] for t in targets],
                              dtype=torch.float64, device=device)
        totals = counts.clone()
        dist.all_reduce(totals)
        world = dist.get_world_size()
        local = torch.stack([counts[:, 0].clamp(min=1.0), counts[:, 1] + 1e-4], dim=1)
        global_mean = torch.stack([totals[:, 0].clamp(min=1.0), totals[:, 1] + 1e-4], dim=1) / world
        return (local / global_mean).float()

    def _regression_map(self, pred: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, code_size, H, W) in code order: reg, height, dim, rot[, vel]."""
        names = [name for name, _ in BOX_BRANCHES] + ([VELOCITY_BRANCH[0]] if self.with_velocity else [])
        return torch.cat([pred[name] for name in names], dim=1)

    def _iou_loss(self, codes: torch.Tensor, predicted_iou: torch.Tensor, target: TaskTargets) -> torch.Tensor:
        """L1 between the IoU branch and the 3D IoU of each decoded prediction with its ground truth,
        over object slots, divided by the number of objects (+1e-4)."""
        mask = target.mask.to(codes.device)
        cells = target.indices.to(codes.device)[mask]
        with torch.no_grad():
            predicted_codes = codes.detach()[mask].clone()
            predicted_codes[:, 3:6] = predicted_codes[:, 3:6].clamp(max=LOG_SIZE_LIMIT)
            predicted = self.codes_to_boxes(predicted_codes, cells)
            truth = self.codes_to_boxes(target.boxes.to(codes.device)[mask], cells)
            iou = box_iou(predicted[:, :7], truth[:, :7], mode="3d", aligned=True).to(codes.dtype)
        return (predicted_iou[mask] - iou).abs().sum() / (mask.sum() + 1e-4)

    # ------------------------------------------------------------ decode
    def codes_to_boxes(self, codes: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """codes (..., code_size) at flat cells (...) -> boxes (..., 7|9) in metres (inverse of the
        target encoding)."""
        column = (cells % self.grid.width).to(codes.dtype) + codes[..., 0]
        row = torch.div(cells, self.grid.width, rounding_mode="floor").to(codes.dtype) + codes[..., 1]
        x, y = self.grid.to_metres(column, row)
        dims = codes[..., 3:6].exp() if self.norm_bbox else codes[..., 3:6]
        yaw = normalize_yaw(torch.atan2(codes[..., 6], codes[..., 7]))
        columns = [x[..., None], y[..., None], codes[..., 2:3], dims, yaw[..., None]]
        if self.with_velocity:
            columns.append(codes[..., 8:10])
        return torch.cat(columns, dim=-1)

    @torch.no_grad()
    def decode(self, preds: Sequence[dict[str, torch.Tensor]]) -> list[Detections]:
        """Candidates before NMS, one ``Detections`` per sample (tasks concatenated): per task the
        top ``max_num`` (class, cell) scores of the sigmoid heatmap (rectified by the IoU branch
        when present), kept where score > ``score_threshold`` and the centre lies in
        ``post_center_range``; labels are global class indices."""
        self._check_preds(preds)
        per_task = [self._decode_task(task_id, pred) for task_id, pred in enumerate(preds)]
        batch = preds[0]["heatmap"].shape[0]
        return [
            Detections(Boxes3D(torch.cat([task[sample][0] for task in per_task])),
                       torch.cat([task[sample][1] for task in per_task]),
                       torch.cat([task[sample][2] for task in per_task]))
            for sample in range(batch)
        ]

    def _decode_task(self, task_id: int, pred: dict[str, torch.Tensor]):
        scores = pred["heatmap"].float().sigmoid()
        if self.with_iou:
            scores = self._rectify(task_id, scores, pred["iou"].float())
        batch, classes, height, width = scores.shape
        count = min(self.max_num, classes * height * width)
        top_scores, top_index = scores.reshape(batch, -1).topk(count, dim=1)
        channel = torch.div(top_index, height * width, rounding_mode="floor")
        cells = top_index % (height * width)
        boxes = self.codes_to_boxes(gather_cells(self._regression_map(pred).float(), cells), cells)
        labels = self.task_class_ids(task_id).to(scores.device)[channel]
        keep = top_scores > self.score_threshold
        if self.post_center_range is not None:
            keep &= _centres_inside(boxes, self.post_center_range)
        return [(boxes[b][keep[b]], top_scores[b][keep[b]], labels[b][keep[b]]) for b in range(batch)]

    def _rectify(self, task_id: int, scores: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
        """FlatFormer's score rectification with the IoU branch clamped to [0, 1]: a single
        ``iou_pow`` p gives ``score * iou^p``; per-class a gives ``score^(1-a) * iou^a``."""
        iou = iou.clamp(0.0, 1.0)
        if isinstance(self.iou_pow, float):
            return scores * iou.pow(self.iou_pow)
        power = torch.tensor(self.iou_pow, dtype=scores.dtype, device=scores.device)
        power = power[self.task_class_ids(task_id).to(scores.device)].reshape(1, -1, 1, 1)
        return scores.pow(1 - power) * iou.pow(power)

    # ------------------------------------------------------------ predict
    @torch.no_grad()
    def predict(self, preds: Sequence[dict[str, torch.Tensor]]) -> list[Detections]:
        """Final detections per sample: :meth:`decode`, NMS per task (``nms_type``), then the
        ``post_center_limit_range`` filter. Boxes (K, 9) with velocity, else (K, 7)."""
        return [self._suppress(candidates) for candidates in self.decode(preds)]

    def _suppress(self, candidates: Detections) -> Detections:
        kept = []
        for task_id in range(len(self.tasks)):
            in_task = torch.nonzero(self.class_task.to(candidates.labels.device)[candidates.labels] == task_id)
            in_task = in_task.reshape(-1)
            kept.append(in_task[self.task_nms(task_id, candidates.select(in_task))])
        result = candidates.select(torch.cat(kept)) if kept else candidates
        if self.post_center_limit_range is not None:
            result = result.select(_centres_inside(result.boxes.tensor, self.post_center_limit_range))
        return result

    def task_nms(self, task_id: int, detections: Detections) -> torch.Tensor:
        """int64 indices into ``detections`` (one task's candidates) that survive NMS."""
        count = len(detections)
        if self.nms_type == "none" or count == 0:
            return torch.arange(count, device=detections.scores.device)
        if self.nms_type == "circle":
            return nms_circle(detections.boxes, detections.scores, self.circle_min_radius[task_id],
                              pre_max_size=self.pre_max_size, post_max_size=self.post_max_size)
        if not isinstance(self.nms_threshold, tuple):
            return nms_rotated(detections.boxes, detections.scores, self.nms_threshold,
                               pre_max_size=self.pre_max_size, post_max_size=self.post_max_size)
        kept = []
        for class_id in self.task_class_ids(task_id).tolist():
            of_class = torch.nonzero(detections.labels == class_id).reshape(-1)
            if len(of_class) == 0:
                continue
            keep = nms_rotated(Boxes3D(detections.boxes.tensor[of_class]), detections.scores[of_class],
                               self.nms_threshold[class_id], pre_max_size=_at(self.pre_max_size, class_id),
                               post_max_size=_at(self.post_max_size, class_id))
            kept.append(of_class[keep])
        return torch.cat(kept) if kept else torch.zeros(0, dtype=torch.int64, device=detections.scores.device)


def _at(value: int | tuple[int, ...] | None, index: int) -> int | None:
    return value[index] if isinstance(value, tuple) else value


def _optional_range(value: Sequence[float] | None, name: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    bounds = tuple(float(v) for v in value)
    if len(bounds) != 6 or any(lo > hi for lo, hi in zip(bounds[:3], bounds[3:])) or any(map(math.isnan, bounds)):
        raise ValueError(f"{name} must be (x_min, y_min, z_min, x_max, y_max, z_max) with min <= max, got {value}")
    return bounds


def _centres_inside(boxes: torch.Tensor, bounds: tuple[float, ...]) -> torch.Tensor:
    """(..., 7+) boxes -> (...) bool: centre within [min, max] on x, y and z (inclusive)."""
    low = torch.tensor(bounds[:3], dtype=boxes.dtype, device=boxes.device)
    high = torch.tensor(bounds[3:], dtype=boxes.dtype, device=boxes.device)
    centres = boxes[..., :3]
    return ((centres >= low) & (centres <= high)).all(dim=-1)
