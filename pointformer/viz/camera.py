"""A pinhole camera for 3D views: where it looks from, and where a 3D point lands in the image.

Both 3D renderers (open3d's offscreen renderer and the numpy fallback) take this camera, so a
point projected with :meth:`Camera.project` lands on the same pixel in either picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEAR_PLANE = 0.1  # metres; open3d's default near plane


@dataclass(frozen=True)
class Camera:
    """Looks from ``eye`` at ``target`` with ``up`` roughly up; ``fov_deg`` is the vertical
    field of view; the image is ``width`` x ``height`` pixels. Coordinates in metres, our frame."""

    eye: tuple[float, float, float]
    target: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    fov_deg: float = 60.0
    width: int = 960
    height: int = 720

    def __post_init__(self) -> None:
        for name in ("eye", "target", "up"):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != (3,) or not np.isfinite(value).all():
                raise ValueError(f"Camera.{name} must be 3 finite numbers, got {getattr(self, name)!r}")
        if not 0.0 < self.fov_deg < 180.0:
            raise ValueError(f"Camera.fov_deg must lie in (0, 180), got {self.fov_deg}")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"Camera image size must be positive, got {self.width}x{self.height}")
        forward = np.subtract(self.target, self.eye)
        if np.linalg.norm(forward) == 0 or np.linalg.norm(np.cross(forward, self.up)) < 1e-9 * np.linalg.norm(forward):
            raise ValueError("Camera: eye and target must differ and the view direction must not be parallel to up")

    @staticmethod
    def orbit(target: tuple[float, float, float], distance: float, azimuth_deg: float, elevation_deg: float,
              *, fov_deg: float = 60.0, width: int = 960, height: int = 720) -> Camera:
        """Camera ``distance`` metres from ``target``, at ``azimuth_deg`` counter-clockwise from
        +x and ``elevation_deg`` above the ground plane, looking at ``target``."""
        azimuth, elevation = np.radians(azimuth_deg), np.radians(elevation_deg)
        offset = distance * np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                      np.sin(elevation)])
        eye = tuple(float(v) for v in np.asarray(target, dtype=np.float64) + offset)
        return Camera(eye, tuple(float(v) for v in target), fov_deg=fov_deg, width=width, height=height)

    @staticmethod
    def chase(half_extent: float = 50.0, *, width: int = 960, height: int = 720) -> Camera:
        """The default driving view: behind and above the ego, looking ahead over ``half_extent`` metres."""
        return Camera.orbit((0.25 * half_extent, 0.0, 0.0), 1.25 * half_extent, 195.0, 38.0,
                            fov_deg=55.0, width=width, height=height)

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit (right, up, forward) axes of the camera in world coordinates."""
        forward = np.subtract(self.target, self.eye).astype(np.float64)
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, np.asarray(self.up, dtype=np.float64))
        right /= np.linalg.norm(right)
        return right, np.cross(right, forward), forward

    @property
    def focal_px(self) -> float:
        """Focal length in pixels (square pixels)."""
        return (self.height / 2.0) / np.tan(np.radians(self.fov_deg) / 2.0)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world points -> (N, 3) camera coordinates (x right, y up, z depth along the view)."""
        right, up, forward = self.basis()
        offset = np.asarray(points, dtype=np.float64).reshape(-1, 3) - np.asarray(self.eye, dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite points stay non-finite
            return np.stack([offset @ right, offset @ up, offset @ forward], axis=1)

    def camera_to_image(self, camera_points: np.ndarray) -> np.ndarray:
        """(N, 3) camera coordinates with depth > 0 -> (N, 2) continuous image coordinates
        (u right, v down; pixel (row, col) covers [col, col + 1) x [row, row + 1))."""
        depth = camera_points[:, 2]
        u = self.width / 2.0 + self.focal_px * camera_points[:, 0] / depth
        v = self.height / 2.0 - self.focal_px * camera_points[:, 1] / depth
        return np.stack([u, v], axis=1)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) world points -> (uv (N, 2) image coordinates, depth (N,) metres). Points with
        depth below the near plane get NaN coordinates."""
        camera_points = self.to_camera(points)
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = self.camera_to_image(camera_points)
        uv[camera_points[:, 2] < NEAR_PLANE] = np.nan
        return uv, camera_points[:, 2]

    def pixel(self, point: np.ndarray) -> tuple[int, int]:
        """(row, col) of the pixel one world point falls in (ValueError when it is behind the camera)."""
        uv, depth = self.project(np.asarray(point, dtype=np.float64).reshape(1, 3))
        if not depth[0] >= NEAR_PLANE:
            raise ValueError(f"point {point} is behind the camera")
        return int(np.floor(uv[0, 1])), int(np.floor(uv[0, 0]))
