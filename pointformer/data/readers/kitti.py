"""KITTI 3D object detection: ``velodyne`` + ``label_2`` + ``calib`` -> ``SampleInfo`` records,
and the way back (boxes in our frame -> ``label_2`` lines) for results in KITTI format.

Layout (OpenPCDet / mmdetection3d)::

    root/training/{velodyne/*.bin, label_2/*.txt, calib/*.txt, image_2/*.png (optional)}
    root/testing/{velodyne, calib, image_2}
    root/ImageSets/{train,val,trainval,test}.txt   (optional)

Boxes: ``label_2`` gives the bottom centre in the rectified camera-0 frame, (h, w, l) and the
yaw ``rotation_y`` about the camera's y axis; they become LiDAR-frame boxes through
``velo_to_rect = R0_rect @ Tr_velo_to_cam`` (:meth:`Boxes3D.from_kitti_camera`).

DontCare: like OpenPCDet and mmdetection3d (which drop them from the training targets but keep
them for evaluation), DontCare lines are not boxes of ``annotations``; their 2D regions are kept
in ``meta['kitti']['dontcare']`` for the KITTI evaluation.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from pointformer.data.infos import PointSource, SampleInfo
from pointformer.data.readers.base import LazyFrameReader
from pointformer.data.readers.files import KITTI_COLUMNS, count_points_in_boxes, read_raw_bin
from pointformer.structures import Boxes3D
from pointformer.structures.boxes import camera_rotation_y
from pointformer.structures.rotation import normalize_yaw

KITTI_FOLDERS: tuple[str, ...] = ("training", "testing")
DONT_CARE = "DontCare"


# ------------------------------------------------------------------ calibration
@dataclass
class KittiCalib:
    """One frame's calibration: ``P2`` (3, 4) projects rectified camera-0 coordinates into the
    left colour image; ``R0_rect`` (3, 3) rectifies camera 0; ``Tr_velo_to_cam`` (3, 4) takes
    LiDAR points into camera 0. All float64."""

    P2: np.ndarray
    R0_rect: np.ndarray
    Tr_velo_to_cam: np.ndarray

    @property
    def velo_to_rect(self) -> np.ndarray:
        """(4, 4) LiDAR -> rectified camera: ``R0_rect @ Tr_velo_to_cam``."""
        return _as_4x4(self.R0_rect) @ _as_4x4(self.Tr_velo_to_cam)

    def to_meta(self) -> dict[str, list[list[float]]]:
        """The three matrices as 4x4 nested lists (OpenPCDet's extended form)."""
        return {name: _as_4x4(getattr(self, name)).tolist() for name in ("P2", "R0_rect", "Tr_velo_to_cam")}

    @staticmethod
    def from_meta(record: dict[str, Any]) -> "KittiCalib":
        return KittiCalib(
            np.asarray(record["P2"], dtype=np.float64)[:3, :4],
            np.asarray(record["R0_rect"], dtype=np.float64)[:3, :3],
            np.asarray(record["Tr_velo_to_cam"], dtype=np.float64)[:3, :4],
        )

    def project_rect(self, xyz_rect: np.ndarray, min_depth: float = 1e-3) -> np.ndarray:
        """(N, 3) rectified camera coordinates -> (N, 2) pixels (u, v). Depths below
        ``min_depth`` are clamped so points behind the camera land far outside the image."""
        xyz_rect = np.asarray(xyz_rect, dtype=np.float64).reshape(-1, 3)
        uvw = np.concatenate([xyz_rect, np.ones((len(xyz_rect), 1))], axis=1) @ self.P2.T
        return uvw[:, :2] / np.maximum(uvw[:, 2:3], min_depth)


def _as_4x4(matrix: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    matrix = np.asarray(matrix, dtype=np.float64)
    out[: matrix.shape[0], : matrix.shape[1]] = matrix
    return out


# Key names in object-detection calib files, with the tracking benchmark's spellings as aliases.
_CALIB_KEYS: dict[str, tuple[tuple[str, ...], tuple[int, int]]] = {
    "P2": (("P2",), (3, 4)),
    "R0_rect": (("R0_rect", "R_rect"), (3, 3)),
    "Tr_velo_to_cam": (("Tr_velo_to_cam", "Tr_velo_cam"), (3, 4)),
}


def read_kitti_calib(path: str | os.PathLike) -> KittiCalib:
    """A KITTI ``calib/<id>.txt`` (``KEY: v v v ...`` lines) -> ``KittiCalib``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"KITTI calibration {path} not found")
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if ":" in line:
            key, text = line.split(":", 1)
            values[key.strip()] = text
    matrices = {}
    for name, (aliases, shape) in _CALIB_KEYS.items():
        key = next((a for a in aliases if a in values), None)
        if key is None:
            raise ValueError(f"{path}: calibration has no {name} line (keys: {sorted(values)})")
        try:
            numbers = np.array([float(v) for v in values[key].split()], dtype=np.float64)
        except ValueError as error:
            raise ValueError(f"{path}: {key} is not a list of numbers ({error})") from error
        if numbers.size != shape[0] * shape[1] or not np.isfinite(numbers).all():
            raise ValueError(f"{path}: {key} has {numbers.size} values (finite?), expected {shape[0] * shape[1]}")
        matrices[name] = numbers.reshape(shape)
    return KittiCalib(**matrices)


# ------------------------------------------------------------------ label_2
@dataclass
class KittiObject:
    """One ``label_2`` line. ``bbox``: (x1, y1, x2, y2) pixels in image_2; ``location``: bottom
    centre in the rectified camera frame (m); ``rotation_y``: yaw about the camera y axis;
    ``score``: the optional 16th column of result files."""

    type: str
    truncated: float
    occluded: int
    alpha: float
    bbox: tuple[float, float, float, float]
    dimensions_hwl: tuple[float, float, float]
    location: tuple[float, float, float]
    rotation_y: float
    score: float | None = None

    def to_line(self, decimals: int = 4) -> str:
        """The object as one ``label_2`` line (15 columns, 16 with a score)."""
        f = f"{{:.{decimals}f}}"
        numbers = [*self.bbox, *self.dimensions_hwl, *self.location, self.rotation_y]
        words = [self.type, f"{self.truncated:.2f}", str(int(self.occluded)), f.format(self.alpha)]
        words += [f.format(v) for v in numbers]
        if self.score is not None:
            words.append(f.format(self.score))
        return " ".join(words)


def parse_kitti_label_line(line: str, where: str = "") -> KittiObject:
    """One ``label_2`` line -> ``KittiObject``; ``where`` (``file:line``) prefixes any error."""
    words = line.split()
    if len(words) not in (15, 16):
        raise ValueError(f"{where}: {len(words)} columns, expected 15 (16 with a score): {line.strip()!r}")
    try:
        numbers = [float(w) for w in words[1:]]
    except ValueError as error:
        raise ValueError(f"{where}: non-numeric value ({error}): {line.strip()!r}") from error
    if not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"{where}: non-finite value: {line.strip()!r}")
    if not numbers[1].is_integer():
        raise ValueError(f"{where}: occluded must be an integer, got {words[2]!r}")
    obj = KittiObject(
        type=words[0],
        truncated=numbers[0],
        occluded=int(numbers[1]),
        alpha=numbers[2],
        bbox=tuple(numbers[3:7]),
        dimensions_hwl=tuple(numbers[7:10]),
        location=tuple(numbers[10:13]),
        rotation_y=numbers[13],
        score=numbers[14] if len(numbers) == 15 else None,
    )
    if obj.type != DONT_CARE and min(obj.dimensions_hwl) <= 0:
        raise ValueError(f"{where}: {obj.type} box has non-positive size (h, w, l) = {obj.dimensions_hwl}")
    return obj


def read_kitti_labels(path: str | os.PathLike) -> list[KittiObject]:
    """Every non-empty line of a ``label_2`` file, DontCare included, in file order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"KITTI label file {path} not found")
    lines = path.read_text().splitlines()
    return [parse_kitti_label_line(line, f"{path}:{n}") for n, line in enumerate(lines, 1) if line.strip()]


def write_kitti_labels(path: str | os.PathLike, objects: Sequence[KittiObject], decimals: int = 4) -> None:
    """Write objects as a ``label_2`` file (an empty file when there are none)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(obj.to_line(decimals) + "\n" for obj in objects))


def image_boxes(boxes: Boxes3D, calib: KittiCalib, image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """(N, 4) image_2 boxes (x1, y1, x2, y2) around the projected corners of LiDAR-frame boxes,
    clipped to ``image_shape`` (h, w) when given (OpenPCDet's rule: to [0, w-1] x [0, h-1])."""
    if len(boxes) == 0:
        return np.zeros((0, 4))
    corners = boxes.corners().detach().cpu().to(torch.float64).numpy().reshape(-1, 3)
    rect = corners @ calib.velo_to_rect[:3, :3].T + calib.velo_to_rect[:3, 3]
    uv = calib.project_rect(rect).reshape(len(boxes), 8, 2)
    out = np.concatenate([uv.min(axis=1), uv.max(axis=1)], axis=1)
    if image_shape is not None:
        height, width = image_shape
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width - 1)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height - 1)
    return out


def kitti_objects_from_boxes(
    boxes: Boxes3D,
    names: Sequence[str],
    calib: KittiCalib,
    *,
    scores: Sequence[float] | None = None,
    image_shape: tuple[int, int] | None = None,
    bbox: np.ndarray | None = None,
    truncated: Sequence[float] | None = None,
    occluded: Sequence[int] | None = None,
) -> list[KittiObject]:
    """Boxes in our LiDAR frame -> ``label_2`` objects (results: pass ``scores``).

    Location and size invert :meth:`Boxes3D.from_kitti_camera`; ``rotation_y`` is
    :func:`camera_rotation_y`; alpha = rotation_y - atan2(x, z) of the location (KITTI's
    observation angle); ``bbox`` defaults to :func:`image_boxes`. ``truncated`` / ``occluded``
    default to -1, as in result files.
    """
    n = len(boxes)
    if len(names) != n or (scores is not None and len(scores) != n):
        raise ValueError(f"{n} boxes but {len(names)} names and {None if scores is None else len(scores)} scores")
    camera = boxes.to_kitti_camera(calib.velo_to_rect)
    rotation_y = camera_rotation_y(boxes.yaw.detach().cpu().to(torch.float64).numpy(), calib.velo_to_rect)
    location = camera["location"]
    alpha = normalize_yaw(rotation_y - np.arctan2(location[:, 0], location[:, 2]))
    bbox = image_boxes(boxes, calib, image_shape) if bbox is None else np.asarray(bbox, dtype=np.float64).reshape(n, 4)
    truncated = [-1.0] * n if truncated is None else list(truncated)
    occluded = [-1] * n if occluded is None else list(occluded)
    return [
        KittiObject(
            type=names[i],
            truncated=float(truncated[i]),
            occluded=int(occluded[i]),
            alpha=float(alpha[i]),
            bbox=tuple(float(v) for v in bbox[i]),
            dimensions_hwl=tuple(float(v) for v in camera["dims_hwl"][i]),
            location=tuple(float(v) for v in location[i]),
            rotation_y=float(rotation_y[i]),
            score=None if scores is None else float(scores[i]),
        )
        for i in range(n)
    ]


def objects_record(objects: Sequence[KittiObject]) -> dict[str, list]:
    """Column lists (JSON-able) of objects: type, truncated, occluded, alpha, bbox,
    dimensions_hwl, location, rotation_y (and score when every object has one)."""
    record: dict[str, list] = {
        "type": [o.type for o in objects],
        "truncated": [o.truncated for o in objects],
        "occluded": [o.occluded for o in objects],
        "alpha": [o.alpha for o in objects],
        "bbox": [list(o.bbox) for o in objects],
        "dimensions_hwl": [list(o.dimensions_hwl) for o in objects],
        "location": [list(o.location) for o in objects],
        "rotation_y": [o.rotation_y for o in objects],
    }
    if objects and all(o.score is not None for o in objects):
        record["score"] = [o.score for o in objects]
    return record


def read_png_shape(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of a PNG from its IHDR chunk, without decoding the image."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path}: not a PNG image")
    width, height = struct.unpack(">II", head[16:24])
    return int(height), int(width)


# ------------------------------------------------------------------ the reader
class KittiReader(LazyFrameReader):
    """KITTI object detection frames as ``SampleInfo`` records.

    ``split``: ``training`` / ``testing`` (every velodyne file of that folder) or the name of an
    ``ImageSets/<split>.txt`` file (``train``, ``val``, ``trainval`` read ``training/``; ``test``
    reads ``testing/``). ``ids``: explicit frame ids, overriding the split's list.
    ``count_points``: fill ``num_points`` with the velodyne points inside each box (the full
    cloud, not only the camera's field of view); otherwise -1.

    Records: dataset ``kitti``, boxes (M, 7) in the LiDAR frame, ``names`` the KITTI types
    (``Car``, ``Pedestrian`` ...). ``meta['kitti']`` holds ``calib`` (P2, R0_rect,
    Tr_velo_to_cam as 4x4 lists), ``image_shape`` ([h, w] of image_2, None without the image),
    ``objects`` (the label_2 columns of each annotation, same order) and ``dontcare`` (the same
    columns for the DontCare regions). Frames of a folder without ``label_2`` are unlabelled.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "training",
        ids: Sequence[str] | None = None,
        *,
        count_points: bool = True,
    ):
        super().__init__()
        self.root = Path(root)
        if ids is not None:
            self.folder, self.ids = _split_folder(split), [str(i) for i in ids]
        else:
            self.folder, self.ids = _resolve_split(self.root, split)
        self.count_points = count_points
        self.labelled = (self.root / self.folder / "label_2").is_dir()
        missing = [i for i in self.ids if not self._path("velodyne", i, ".bin").is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} KITTI velodyne file(s) not found, e.g. {self._path('velodyne', missing[0], '.bin')}"
            )

    def _path(self, kind: str, frame_id: str, suffix: str) -> Path:
        return self.root / self.folder / kind / f"{frame_id}{suffix}"

    def _build_info(self, frame_id: str) -> SampleInfo:
        velodyne = self._path("velodyne", frame_id, ".bin")
        calib = read_kitti_calib(self._path("calib", frame_id, ".txt"))
        image = self._path("image_2", frame_id, ".png")
        kitti: dict[str, Any] = {
            "calib": calib.to_meta(),
            "image_shape": list(read_png_shape(image)) if image.is_file() else None,
        }
        annotations = None
        if self.labelled:
            objects = read_kitti_labels(self._path("label_2", frame_id, ".txt"))
            boxes = [o for o in objects if o.type != DONT_CARE]
            kitti["objects"] = objects_record(boxes)
            kitti["dontcare"] = objects_record([o for o in objects if o.type == DONT_CARE])
            annotations = self._annotations(boxes, calib, velodyne)
        source = PointSource(path=str(velodyne.relative_to(self.root)), format="bin", columns=KITTI_COLUMNS)
        return SampleInfo(dataset="kitti", sample_id=frame_id, lidar=source, annotations=annotations,
                          meta={"kitti": kitti})

    def _annotations(self, objects: list[KittiObject], calib: KittiCalib, velodyne: Path) -> dict[str, list]:
        boxes = Boxes3D.from_kitti_camera(
            [o.location for o in objects], [o.dimensions_hwl for o in objects], [o.rotation_y for o in objects],
            calib.velo_to_rect, dtype=torch.float64,
        )
        if self.count_points and len(boxes):
            points = read_raw_bin(velodyne, KITTI_COLUMNS)
            num_points = count_points_in_boxes(torch.from_numpy(points[:, :3].astype(np.float64)), boxes).tolist()
        else:
            num_points = [-1] * len(boxes)
        return {
            "box_dim": 7,
            "boxes": boxes.tensor.tolist(),
            "names": [o.type for o in objects],
            "num_points": [int(v) for v in num_points],
            "attributes": [""] * len(objects),
            "ids": [""] * len(objects),
        }


def _split_folder(split: str) -> str:
    """The folder a split reads: itself for ``training`` / ``testing``, ``testing`` for ``test``."""
    if split in KITTI_FOLDERS:
        return split
    return "testing" if split == "test" else "training"


def _resolve_split(root: Path, split: str) -> tuple[str, list[str]]:
    """(folder, frame ids) of a split: a folder's every velodyne file, or an ImageSets list."""
    if split in KITTI_FOLDERS:
        velodyne = root / split / "velodyne"
        if not velodyne.is_dir():
            raise FileNotFoundError(f"KITTI velodyne folder {velodyne} not found")
        return split, sorted(p.stem for p in velodyne.glob("*.bin"))
    image_set = root / "ImageSets" / f"{split}.txt"
    if not image_set.is_file():
        raise FileNotFoundError(
            f"KITTI split file {image_set} not found; split is 'training', 'testing' (every frame of "
            f"that folder) or the name of an ImageSets/<name>.txt list"
        )
    ids = [line.strip() for line in image_set.read_text().splitlines() if line.strip()]
    bad = [i for i in ids if "/" in i or " " in i]
    if bad:
        raise ValueError(f"{image_set}: {bad[0]!r} is not a frame id")
    return _split_folder(split), ids
