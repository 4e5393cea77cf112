"""``Boxes3D``: N oriented 3D boxes in one tensor, with the geometry done on them.

Layout per row: ``(x, y, z, l, w, h, yaw[, vx, vy])`` — centre of gravity in metres, ``l``
along the heading, ``w`` across it, ``h`` up, yaw counter-clockwise from +x in radians,
velocity in m/s in the same frame. Frame: x forward, y left, z up.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

from .rotation import heading_yaw, normalize_yaw, quaternion_to_matrix

# Unit corners, bottom face first, each face counter-clockwise seen from above starting front-left:
# (+l/2, +w/2), (-l/2, +w/2), (-l/2, -w/2), (+l/2, -w/2).
_UNIT_CORNERS = torch.tensor(
    [
        [0.5, 0.5, -0.5], [-0.5, 0.5, -0.5], [-0.5, -0.5, -0.5], [0.5, -0.5, -0.5],
        [0.5, 0.5, 0.5], [-0.5, 0.5, 0.5], [-0.5, -0.5, 0.5], [0.5, -0.5, 0.5],
    ]
)


class Boxes3D:
    """N boxes as an ``(N, 7)`` or ``(N, 9)`` tensor; see the module docstring for the layout.

    Every geometric method returns a new ``Boxes3D``; the tensor itself is never modified.
    """

    def __init__(self, tensor: torch.Tensor | np.ndarray | Sequence, with_velocity: bool | None = None):
        tensor = torch.as_tensor(tensor)
        if not tensor.is_floating_point():
            tensor = tensor.float()
        if tensor.numel() == 0 and not (tensor.dim() == 2 and tensor.shape[1] in (7, 9)):
            tensor = tensor.reshape(0, 9 if with_velocity else 7)
        if tensor.dim() != 2 or tensor.shape[1] not in (7, 9):
            raise ValueError(f"Boxes3D expects an (N, 7) or (N, 9) tensor, got shape {tuple(tensor.shape)}")
        if with_velocity is not None and with_velocity != (tensor.shape[1] == 9):
            raise ValueError(f"with_velocity={with_velocity} but the tensor has {tensor.shape[1]} columns")
        self.tensor = tensor

    # ------------------------------------------------------------------ views
    @property
    def has_velocity(self) -> bool:
        return self.tensor.shape[1] == 9

    @property
    def center(self) -> torch.Tensor:
        """(N, 3) centre of gravity."""
        return self.tensor[:, :3]

    @property
    def bottom_center(self) -> torch.Tensor:
        """(N, 3) centre of the bottom face."""
        bottom = self.center.clone()
        bottom[:, 2] -= self.tensor[:, 5] / 2
        return bottom

    @property
    def dims(self) -> torch.Tensor:
        """(N, 3) as (l, w, h)."""
        return self.tensor[:, 3:6]

    @property
    def yaw(self) -> torch.Tensor:
        return self.tensor[:, 6]

    @property
    def velocity(self) -> torch.Tensor | None:
        """(N, 2) as (vx, vy), or None when the boxes carry no velocity."""
        return self.tensor[:, 7:9] if self.has_velocity else None

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __getitem__(self, index) -> "Boxes3D":
        selected = self.tensor[index]
        if selected.dim() == 1:
            selected = selected.unsqueeze(0)
        return Boxes3D(selected)

    def __repr__(self) -> str:
        return f"Boxes3D(n={len(self)}, velocity={self.has_velocity}, dtype={self.tensor.dtype})"

    def to(self, *args, **kwargs) -> "Boxes3D":
        return Boxes3D(self.tensor.to(*args, **kwargs))

    def clone(self) -> "Boxes3D":
        return Boxes3D(self.tensor.clone())

    def numpy(self) -> np.ndarray:
        return self.tensor.detach().cpu().numpy()

    @staticmethod
    def empty(with_velocity: bool = True, dtype: torch.dtype = torch.float32) -> "Boxes3D":
        return Boxes3D(torch.zeros((0, 9 if with_velocity else 7), dtype=dtype))

    @staticmethod
    def cat(boxes: Iterable["Boxes3D"]) -> "Boxes3D":
        boxes = list(boxes)
        if not boxes:
            return Boxes3D.empty()
        widths = {b.tensor.shape[1] for b in boxes}
        if len(widths) != 1:
            raise ValueError(f"cannot concatenate boxes with and without velocity (widths {sorted(widths)})")
        return Boxes3D(torch.cat([b.tensor for b in boxes], dim=0))

    def with_velocity(self, velocity: torch.Tensor | None = None) -> "Boxes3D":
        """Boxes with (N, 2) velocity columns set (NaN where unknown when none is given)."""
        if velocity is None:
            velocity = torch.full((len(self), 2), float("nan"), dtype=self.tensor.dtype)
        velocity = torch.as_tensor(velocity, dtype=self.tensor.dtype, device=self.tensor.device)
        return Boxes3D(torch.cat([self.tensor[:, :7], velocity.reshape(-1, 2)], dim=1))

    def without_velocity(self) -> "Boxes3D":
        return Boxes3D(self.tensor[:, :7].clone())

    # --------------------------------------------------------------- geometry
    def corners(self) -> torch.Tensor:
        """(N, 8, 3) corners: bottom face then top face, each counter-clockwise from front-left."""
        unit = _UNIT_CORNERS.to(self.tensor)
        local = unit[None] * self.dims[:, None, :]
        cos, sin = torch.cos(self.yaw)[:, None], torch.sin(self.yaw)[:, None]
        x = local[..., 0] * cos - local[..., 1] * sin
        y = local[..., 0] * sin + local[..., 1] * cos
        return torch.stack([x, y, local[..., 2]], dim=-1) + self.center[:, None, :]

    def bev_corners(self) -> torch.Tensor:
        """(N, 4, 2) BEV polygon, counter-clockwise, starting at the front-left corner."""
        return self.corners()[:, :4, :2]

    def volume(self) -> torch.Tensor:
        return self.dims.prod(dim=1)

    def normalize_yaw(self) -> "Boxes3D":
        tensor = self.tensor.clone()
        tensor[:, 6] = normalize_yaw(tensor[:, 6])
        return Boxes3D(tensor)

    def rotate(self, angle: float) -> "Boxes3D":
        """Rotate about the z axis through the origin by ``angle`` radians (counter-clockwise)."""
        cos, sin = float(np.cos(angle)), float(np.sin(angle))
        tensor = self.tensor.clone()
        x, y = self.tensor[:, 0], self.tensor[:, 1]
        tensor[:, 0] = cos * x - sin * y
        tensor[:, 1] = sin * x + cos * y
        tensor[:, 6] = normalize_yaw(self.yaw + angle)
        if self.has_velocity:
            vx, vy = self.tensor[:, 7], self.tensor[:, 8]
            tensor[:, 7] = cos * vx - sin * vy
            tensor[:, 8] = sin * vx + cos * vy
        return Boxes3D(tensor)

    def translate(self, offset: Sequence[float] | torch.Tensor) -> "Boxes3D":
        tensor = self.tensor.clone()
        tensor[:, :3] += torch.as_tensor(offset, dtype=tensor.dtype, device=tensor.device).reshape(1, 3)
        return Boxes3D(tensor)

    def scale(self, factor: float) -> "Boxes3D":
        """Scale about the origin: centres, sizes and velocities by ``factor``."""
        tensor = self.tensor.clone()
        tensor[:, :6] *= factor
        if self.has_velocity:
            tensor[:, 7:9] *= factor
        return Boxes3D(tensor)

    def flip(self, coordinate: str) -> "Boxes3D":
        """Mirror: ``flip("y")`` negates every y (mirror in the x-z plane), ``flip("x")`` every x."""
        tensor = self.tensor.clone()
        if coordinate == "y":
            tensor[:, 1] = -tensor[:, 1]
            tensor[:, 6] = normalize_yaw(-self.yaw)
            if self.has_velocity:
                tensor[:, 8] = -tensor[:, 8]
        elif coordinate == "x":
            tensor[:, 0] = -tensor[:, 0]
            tensor[:, 6] = normalize_yaw(np.pi - self.yaw)
            if self.has_velocity:
                tensor[:, 7] = -tensor[:, 7]
        else:
            raise ValueError(f"flip coordinate must be 'x' or 'y', got {coordinate!r}")
        return Boxes3D(tensor)

    def transform(self, pose: np.ndarray | torch.Tensor) -> "Boxes3D":
        """Apply a rigid 4x4 ``target_from_source`` pose.

        Centres are transformed exactly; the new yaw is the heading of the rotated +x axis of
        each box projected on the xy plane (the devkit's ``quaternion_yaw``); velocities are
        rotated as horizontal 3D vectors and their xy part kept.
        """
        pose = torch.as_tensor(np.asarray(pose, dtype=np.float64), dtype=torch.float64)
        rotation, translation = pose[:3, :3], pose[:3, 3]
        tensor64 = self.tensor.to(torch.float64)
        out = tensor64.clone()
        out[:, :3] = tensor64[:, :3] @ rotation.T + translation
        heading = torch.stack([torch.cos(tensor64[:, 6]), torch.sin(tensor64[:, 6]), torch.zeros_like(tensor64[:, 6])], 1)
        heading = heading @ rotation.T
        out[:, 6] = torch.atan2(heading[:, 1], heading[:, 0])
        if self.has_velocity:
            velocity = torch.cat([tensor64[:, 7:9], torch.zeros_like(tensor64[:, :1])], dim=1) @ rotation.T
            out[:, 7:9] = velocity[:, :2]
        return Boxes3D(out.to(self.tensor.dtype))

    # ----------------------------------------------------------- points in box
    def points_in_boxes(self, points: torch.Tensor) -> torch.Tensor:
        """(P, 3+) points -> (P, N) bool, True where a point lies inside (or on the surface of) a box."""
        points = torch.as_tensor(points)[:, :3].to(torch.float64)
        tensor = self.tensor.to(device=points.device, dtype=torch.float64)
        if len(self) == 0 or points.shape[0] == 0:
            return torch.zeros((points.shape[0], len(self)), dtype=torch.bool, device=points.device)
        offset = points[:, None, :] - tensor[None, :, :3]
        cos, sin = torch.cos(tensor[:, 6]), torch.sin(tensor[:, 6])
        local_x = offset[..., 0] * cos + offset[..., 1] * sin
        local_y = -offset[..., 0] * sin + offset[..., 1] * cos
        half = tensor[:, 3:6] / 2
        return (
            (local_x.abs() <= half[:, 0]) & (local_y.abs() <= half[:, 1]) & (offset[..., 2].abs() <= half[:, 2])
        )

    def count_points(self, points: torch.Tensor) -> torch.Tensor:
        """(N,) int64 number of points inside each box."""
        return self.points_in_boxes(points).sum(dim=0)

    # ------------------------------------------------------------ conversions
    def to_nuscenes(self) -> dict[str, np.ndarray]:
        """nuScenes parameters in this same frame: translation (N,3), size (N,3) as w,l,h,
        rotation (N,4) quaternion w,x,y,z about +z, velocity (N,2) (NaN when absent)."""
        array = self.tensor.detach().cpu().to(torch.float64).numpy()
        velocity = array[:, 7:9] if self.has_velocity else np.full((len(self), 2), np.nan)
        yaw = array[:, 6]
        zeros = np.zeros_like(yaw)
        return {
            "translation": array[:, :3].copy(),
            "size": array[:, [4, 3, 5]].copy(),
            "rotation": np.stack([np.cos(yaw / 2), zeros, zeros, np.sin(yaw / 2)], axis=1),
            "velocity": velocity.copy(),
        }

    @staticmethod
    def from_nuscenes(translation, size, rotation, velocity=None, dtype: torch.dtype = torch.float32) -> "Boxes3D":
        """From nuScenes parameters in one frame: translation (N,3), size (N,3) w,l,h,
        rotation (N,4) quaternions w,x,y,z, optional velocity (N,2) or (N,3)."""
        translation = np.asarray(translation, dtype=np.float64).reshape(-1, 3)
        size = np.asarray(size, dtype=np.float64).reshape(-1, 3)
        rotation = np.asarray(rotation, dtype=np.float64).reshape(-1, 4)
        yaw = heading_yaw(quaternion_to_matrix(rotation)) if len(rotation) else np.zeros(0)
        columns = [translation, size[:, [1, 0, 2]], yaw[:, None]]
        if velocity is not None:
            columns.append(np.asarray(velocity, dtype=np.float64).reshape(len(translation), -1)[:, :2])
        return Boxes3D(torch.from_numpy(np.concatenate(columns, axis=1)).to(dtype))

    @staticmethod
    def from_kitti_camera(location, dims_hwl, rotation_y, velo_to_rect: np.ndarray, dtype=torch.float32) -> "Boxes3D":
        """KITTI label_2 boxes -> LiDAR-frame boxes (no velocity).

        location (N,3): bottom centre in the rectified camera frame; dims_hwl (N,3);
        rotation_y (N,): yaw about the camera's y axis; velo_to_rect (4,4) = R0_rect @ Tr_velo_to_cam.
        The heading vector (cos ry, 0, -sin ry) is carried through the exact calibration rotation.
        """
        location = np.asarray(location, dtype=np.float64).reshape(-1, 3)
        dims = np.asarray(dims_hwl, dtype=np.float64).reshape(-1, 3)
        rotation_y = np.asarray(rotation_y, dtype=np.float64).reshape(-1)
        rect_to_velo = np.linalg.inv(np.asarray(velo_to_rect, dtype=np.float64))
        bottom = location @ rect_to_velo[:3, :3].T + rect_to_velo[:3, 3]
        heading_cam = np.stack([np.cos(rotation_y), np.zeros_like(rotation_y), -np.sin(rotation_y)], axis=1)
        heading = heading_cam @ rect_to_velo[:3, :3].T
        yaw = normalize_yaw(np.arctan2(heading[:, 1], heading[:, 0]))
        h, w, l = dims[:, 0], dims[:, 1], dims[:, 2]
        center = bottom + np.stack([np.zeros_like(h), np.zeros_like(h), h / 2], axis=1)
        tensor = np.concatenate([center, np.stack([l, w, h, yaw], axis=1)], axis=1)
        return Boxes3D(torch.from_numpy(tensor).to(dtype))

    def to_kitti_camera(self, velo_to_rect: np.ndarray) -> dict[str, np.ndarray]:
        """Inverse of :meth:`from_kitti_camera`: location (N,3), dims_hwl (N,3), rotation_y (N,)."""
        array = self.tensor.detach().cpu().to(torch.float64).numpy()
        velo_to_rect = np.asarray(velo_to_rect, dtype=np.float64)
        bottom = array[:, :3] - np.stack([np.zeros(len(array)), np.zeros(len(array)), array[:, 5] / 2], axis=1)
        location = bottom @ velo_to_rect[:3, :3].T + velo_to_rect[:3, 3]
        rotation_y = camera_rotation_y(array[:, 6], velo_to_rect)
        return {"location": location, "dims_hwl": array[:, [5, 4, 3]].copy(), "rotation_y": rotation_y}


def camera_rotation_y(yaw: np.ndarray, velo_to_rect: np.ndarray) -> np.ndarray:
    """(N,) LiDAR yaw -> (N,) KITTI ``rotation_y``: the exact inverse of the reader's conversion.

    The reader takes the camera heading (cos ry, 0, -sin ry) through the calibration rotation and
    keeps its heading in the LiDAR xy plane; here ry is solved so that this heading points along
    ``yaw``: cos(ry) a x d = sin(ry) b x d, with a, b the xy parts of the camera x and z axes.
    """
    yaw = np.asarray(yaw, dtype=np.float64).reshape(-1)
    rotation = np.linalg.inv(np.asarray(velo_to_rect, dtype=np.float64))[:3, :3]
    a, b = rotation[:2, 0], rotation[:2, 2]
    dx, dy = np.cos(yaw), np.sin(yaw)
    cross_a, cross_b = dx * a[1] - dy * a[0], dx * b[1] - dy * b[0]
    ry = np.arctan2(cross_a, cross_b)
    heading = np.cos(ry)[:, None] * a - np.sin(ry)[:, None] * b
    backwards = heading[:, 0] * dx + heading[:, 1] * dy < 0
    return normalize_yaw(np.where(backwards, ry + np.pi, ry))
