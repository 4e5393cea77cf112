"""Upright solid primitives the simulated LiDAR hits: oriented boxes, vertical cylinders, ellipsoids.

Every primitive is upright: it may turn about +z (``yaw``) but never tilts. A set of them is one
``Shapes`` table (struct of arrays) so the ray caster reads plain arrays. Frames: whatever frame
the caller builds them in (the scene's map frame, or an agent's box frame for templates), metres.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

BOX, CYLINDER, ELLIPSOID = 0, 1, 2


@dataclass
class Shapes:
    """S primitives.

    ``kind`` (S,) int8: BOX, CYLINDER or ELLIPSOID. ``center`` (S, 3). ``extent`` (S, 3): half
    sizes along the local x, y, z for a box, (radius, radius, half height) for a cylinder, the
    three radii for an ellipsoid. ``yaw`` (S,) about +z. ``reflectivity`` (S,): diffuse albedo in
    [0, 1], values above 1 mark retro-reflectors. ``porosity`` (S,): probability that a ray passes
    through (foliage, glass). ``lidarseg`` (S,) uint8 nuScenes-lidarseg raw id. ``agent`` (S,)
    int32: index of the agent the shape belongs to, -1 for structure. ``swing`` (S,): gait
    amplitude in metres along the local x axis (signed; legs and arms of walkers), 0 otherwise.
    """

    kind: np.ndarray
    center: np.ndarray
    extent: np.ndarray
    yaw: np.ndarray
    reflectivity: np.ndarray
    porosity: np.ndarray
    lidarseg: np.ndarray
    agent: np.ndarray
    swing: np.ndarray

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    @staticmethod
    def empty() -> Shapes:
        return ShapeBuilder().build()

    @staticmethod
    def concat(parts: list[Shapes]) -> Shapes:
        parts = [p for p in parts if len(p)] or [Shapes.empty()]
        return Shapes(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Shapes)})

    def select(self, index: np.ndarray) -> Shapes:
        return Shapes(**{f.name: getattr(self, f.name)[index] for f in fields(Shapes)})

    def bounding_radius(self) -> np.ndarray:
        """(S,) radius of a sphere about ``center`` that contains each primitive."""
        radius = np.linalg.norm(self.extent, axis=1)
        cylinder = self.kind == CYLINDER
        radius[cylinder] = np.hypot(self.extent[cylinder, 0], self.extent[cylinder, 2])
        ellipsoid = self.kind == ELLIPSOID
        radius[ellipsoid] = self.extent[ellipsoid].max(axis=1)
        return radius

    def local_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(S, 3) lower and upper corners of each primitive's axis-aligned bounding box."""
        half = self.extent.copy()
        c, s = np.abs(np.cos(self.yaw)), np.abs(np.sin(self.yaw))
        turned = self.kind != CYLINDER
        half_x = c * self.extent[:, 0] + s * self.extent[:, 1]
        half_y = s * self.extent[:, 0] + c * self.extent[:, 1]
        half[turned, 0] = half_x[turned]
        half[turned, 1] = half_y[turned]
        reach = np.abs(self.swing)
        half[:, 0] += reach
        return self.center - half, self.center + half


class ShapeBuilder:
    """Collects primitives one by one and freezes them into a ``Shapes`` table."""

    def __init__(self) -> None:
        self._rows: list[tuple] = []

    def __len__(self) -> int:
        return len(self._rows)

    def _add(self, kind, center, extent, yaw, reflectivity, lidarseg, porosity, agent, swing) -> None:
        if min(extent) <= 0:
            raise ValueError(f"primitive extents must be positive, got {extent}")
        self._rows.append((kind, tuple(center), tuple(extent), yaw, reflectivity, porosity, lidarseg, agent, swing))

    def box(self, center, half, yaw: float, reflectivity: float, lidarseg: int,
            porosity: float = 0.0, agent: int = -1, swing: float = 0.0) -> None:
        self._add(BOX, center, half, yaw, reflectivity, lidarseg, porosity, agent, swing)

    def cylinder(self, center, radius: float, half_height: float, reflectivity: float, lidarseg: int,
                 porosity: float = 0.0, agent: int = -1, swing: float = 0.0) -> None:
        self._add(CYLINDER, center, (radius, radius, half_height), 0.0, reflectivity, lidarseg, porosity, agent, swing)

    def ellipsoid(self, center, radii, yaw: float, reflectivity: float, lidarseg: int,
                  porosity: float = 0.0, agent: int = -1, swing: float = 0.0) -> None:
        self._add(ELLIPSOID, center, radii, yaw, reflectivity, lidarseg, porosity, agent, swing)

    def box_between(self, lo, hi, reflectivity: float, lidarseg: int, porosity: float = 0.0, agent: int = -1) -> None:
        """An unrotated box from its lower corner ``lo`` to its upper corner ``hi`` (3,)."""
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        self.box((lo + hi) / 2, (hi - lo) / 2, 0.0, reflectivity, lidarseg, porosity, agent)

    def build(self) -> Shapes:
        n = len(self._rows)
        if n == 0:
            return Shapes(np.zeros(0, np.int8), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros(0),
                          np.zeros(0), np.zeros(0, np.uint8), np.zeros(0, np.int32), np.zeros(0))
        kind, center, extent, yaw, refl, porosity, seg, agent, swing = zip(*self._rows)
        return Shapes(
            kind=np.asarray(kind, np.int8),
            center=np.asarray(center, np.float64).reshape(n, 3),
            extent=np.asarray(extent, np.float64).reshape(n, 3),
            yaw=np.asarray(yaw, np.float64),
            reflectivity=np.asarray(refl, np.float64),
            porosity=np.asarray(porosity, np.float64),
            lidarseg=np.asarray(seg, np.uint8),
            agent=np.asarray(agent, np.int32),
            swing=np.asarray(swing, np.float64),
        )


def place_shapes(template: Shapes, center: np.ndarray, yaw: np.ndarray, phase: np.ndarray) -> Shapes:
    """Move box-frame templates into a parent frame.

    ``template``: shapes in their owner's box frame (centre of the box at the origin), ``agent``
    naming the owner. ``center`` (A, 3), ``yaw`` (A,): each owner's box pose. ``phase`` (A,) gait
    phase in radians: a shape with swing s sits at local x + s * sin(phase).
    """
    owner = template.agent
    local = template.center.copy()
    local[:, 0] += template.swing * np.sin(phase[owner])
    c, s = np.cos(yaw[owner]), np.sin(yaw[owner])
    placed = np.empty_like(local)
    placed[:, 0] = c * local[:, 0] - s * local[:, 1] + center[owner, 0]
    placed[:, 1] = s * local[:, 0] + c * local[:, 1] + center[owner, 1]
    placed[:, 2] = local[:, 2] + center[owner, 2]
    return Shapes(template.kind, placed, template.extent, template.yaw + yaw[owner], template.reflectivity,
                  template.porosity, template.lidarseg, owner, np.zeros_like(template.swing))
