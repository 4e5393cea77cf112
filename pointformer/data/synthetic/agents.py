"""Agents of the synthetic scenes: class sizes, categories, and the solid shapes inside each box.

Sizes follow the nuScenes means (w, l, h) with ~10 % per-instance spread. An agent's shapes are
built in its box frame (x along the length, y across, z up, origin at the box centre) and every
one of them stays at least ``margin`` inside the label box, so range noise up to ``margin`` can
never push a return on an agent out of its box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pointformer.data.classes import NUSCENES_LIDARSEG_CATEGORIES

from .shapes import ShapeBuilder, Shapes

# Shapes stay this far inside their box (metres); sensors clip range noise to at most this.
AGENT_MARGIN = 0.06

# nuScenes mean box size per detection class as (w, l, h) in metres.
MEAN_SIZE_WLH: dict[str, tuple[float, float, float]] = {
    "car": (1.95, 4.62, 1.73),
    "truck": (2.52, 6.94, 2.84),
    "construction_vehicle": (2.85, 6.37, 3.19),
    "bus": (2.94, 11.19, 3.47),
    "trailer": (2.90, 12.29, 3.87),
    "barrier": (2.53, 0.50, 0.98),
    "motorcycle": (0.77, 2.11, 1.47),
    "bicycle": (0.60, 1.70, 1.28),
    "pedestrian": (0.67, 0.73, 1.77),
    "traffic_cone": (0.41, 0.41, 1.07),
}

# Spread of the per-instance size: one factor shared by the three sides and one per side.
SIZE_SHARED_STD = 0.07
SIZE_SIDE_STD = 0.07

# Ego vehicle body (a Renault Zoe, as in nuScenes) in the ego frame: origin at the rear axle on the ground.
EGO_LENGTH, EGO_WIDTH, EGO_REAR_OVERHANG = 4.08, 1.73, 0.66


def lidarseg_id(category: str) -> int:
    """nuScenes-lidarseg raw id of a general category (``vehicle.car`` -> 17)."""
    try:
        return NUSCENES_LIDARSEG_CATEGORIES.index(category)
    except ValueError:
        raise ValueError(f"unknown nuScenes category {category!r}") from None


def sample_size_lwh(detection_class: str, rng: np.random.Generator, count: int | None = None) -> np.ndarray:
    """Box sizes as (l, w, h): (3,) for ``count=None``, else (count, 3).

    Log-normal around the nuScenes mean (mean preserved), clipped to 0.7-1.45 of it.
    """
    if detection_class not in MEAN_SIZE_WLH:
        raise ValueError(f"unknown detection class {detection_class!r}")
    w, l, h = MEAN_SIZE_WLH[detection_class]
    n = 1 if count is None else count
    variance = SIZE_SHARED_STD**2 + SIZE_SIDE_STD**2
    log_factor = rng.normal(0.0, SIZE_SHARED_STD, (n, 1)) + rng.normal(0.0, SIZE_SIDE_STD, (n, 3)) - variance / 2
    sizes = np.array([l, w, h]) * np.clip(np.exp(log_factor), 0.7, 1.45)
    return sizes[0] if count is None else sizes


@dataclass
class Agent:
    """One annotated object over a whole scene, moving at constant velocity on flat ground.

    ``start`` (3,): box centre at scene time 0 in the map frame; ``velocity`` (2,) m/s;
    ``yaw`` heading (radians, CCW from map +x); ``size_lwh`` (3,); ``template``: shapes in the
    box frame. ``gait_hz``: stride frequency of walking legs (0 for rigid agents).
    """

    instance_id: int
    detection_class: str
    category: str
    attribute: str
    size_lwh: np.ndarray
    start: np.ndarray
    velocity: np.ndarray
    yaw: float
    template: Shapes
    gait_hz: float = 0.0
    gait_phase: float = 0.0

    @property
    def lidarseg(self) -> int:
        return lidarseg_id(self.category)


class _BoxFrame:
    """Adds primitives inside an (l, w, h) box shrunk by ``margin``; z measured up from the box bottom.

    Every primitive is clipped into the shrunk box, so nothing a template asks for can leave it.
    """

    def __init__(self, size_lwh: np.ndarray, margin: float, lidarseg: int):
        self.l, self.w, self.h = (float(v) for v in size_lwh)
        self.hx, self.hy = self.l / 2 - margin, self.w / 2 - margin
        self.zmin, self.zmax = margin, self.h - margin
        self.seg = lidarseg
        self.builder = ShapeBuilder()
        if min(self.hx, self.hy, self.zmax - self.zmin) <= 0.01:
            raise ValueError(f"box {size_lwh} is too small for a shape margin of {margin} m")

    def box(self, x0, x1, y0, y1, z0, z1, refl, porosity=0.0) -> None:
        x0, x1 = max(x0, -self.hx), min(x1, self.hx)
        y0, y1 = max(y0, -self.hy), min(y1, self.hy)
        z0, z1 = max(z0, self.zmin), min(z1, self.zmax)
        if min(x1 - x0, y1 - y0, z1 - z0) > 0.005:
            center = ((x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2 - self.h / 2)
            self.builder.box(center, ((x1 - x0) / 2, (y1 - y0) / 2, (z1 - z0) / 2), 0.0, refl, self.seg, porosity)

    def cylinder(self, x, y, radius, z0, z1, refl, swing=0.0) -> None:
        x = float(np.clip(x, -self.hx, self.hx))
        y = float(np.clip(y, -self.hy, self.hy))
        radius = min(radius, self.hx - abs(x) - abs(swing), self.hy - abs(y))
        z0, z1 = max(z0, self.zmin), min(z1, self.zmax)
        if radius > 0.005 and z1 - z0 > 0.005:
            self.builder.cylinder((x, y, (z0 + z1) / 2 - self.h / 2), radius, (z1 - z0) / 2, refl, self.seg, swing=swing)

    def ellipsoid(self, x, y, z, rx, ry, rz, refl, swing=0.0) -> None:
        x = float(np.clip(x, -self.hx, self.hx))
        y = float(np.clip(y, -self.hy, self.hy))
        z = float(np.clip(z, self.zmin, self.zmax))
        rx = min(rx, self.hx - abs(x) - abs(swing))
        ry = min(ry, self.hy - abs(y))
        rz = min(rz, z - self.zmin, self.zmax - z)
        if min(rx, ry, rz) > 0.005:
            self.builder.ellipsoid((x, y, z - self.h / 2), (rx, ry, rz), 0.0, refl, self.seg, swing=swing)

    def build(self) -> Shapes:
        return self.builder.build()


def _paint(rng: np.random.Generator) -> float:
    """Body paint albedo: black, dark, grey, colour, silver, white."""
    return float(rng.choice([0.04, 0.08, 0.15, 0.25, 0.45, 0.7], p=[0.15, 0.15, 0.2, 0.2, 0.15, 0.15]))


def _wheels(f: _BoxFrame, axles_x, radius, half_width=0.11) -> None:
    for x in axles_x:
        for side in (-1, 1):
            y = side * (f.hy - half_width)
            f.box(x - radius, x + radius, y - half_width, y + half_width, 0.0, 2 * radius, 0.05)


def _car(f: _BoxFrame, rng: np.random.Generator) -> None:
    paint = _paint(rng)
    wheel = min(0.34, 0.2 * f.h)
    _wheels(f, (f.l / 2 - 0.2 * f.l, -f.l / 2 + 0.21 * f.l), wheel)
    clearance, belt = 0.14 * f.h, rng.uniform(0.5, 0.6) * f.h
    f.box(-f.l / 2, f.l / 2, -f.w / 2, f.w / 2, clearance, belt, paint)
    cabin_back, cabin_front = -f.l / 2 + rng.uniform(0.1, 0.25) * f.l, f.l / 2 - rng.uniform(0.28, 0.4) * f.l
    f.box(cabin_back, cabin_front, -f.w / 2 + 0.12, f.w / 2 - 0.12, belt, f.h - 0.08, 0.1, porosity=0.15)
    f.box(cabin_back + 0.1, cabin_front - 0.1, -f.w / 2 + 0.16, f.w / 2 - 0.16, f.h - 0.08, f.h, paint)
    plate_z = 0.3 * f.h
    for x in (-f.hx, f.hx - 0.03):
        f.box(x, x + 0.03, -0.26, 0.26, plate_z, plate_z + 0.12, 1.6)


def _truck(f: _BoxFrame, rng: np.random.Generator, tractor: bool) -> None:
    paint = _paint(rng)
    cab_length = min(2.3, 0.33 * f.l)
    cab_back = f.l / 2 - cab_length
    _wheels(f, (f.l / 2 - 0.5 * cab_length, -f.l / 2 + 0.3 * f.l, -f.l / 2 + 0.15 * f.l), 0.48, 0.15)
    f.box(-f.l / 2, f.l / 2, -f.w / 2 + 0.3, f.w / 2 - 0.3, 0.5, 1.0, 0.08)
    variant = "tractor" if tractor else rng.choice(["box", "flatbed"], p=[0.7, 0.3])
    cab_top = f.h if variant != "box" else rng.uniform(0.75, 0.9) * f.h
    f.box(cab_back, f.l / 2, -f.w / 2, f.w / 2, 0.45, cab_top * 0.62, paint)
    f.box(cab_back + 0.2, f.l / 2 - 0.05, -f.w / 2 + 0.05, f.w / 2 - 0.05, cab_top * 0.62, cab_top, 0.12, porosity=0.1)
    if variant == "box":
        f.box(-f.l / 2, cab_back - 0.15, -f.w / 2, f.w / 2, 0.95, f.h, float(rng.choice([0.35, 0.6])))
    elif variant == "flatbed":
        f.box(-f.l / 2, cab_back - 0.15, -f.w / 2, f.w / 2, 0.95, 1.3, 0.2)
        for _ in range(rng.integers(0, 3)):
            x0 = rng.uniform(-f.l / 2, cab_back - 1.5)
            f.box(x0, x0 + rng.uniform(0.8, 1.5), -f.w / 2 + 0.2, f.w / 2 - 0.2, 1.3, rng.uniform(1.8, f.h), 0.3)


def _bus(f: _BoxFrame, rng: np.random.Generator) -> None:
    paint = _paint(rng)
    _wheels(f, (f.l / 2 - 0.22 * f.l, -f.l / 2 + 0.25 * f.l), 0.5, 0.15)
    f.box(-f.l / 2, f.l / 2, -f.w / 2, f.w / 2, 0.32, 0.5 * f.h, paint)
    f.box(-f.l / 2 + 0.05, f.l / 2 - 0.05, -f.w / 2 + 0.04, f.w / 2 - 0.04, 0.5 * f.h, 0.86 * f.h, 0.08, porosity=0.2)
    f.box(-f.l / 2, f.l / 2, -f.w / 2, f.w / 2, 0.86 * f.h, f.h, paint)


def _trailer(f: _BoxFrame, rng: np.random.Generator) -> None:
    _wheels(f, (-f.l / 2 + 1.0, -f.l / 2 + 2.3), 0.5, 0.2)
    for side in (-1, 1):
        y = side * (f.hy - 0.35)
        f.box(f.l / 2 - 2.8, f.l / 2 - 2.6, y - 0.1, y + 0.1, 0.0, 1.2, 0.1)
    if rng.random() < 0.8:
        f.box(-f.l / 2, f.l / 2, -f.w / 2, f.w / 2, 1.2, f.h, float(rng.choice([0.3, 0.5, 0.7])))
    else:
        f.box(-f.l / 2, f.l / 2, -f.w / 2, f.w / 2, 1.2, 1.5, 0.2)
        f.box(-f.l / 2 + 0.5, f.l / 2 - 3.0, -f.w / 2 + 0.1, f.w / 2 - 0.1, 1.5, f.h, 0.35)


def _construction_vehicle(f: _BoxFrame, rng: np.random.Generator) -> None:
    yellow = rng.uniform(0.45, 0.65)
    for side in (-1, 1):
        y = side * (f.hy - 0.3)
        f.box(-f.l / 2, 0.25 * f.l, y - 0.3, y + 0.3, 0.0, 0.22 * f.h, 0.08)
    f.box(-f.l / 2, 0.2 * f.l, -f.w / 2, f.w / 2, 0.22 * f.h, 0.5 * f.h, yellow)
    cab_side = rng.choice([-1, 1])
    f.box(-0.15 * f.l, 0.15 * f.l, min(0, cab_side) * f.w / 2, max(0, cab_side) * f.w / 2, 0.5 * f.h, f.h,
          0.15, porosity=0.2)
    f.box(0.1 * f.l, 0.3 * f.l, -0.2, 0.2, 0.45 * f.h, 0.9 * f.h, yellow)
    f.box(0.3 * f.l, f.l / 2 - 0.6, -0.2, 0.2, 0.35 * f.h, 0.6 * f.h, yellow)
    f.box(f.l / 2 - 0.8, f.l / 2, -f.w / 2 + 0.2, f.w / 2 - 0.2, 0.0, 0.35 * f.h, 0.2)


def _rider(f: _BoxFrame, rng: np.random.Generator, x: float) -> None:
    clothes = rng.uniform(0.05, 0.5)
    f.ellipsoid(x, 0.0, 0.7 * f.h, 0.16, 0.19, 0.14 * f.h, clothes)
    f.ellipsoid(x + 0.05, 0.0, 0.92 * f.h, 0.12, 0.12, 0.07 * f.h, rng.uniform(0.1, 0.5))
    for side in (-1, 1):
        f.cylinder(x + 0.15, side * 0.12, 0.06, 0.35 * f.h, 0.58 * f.h, clothes)


def _motorcycle(f: _BoxFrame, rng: np.random.Generator, with_rider: bool) -> None:
    wheel = min(0.31, 0.25 * f.h)
    for x in (f.hx - wheel, -f.hx + wheel):
        f.box(x - wheel, x + wheel, -0.06, 0.06, 0.0, 2 * wheel, 0.06)
    f.box(-0.3 * f.l, 0.3 * f.l, -0.17, 0.17, 0.5 * wheel, 0.62 * f.h if not with_rider else 0.55 * f.h, _paint(rng))
    f.box(0.3 * f.l, 0.36 * f.l, -f.w / 2, f.w / 2, 0.58 * f.h, 0.64 * f.h, 0.1)
    if with_rider:
        _rider(f, rng, -0.1)


def _bicycle(f: _BoxFrame, rng: np.random.Generator, with_rider: bool) -> None:
    wheel = min(0.34, 0.27 * f.h)
    for x in (f.hx - wheel, -f.hx + wheel):
        f.box(x - wheel, x + wheel, -0.02, 0.02, 0.0, 2 * wheel, 0.1)
    f.box(-0.22 * f.l, 0.22 * f.l, -0.03, 0.03, 1.0 * wheel, 1.9 * wheel, _paint(rng))
    f.box(0.24 * f.l, 0.28 * f.l, -f.w / 2, f.w / 2, 2.4 * wheel, 2.55 * wheel, 0.1)
    if with_rider:
        _rider(f, rng, -0.12)


def _pedestrian(f: _BoxFrame, rng: np.random.Generator, walking: bool) -> None:
    clothes = rng.uniform(0.05, 0.5)
    stride = 0.17 if walking else 0.0
    for side in (-1, 1):
        f.cylinder(0.0, side * 0.1, 0.075, 0.0, 0.49 * f.h, rng.uniform(0.05, 0.3), swing=side * stride)
        f.cylinder(0.0, side * 0.24, 0.04, 0.47 * f.h, 0.8 * f.h, clothes, swing=-side * 0.7 * stride)
    f.ellipsoid(0.0, 0.0, 0.66 * f.h, 0.12, 0.2, 0.17 * f.h, clothes)
    f.ellipsoid(0.02, 0.0, 0.93 * f.h, 0.1, 0.09, 0.065 * f.h, rng.uniform(0.1, 0.4))


def _barrier(f: _BoxFrame, rng: np.random.Generator) -> None:
    variant = rng.choice(["jersey", "plastic", "fence"], p=[0.5, 0.3, 0.2])
    if variant == "jersey":
        concrete = rng.uniform(0.25, 0.45)
        f.box(-f.l / 2, f.l / 2, -f.w / 2, f.w / 2, 0.0, 0.3 * f.h, concrete)
        f.box(-0.14, 0.14, -f.w / 2, f.w / 2, 0.3 * f.h, f.h, concrete)
    elif variant == "plastic":
        f.box(-0.2, 0.2, -f.w / 2, f.w / 2, 0.0, f.h, rng.uniform(0.4, 0.7))
        f.box(-0.22, 0.22, -f.w / 2 + 0.1, f.w / 2 - 0.1, 0.75 * f.h, 0.85 * f.h, 1.8)
    else:
        for side in (-1, 1):
            f.cylinder(0.0, side * (f.hy - 0.05), 0.04, 0.0, f.h, 0.3)
            f.box(-f.l / 2, f.l / 2, side * (f.hy - 0.2) - 0.12, side * (f.hy - 0.2) + 0.12, 0.0, 0.08, 0.2)
        f.box(-0.02, 0.02, -f.w / 2, f.w / 2, 0.15 * f.h, f.h, 0.3, porosity=0.5)


def _traffic_cone(f: _BoxFrame) -> None:
    half = min(f.hx, f.hy)
    f.box(-f.l / 2, f.l / 2, -f.w / 2, f.w / 2, 0.0, 0.05, 0.3)
    f.cylinder(0.0, 0.0, 0.75 * half, 0.05, 0.4 * f.h, 0.5)
    f.cylinder(0.0, 0.0, 0.55 * half, 0.4 * f.h, 0.7 * f.h, 1.8)
    f.cylinder(0.0, 0.0, 0.35 * half, 0.7 * f.h, f.h, 0.5)


def agent_template(detection_class: str, category: str, attribute: str, size_lwh: np.ndarray,
                   rng: np.random.Generator, margin: float = AGENT_MARGIN, tractor: bool = False) -> Shapes:
    """Shapes of one agent in its box frame, all at least ``margin`` inside the (l, w, h) box.

    ``attribute`` picks rider / no rider for cycles and legs apart or together for walkers;
    ``tractor`` makes a truck a cab-and-chassis that tows a trailer.
    """
    f = _BoxFrame(size_lwh, margin, lidarseg_id(category))
    if detection_class == "car":
        _car(f, rng)
    elif detection_class == "truck":
        _truck(f, rng, tractor)
    elif detection_class == "bus":
        _bus(f, rng)
    elif detection_class == "trailer":
        _trailer(f, rng)
    elif detection_class == "construction_vehicle":
        _construction_vehicle(f, rng)
    elif detection_class == "motorcycle":
        _motorcycle(f, rng, attribute == "cycle.with_rider")
    elif detection_class == "bicycle":
        _bicycle(f, rng, attribute == "cycle.with_rider")
    elif detection_class == "pedestrian":
        _pedestrian(f, rng, attribute == "pedestrian.moving")
    elif detection_class == "barrier":
        _barrier(f, rng)
    elif detection_class == "traffic_cone":
        _traffic_cone(f)
    else:
        raise ValueError(f"unknown detection class {detection_class!r}")
    shapes = f.build()
    if len(shapes) == 0:
        raise ValueError(f"{detection_class} of size {size_lwh} produced no shapes")
    return shapes


def ego_body_shapes() -> Shapes:
    """The ego car's body in the ego frame (rear axle on the ground at the origin), lidarseg vehicle.ego.

    A lower body and a cabin whose roof sits ~0.34 m under a roof-mounted LiDAR at 1.84 m, so the
    lowest beams return from the roof as they do in nuScenes.
    """
    seg = lidarseg_id("vehicle.ego")
    builder = ShapeBuilder()
    rear, front, half_w = -EGO_REAR_OVERHANG, EGO_LENGTH - EGO_REAR_OVERHANG, EGO_WIDTH / 2
    builder.box_between((rear, -half_w, 0.18), (front, half_w, 0.95), 0.3, seg)
    builder.box_between((0.45, -0.55, 0.95), (1.8, 0.55, 1.5), 0.15, seg)
    return builder.build()
