"""Synthetic driving scenes: a road with lanes, sidewalks, an intersection, buildings, street
furniture, vegetation, a construction zone, and agents of the 10 nuScenes classes moving over time.

Everything lives in a flat *map* frame (x along the main road, y left, z up, ground at z = 0,
metres, seconds from the scene start). The ego drives along +x in its lane. Agents move at
constant velocity (lane following on straight roads, walkers on sidewalks and crosswalks) and
their boxes never overlap each other, the ego or a structure's footprint at any time of the
scene (checked every ``OCCUPANCY_DT`` seconds). ``sample_scene`` draws one from a numpy
Generator; the same seed gives the same scene.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .agents import (
    AGENT_MARGIN,
    EGO_LENGTH,
    EGO_REAR_OVERHANG,
    EGO_WIDTH,
    Agent,
    agent_template,
    lidarseg_id,
    sample_size_lwh,
)
from .shapes import ShapeBuilder, Shapes, place_shapes

OCCUPANCY_DT = 0.1
# Agents are placed where the ego can see them: within this distance of it at some time.
PLACEMENT_RADIUS = 80.0
# Structure is built this far beyond the ego path at both ends.
STRUCTURE_REACH = 110.0

SEG_DRIVEABLE = lidarseg_id("flat.driveable_surface")
SEG_SIDEWALK = lidarseg_id("flat.sidewalk")
SEG_TERRAIN = lidarseg_id("flat.terrain")
SEG_MANMADE = lidarseg_id("static.manmade")
SEG_VEGETATION = lidarseg_id("static.vegetation")

NUSCENES_LOCATIONS: tuple[tuple[str, bool, float], ...] = (
    ("boston-seaport", False, 0.55),
    ("singapore-onenorth", True, 0.2),
    ("singapore-queenstown", True, 0.15),
    ("singapore-hollandvillage", True, 0.1),
)
"""(location, drives on the left, probability) of the nuScenes maps."""


# ---------------------------------------------------------------------------- layout
@dataclass
class RoadLayout:
    """A straight main road along x (centre line y = 0) with an optional cross street along y.

    Per side of the centre line, outwards: ``lanes_per_direction`` driving lanes, a bike lane,
    a parking lane, the curb (at ``road_half_width``), the sidewalk. ``cross_sides`` lists on
    which sides (y sign) the cross street leaves the main road (both: four-way; one: T).
    """

    lane_width: float
    lanes_per_direction: int
    bike_lane_width: float
    parking_width: float
    sidewalk_width: float
    curb_height: float
    left_hand_traffic: bool
    cross_x: float | None
    cross_half_width: float
    cross_sides: tuple[int, ...]

    @property
    def lanes_half_width(self) -> float:
        return self.lanes_per_direction * self.lane_width

    @property
    def road_half_width(self) -> float:
        return self.lanes_half_width + self.bike_lane_width + self.parking_width

    @property
    def sidewalk_outer(self) -> float:
        return self.road_half_width + self.sidewalk_width

    def side_of(self, direction: int) -> int:
        """y sign of the main-road lanes travelling along +x (direction 1) or -x (-1)."""
        return direction if self.left_hand_traffic else -direction

    def direction_of(self, side: int) -> int:
        """Travel direction (+1 / -1 along x) of the lanes on the ``side`` (y sign) of the road."""
        return side if self.left_hand_traffic else -side

    def lane_y(self, direction: int, index: int) -> float:
        """Centre y of driving lane ``index`` (0 next to the centre line) travelling along ``direction``."""
        return self.side_of(direction) * (index + 0.5) * self.lane_width

    def cross_lane_x(self, direction: int) -> float:
        """Centre x of the cross-street lane travelling along ``direction`` * +y."""
        assert self.cross_x is not None
        right = direction * 0.5 * self.lane_width
        return self.cross_x + (-right if self.left_hand_traffic else right)

    def in_cross_corridor(self, x: float | np.ndarray, side: int, pad: float = 0.0):
        """True where x lies across the cross street (plus ``pad``) on the ``side`` it leaves to."""
        if self.cross_x is None or side not in self.cross_sides:
            return np.zeros_like(np.asarray(x, dtype=bool))
        return np.abs(np.asarray(x) - self.cross_x) < self.cross_half_width + pad

    def walk_band(self) -> tuple[float, float]:
        """|y| range where people walk along the main-road sidewalks."""
        lo = self.road_half_width + 1.0
        hi = max(lo + 0.2, self.sidewalk_outer - 0.5)
        return lo, hi


@dataclass
class GroundPaint:
    """What the flat ground is made of: axis-aligned patches over a default (terrain).

    ``rects`` (P, 4): xmin, xmax, ymin, ymax. A patch with ``axis`` 0 (1) is painted only where
    ``(x - offset) mod period < duty`` (same with y): dashed lines and zebra bars; axis -1 is
    solid. The last patch that covers a point wins.
    """

    rects: np.ndarray
    axis: np.ndarray
    period: np.ndarray
    duty: np.ndarray
    offset: np.ndarray
    lidarseg: np.ndarray
    reflectivity: np.ndarray
    default_lidarseg: int = SEG_TERRAIN
    default_reflectivity: float = 0.25
    height: float = 0.0

    def lookup(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) ground points -> lidarseg ids (N,) uint8 and reflectivity (N,)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        seg = np.full(len(xy), self.default_lidarseg, np.uint8)
        refl = np.full(len(xy), self.default_reflectivity)
        for p in range(len(self.rects)):
            x0, x1, y0, y1 = self.rects[p]
            inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
            if self.axis[p] >= 0:
                u = xy[:, self.axis[p]] - self.offset[p]
                inside &= np.mod(u, self.period[p]) < self.duty[p]
            seg[inside] = self.lidarseg[p]
            refl[inside] = self.reflectivity[p]
        return seg, refl


class _PaintBuilder:
    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def solid(self, x0, x1, y0, y1, seg, refl) -> None:
        self.rows.append((min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1), -1, 1.0, 1.0, 0.0, seg, refl))

    def periodic(self, x0, x1, y0, y1, axis, period, duty, offset, seg, refl) -> None:
        self.rows.append((min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1), axis, period, duty, offset, seg, refl))

    def build(self, default_seg: int, default_refl: float) -> GroundPaint:
        rows = np.array([r[:8] for r in self.rows], dtype=np.float64).reshape(-1, 8)
        return GroundPaint(
            rects=rows[:, :4].copy(), axis=rows[:, 4].astype(np.int8), period=rows[:, 5].copy(),
            duty=rows[:, 6].copy(), offset=rows[:, 7].copy(),
            lidarseg=np.array([r[8] for r in self.rows], np.uint8),
            reflectivity=np.array([r[9] for r in self.rows], np.float64),
            default_lidarseg=default_seg, default_reflectivity=default_refl,
        )


# ------------------------------------------------------------------------- ego motion
@dataclass
class EgoTrajectory:
    """The ego's rear-axle pose on a fine time grid: ``times`` (T,) s, ``position`` (T, 2) map xy,
    ``yaw``/``pitch``/``roll`` (T,) radians, ``speed`` (T,) m/s."""

    times: np.ndarray
    position: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    speed: np.ndarray

    def pose(self, t: float) -> np.ndarray:
        """4x4 ``map_from_ego`` at time ``t``: R = Rz(yaw) Ry(pitch) Rx(roll), origin on the ground."""
        x, y = (np.interp(t, self.times, self.position[:, k]) for k in range(2))
        yaw, pitch, roll = (np.interp(t, self.times, a) for a in (self.yaw, self.pitch, self.roll))
        cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
        pose = np.eye(4)
        pose[:3, :3] = [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
        pose[:3, 3] = [x, y, 0.0]
        return pose

    def footprint(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centres (T, 2) and yaws (T,) of the ego body's BEV rectangle at ``times``."""
        x, y = (np.interp(times, self.times, self.position[:, k]) for k in range(2))
        yaw = np.interp(times, self.times, self.yaw)
        offset = EGO_LENGTH / 2 - EGO_REAR_OVERHANG
        return np.stack([x + offset * np.cos(yaw), y + offset * np.sin(yaw)], axis=1), yaw


def _speed_profile(rng: np.random.Generator, times: np.ndarray, mode: str) -> np.ndarray:
    """Ego speed (T,) for a driving mode: ``cruise``, ``stop_and_go`` or ``stationary``."""
    if mode == "stationary":
        return np.zeros_like(times)
    cruise = rng.uniform(4.0, 11.0)
    if mode == "cruise":
        wobble = rng.uniform(0.0, 1.0) * np.sin(2 * np.pi * times / rng.uniform(8, 20) + rng.uniform(0, 2 * np.pi))
        return np.maximum(cruise + wobble, 1.0)
    brake_at, brake, wait, accel = rng.uniform(2, 8), rng.uniform(1.5, 3.0), rng.uniform(2, 6), rng.uniform(1.0, 2.0)
    stop_at = brake_at + cruise / brake
    go_at = stop_at + wait
    speed = np.full_like(times, cruise)
    speed = np.where(times > brake_at, cruise - brake * (times - brake_at), speed)
    speed = np.where(times > stop_at, 0.0, speed)
    speed = np.where(times > go_at, np.minimum(accel * (times - go_at), cruise), speed)
    return np.maximum(speed, 0.0)


def _ego_trajectory(rng: np.random.Generator, duration: float, mode: str, start_x: float, lane_y: float) -> EgoTrajectory:
    times = np.arange(-0.5, duration + 0.51, 0.01)
    speed = _speed_profile(rng, np.maximum(times, 0.0), mode)
    distance = start_x + np.concatenate([[0.0], np.cumsum((speed[1:] + speed[:-1]) / 2 * np.diff(times))])
    distance -= np.interp(0.0, times, distance) - start_x
    amplitude, wavelength, phase = rng.uniform(0.0, 0.2), rng.uniform(40, 120), rng.uniform(0, 2 * np.pi)
    k = 2 * np.pi / wavelength
    y = lane_y + amplitude * np.sin(k * distance + phase)
    yaw = np.arctan(amplitude * k * np.cos(k * distance + phase))
    accel = np.gradient(speed, times)
    smooth = lambda scale: scale * sum(
        rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * times / rng.uniform(1.5, 6) + rng.uniform(0, 2 * np.pi))
        for _ in range(3)
    )
    pitch = -0.005 * accel + smooth(0.0015)
    roll = smooth(0.0015)
    return EgoTrajectory(times, np.stack([distance, y], axis=1), yaw, pitch, roll, speed)


# --------------------------------------------------------------------- scene container
@dataclass
class Scene:
    """A sampled scene: layout, ground paint, static structure (map frame), ego path and agents."""

    layout: RoadLayout
    ground: GroundPaint
    structure: Shapes
    ego: EgoTrajectory
    agents: list[Agent]
    duration_s: float
    location: str
    description: str
    _templates: Shapes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        parts = []
        for index, agent in enumerate(self.agents):
            template = agent.template.select(slice(None))
            template.agent = np.full(len(template), index, np.int32)
            parts.append(template)
        self._templates = Shapes.concat(parts)
        self._start = np.array([a.start for a in self.agents], np.float64).reshape(-1, 3)
        self._velocity = np.array([a.velocity for a in self.agents], np.float64).reshape(-1, 2)
        self._yaw = np.array([a.yaw for a in self.agents], np.float64)
        self._size = np.array([a.size_lwh for a in self.agents], np.float64).reshape(-1, 3)
        self._gait = np.array([[a.gait_hz, a.gait_phase] for a in self.agents], np.float64).reshape(-1, 2)

    @property
    def instance_ids(self) -> np.ndarray:
        return np.array([a.instance_id for a in self.agents], np.int64)

    def agent_boxes(self, t: float) -> np.ndarray:
        """(N, 9) boxes of all agents at time ``t`` in the map frame: x, y, z, l, w, h, yaw, vx, vy."""
        center = self._start.copy()
        center[:, :2] += self._velocity * t
        return np.concatenate([center, self._size, self._yaw[:, None], self._velocity], axis=1)

    def shapes_at(self, t: float) -> Shapes:
        """Structure plus every agent's shapes placed at time ``t`` (map frame)."""
        if not self.agents:
            return self.structure
        boxes = self.agent_boxes(t)
        phase = 2 * np.pi * self._gait[:, 0] * t + self._gait[:, 1]
        return Shapes.concat([self.structure, place_shapes(self._templates, boxes[:, :3], boxes[:, 6], phase)])


# ------------------------------------------------------------------ collision checking
def rectangles_overlap(c1, yaw1, half1, c2, yaw2, half2) -> np.ndarray:
    """Separating-axis test of BEV rectangles, broadcast over leading dims.

    ``c`` (..., 2) centres, ``yaw`` (...,), ``half`` (..., 2) half length and half width.
    Touching counts as overlap.
    """
    c1, c2 = np.asarray(c1, float), np.asarray(c2, float)
    yaw1, yaw2 = np.asarray(yaw1, float), np.asarray(yaw2, float)
    half1, half2 = np.asarray(half1, float), np.asarray(half2, float)
    u1 = np.stack([np.cos(yaw1), np.sin(yaw1)], -1)
    v1 = np.stack([-np.sin(yaw1), np.cos(yaw1)], -1)
    u2 = np.stack([np.cos(yaw2), np.sin(yaw2)], -1)
    v2 = np.stack([-np.sin(yaw2), np.cos(yaw2)], -1)
    d = c2 - c1
    separated = np.zeros(np.broadcast_shapes(d.shape[:-1], yaw1.shape, yaw2.shape), bool)
    for axis in (u1, v1, u2, v2):
        dot = lambda a, b: np.sum(a * b, axis=-1)
        r1 = half1[..., 0] * np.abs(dot(u1, axis)) + half1[..., 1] * np.abs(dot(v1, axis))
        r2 = half2[..., 0] * np.abs(dot(u2, axis)) + half2[..., 1] * np.abs(dot(v2, axis))
        separated |= np.abs(dot(d, axis)) > r1 + r2
    return ~separated


class _Occupancy:
    """BEV rectangles over the scene's time grid; answers whether a new moving rectangle fits."""

    def __init__(self, times: np.ndarray):
        self.times = times
        self.tracks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.boxes = np.zeros((0, 4))

    def add(self, centers: np.ndarray, yaws: np.ndarray, half: Sequence[float]) -> None:
        """``centers`` (T, 2) or (1, 2) for a static rectangle, ``yaws`` (T,) or (1,)."""
        half = np.asarray(half, float)
        reach = float(np.hypot(*half))
        self.tracks.append((centers, yaws, half))
        aabb = np.array([[centers[:, 0].min() - reach, centers[:, 0].max() + reach,
                          centers[:, 1].min() - reach, centers[:, 1].max() + reach]])
        self.boxes = np.concatenate([self.boxes, aabb])

    def fits(self, centers: np.ndarray, yaws: np.ndarray, half: Sequence[float], clearance: float) -> bool:
        half = np.asarray(half, float) + clearance
        reach = float(np.hypot(*half))
        x0, x1 = centers[:, 0].min() - reach, centers[:, 0].max() + reach
        y0, y1 = centers[:, 1].min() - reach, centers[:, 1].max() + reach
        near = np.flatnonzero((self.boxes[:, 0] <= x1) & (self.boxes[:, 1] >= x0)
                              & (self.boxes[:, 2] <= y1) & (self.boxes[:, 3] >= y0))
        for index in near:
            other_c, other_yaw, other_half = self.tracks[index]
            if rectangles_overlap(centers, yaws, half, other_c, other_yaw, other_half).any():
                return False
        return True


# ------------------------------------------------------------------------- the sampler
_LANE_MIX = (("car", 0.80), ("truck", 0.11), ("bus", 0.03), ("semi", 0.045), ("motorcycle", 0.015),
             ("construction_vehicle", 0.015))
_PARKED_MIX = (("car", 0.86), ("truck", 0.1), ("trailer", 0.035), ("construction_vehicle", 0.01),
               ("motorcycle", 0.01))
_CATEGORY = {
    "car": "vehicle.car", "truck": "vehicle.truck", "construction_vehicle": "vehicle.construction",
    "trailer": "vehicle.trailer", "motorcycle": "vehicle.motorcycle", "bicycle": "vehicle.bicycle",
    "barrier": "movable_object.barrier", "traffic_cone": "movable_object.trafficcone",
}


def _pick(rng: np.random.Generator, mix) -> str:
    names, weights = zip(*mix)
    weights = np.asarray(weights, float)
    return str(rng.choice(names, p=weights / weights.sum()))


class _SceneBuilder:
    """Builds one scene step by step; every placement goes through the occupancy check."""

    def __init__(self, rng: np.random.Generator, duration: float, location: str, left_hand: bool):
        self.rng = rng
        self.duration = duration
        self.location = location
        self.times = np.arange(0.0, duration + 1e-9, OCCUPANCY_DT)
        self.occupancy = _Occupancy(self.times)
        self.structure = ShapeBuilder()
        self.paint = _PaintBuilder()
        self.agents: list[Agent] = []
        self.notes: list[str] = []
        self.left_hand = left_hand

    # ------------------------------------------------------------ helpers
    def ego_x_at(self, t) -> np.ndarray:
        return np.interp(t, self.ego.times, self.ego.position[:, 0])

    def add_agent(self, detection_class: str, center_xy, yaw: float, velocity=(0.0, 0.0), attribute: str = "",
                  category: str | None = None, size_lwh: np.ndarray | None = None, tractor: bool = False,
                  clearance: float = 0.15) -> bool:
        """Place one agent if its box stays clear of everything placed so far during the scene."""
        rng = self.rng
        category = category or _CATEGORY.get(detection_class, "")
        if detection_class == "bus":
            category = category or "vehicle.bus.rigid"
        if detection_class == "pedestrian":
            category = category or "human.pedestrian.adult"
        size = sample_size_lwh(detection_class, rng) if size_lwh is None else np.asarray(size_lwh, float)
        if category == "human.pedestrian.child":
            size = size * np.array([0.85, 0.85, 0.72])
        velocity = np.asarray(velocity, float)
        centers = np.asarray(center_xy, float)[None, :] + velocity[None, :] * self.times[:, None]
        yaws = np.full(len(self.times), yaw)
        if not self.occupancy.fits(centers, yaws, size[:2] / 2, clearance):
            return False
        self.occupancy.add(centers, yaws, size[:2] / 2)
        template = agent_template(detection_class, category, attribute, size, rng, AGENT_MARGIN, tractor)
        speed = float(np.hypot(*velocity))
        gait_hz = speed / 1.4 if detection_class == "pedestrian" and speed > 0 else 0.0
        self.agents.append(Agent(
            instance_id=len(self.agents), detection_class=detection_class, category=category, attribute=attribute,
            size_lwh=size, start=np.array([center_xy[0], center_xy[1], size[2] / 2]), velocity=velocity,
            yaw=float((yaw + np.pi) % (2 * np.pi) - np.pi), template=template, gait_hz=gait_hz,
            gait_phase=float(rng.uniform(0, 2 * np.pi)),
        ))
        return True

    def add_footprint(self, cx, cy, half_l, half_w, yaw=0.0) -> None:
        self.occupancy.add(np.array([[cx, cy]], float), np.array([yaw]), (half_l, half_w))

    def static_fits(self, cx, cy, half_l, half_w, yaw=0.0, clearance=0.1) -> bool:
        return self.occupancy.fits(np.array([[cx, cy]], float), np.array([yaw]), (half_l, half_w), clearance)

    def x_window(self, speed_along_x: float, reach: float = PLACEMENT_RADIUS) -> tuple[float, float]:
        """Start positions (x at t=0) from which something moving at ``speed_along_x`` passes within
        ``reach`` of the ego (along x) at some time of the scene."""
        rel = self.ego_x_at(self.times) - speed_along_x * self.times
        return float(rel.min() - reach), float(rel.max() + reach)

    # ------------------------------------------------------------ layout
    def sample_layout(self) -> None:
        rng = self.rng
        lanes = int(rng.choice([1, 2, 3], p=[0.4, 0.45, 0.15]))
        self.layout = RoadLayout(
            lane_width=rng.uniform(3.2, 3.7), lanes_per_direction=lanes,
            bike_lane_width=1.5 if rng.random() < 0.4 else 0.0,
            parking_width=rng.uniform(2.4, 2.8) if rng.random() < 0.65 else 0.0,
            sidewalk_width=rng.uniform(2.6, 5.0), curb_height=rng.uniform(0.1, 0.18), left_hand_traffic=self.left_hand,
            cross_x=None, cross_half_width=0.0, cross_sides=(),
        )

    def sample_ego(self) -> None:
        rng = self.rng
        layout = self.layout
        self.mode = str(rng.choice(["cruise", "stop_and_go", "stationary"], p=[0.45, 0.3, 0.25]))
        self.ego_lane = int(rng.integers(0, layout.lanes_per_direction))
        has_cross = rng.random() < 0.8
        cross_half = layout.lane_width + rng.uniform(0.0, 1.0)
        self.red_light = self.mode == "stationary" and has_cross and rng.random() < 0.8
        lane_y = layout.lane_y(1, self.ego_lane)
        if self.red_light:
            queue = int(rng.integers(0, 3))
            cross_x = 0.0
            stop_x = cross_x - cross_half - layout.sidewalk_width - 1.5
            start_x = stop_x - (EGO_LENGTH - EGO_REAR_OVERHANG) - rng.uniform(0.5, 2.0) - queue * rng.uniform(6, 8)
        else:
            start_x = 0.0
        self.ego = _ego_trajectory(rng, self.duration, self.mode, start_x, lane_y)
        if has_cross and not self.red_light:
            ego_end = float(self.ego.position[-1, 0])
            cross_x = rng.uniform(start_x - 30.0, ego_end + 50.0)
        if has_cross:
            sides = (-1, 1) if rng.random() < 0.6 else (int(rng.choice([-1, 1])),)
            self.layout.cross_x, self.layout.cross_half_width, self.layout.cross_sides = cross_x, cross_half, sides
        centers, yaws = self.ego.footprint(self.times)
        self.occupancy.add(centers, yaws, (EGO_LENGTH / 2, EGO_WIDTH / 2))
        self.x_lo = float(self.ego.position[:, 0].min() - STRUCTURE_REACH)
        self.x_hi = float(self.ego.position[:, 0].max() + STRUCTURE_REACH)
        self.notes.append(f"ego {self.mode}" + (" at a red light" if self.red_light else ""))

    def has_shoulder(self, width: float) -> bool:
        """Whether the bike and parking lanes together are at least ``width`` wide."""
        return self.layout.bike_lane_width + self.layout.parking_width >= width

    def stop_line_x(self, direction: int) -> float:
        """x of the main-road stop line before the intersection for traffic along ``direction``."""
        L = self.layout
        return L.cross_x - direction * (L.cross_half_width + L.sidewalk_width + 1.5)

    def segments_along_x(self, side: int, pad: float) -> list[tuple[float, float]]:
        """[x0, x1] stretches of the content range not cut by the cross street on ``side``."""
        L = self.layout
        if L.cross_x is None or side not in L.cross_sides:
            return [(self.x_lo, self.x_hi)]
        cut0, cut1 = L.cross_x - L.cross_half_width - pad, L.cross_x + L.cross_half_width + pad
        return [(a, b) for a, b in ((self.x_lo, min(cut0, self.x_hi)), (max(cut1, self.x_lo), self.x_hi)) if b > a]

    # ------------------------------------------------------------ ground
    def build_ground(self) -> None:
        L, rng, P = self.layout, self.rng, self.paint
        far0, far1 = self.x_lo - 400.0, self.x_hi + 400.0
        hw, sw = L.road_half_width, L.sidewalk_width
        asphalt = rng.uniform(0.07, 0.13)
        concrete = rng.uniform(0.18, 0.3)
        marking = rng.uniform(0.8, 1.3)
        for side in (-1, 1):
            P.solid(far0, far1, side * hw, side * L.sidewalk_outer, SEG_SIDEWALK, concrete)
        P.solid(far0, far1, -hw, hw, SEG_DRIVEABLE, asphalt)
        if L.cross_x is not None:
            cx, cw = L.cross_x, L.cross_half_width
            for side in L.cross_sides:
                P.solid(cx - cw - sw, cx + cw + sw, side * hw, side * (hw + 400), SEG_SIDEWALK, concrete)
                P.solid(cx - cw, cx + cw, side * hw * 0.5, side * (hw + 400), SEG_DRIVEABLE, asphalt)
                # Zebra across the cross street, in line with the main sidewalk.
                P.periodic(cx - cw, cx + cw, side * (hw + 0.5), side * (L.sidewalk_outer - 0.5), 0, 1.2, 0.6,
                           cx - cw, SEG_DRIVEABLE, marking)
                P.solid(L.cross_lane_x(-side) - L.lane_width / 2, L.cross_lane_x(-side) + L.lane_width / 2,
                        side * (L.sidewalk_outer + 1.0), side * (L.sidewalk_outer + 1.4), SEG_DRIVEABLE, marking)
        # Lane markings, interrupted across the intersection.
        stretches = [(far0, far1)]
        if L.cross_x is not None:
            cut = L.cross_half_width + sw + 4.0
            stretches = [(far0, L.cross_x - cut), (L.cross_x + cut, far1)]
        for x0, x1 in stretches:
            P.solid(x0, x1, -0.17, -0.07, SEG_DRIVEABLE, marking * 0.8)
            P.solid(x0, x1, 0.07, 0.17, SEG_DRIVEABLE, marking * 0.8)
            for side in (-1, 1):
                for lane in range(1, L.lanes_per_direction):
                    y = side * lane * L.lane_width
                    P.periodic(x0, x1, y - 0.075, y + 0.075, 0, 12.0, 3.0, rng.uniform(0, 12), SEG_DRIVEABLE, marking)
                y = side * L.lanes_half_width
                P.solid(x0, x1, y - 0.075, y + 0.075, SEG_DRIVEABLE, marking)
        if L.cross_x is not None:
            for direction in (-1, 1):
                # Zebra across the main road and the stop line before it.
                zebra_x = L.cross_x - direction * (L.cross_half_width + sw / 2 + 0.5)
                P.periodic(zebra_x - 1.5, zebra_x + 1.5, -hw, hw, 1, 1.2, 0.6, 0.0, SEG_DRIVEABLE, marking)
                stop = self.stop_line_x(direction)
                side = L.side_of(direction)
                P.solid(stop, stop - direction * 0.4, 0.0, side * L.lanes_half_width, SEG_DRIVEABLE, marking)
        self.ground = P.build(SEG_TERRAIN, rng.uniform(0.2, 0.32))

    # ------------------------------------------------------------ structure
    def build_curbs(self) -> None:
        L = self.layout
        hw, height = L.road_half_width, L.curb_height
        for side in (-1, 1):
            for x0, x1 in self.segments_along_x(side, 0.0):
                for a in np.arange(x0, x1, 12.0):
                    b = min(a + 12.0, x1)
                    y = side * (hw + 0.1)
                    self.structure.box(((a + b) / 2, y, height / 2), ((b - a) / 2, 0.1, height / 2), 0.0, 0.3,
                                       SEG_SIDEWALK)
        if L.cross_x is not None:
            for side in L.cross_sides:
                for edge in (-1, 1):
                    x = L.cross_x + edge * (L.cross_half_width + 0.1)
                    for a in np.arange(hw, hw + STRUCTURE_REACH, 12.0):
                        y = side * (a + 6.0)
                        self.structure.box((x, y, height / 2), (0.1, 6.0, height / 2), 0.0, 0.3, SEG_SIDEWALK)

    def add_pole(self, x, y, height, radius=0.12, arm_side: int = 0, arm_length: float = 0.0) -> bool:
        if not self.static_fits(x, y, radius, radius):
            return False
        self.add_footprint(x, y, radius, radius)
        self.structure.cylinder((x, y, height / 2), radius, height / 2, 0.35, SEG_MANMADE)
        if arm_length > 0:
            self.structure.box((x, y + arm_side * arm_length / 2, height - 0.2), (0.08, arm_length / 2, 0.08), 0.0,
                               0.35, SEG_MANMADE)
            self.structure.box((x, y + arm_side * arm_length, height - 0.35), (0.3, 0.2, 0.1), 0.0, 0.5, SEG_MANMADE)
        return True

    def add_tree(self, x, y, rng: np.random.Generator) -> bool:
        radius = rng.uniform(0.12, 0.28)
        if not self.static_fits(x, y, radius, radius, clearance=0.3):
            return False
        self.add_footprint(x, y, radius, radius)
        # Street trees are pruned to clear traffic (~4.3 m): the canopy starts at the trunk's top,
        # so it never reaches into a vehicle's box, even a bus or trailer at the kerb.
        trunk = rng.uniform(4.3, 5.5)
        self.structure.cylinder((x, y, trunk / 2), radius, trunk / 2, rng.uniform(0.25, 0.4), SEG_VEGETATION)
        rxy, rz = rng.uniform(1.2, 3.0), rng.uniform(1.2, 2.6)
        self.structure.ellipsoid((x, y, trunk + rz), (rxy, rxy * rng.uniform(0.8, 1.2), rz), rng.uniform(0, np.pi),
                                 rng.uniform(0.4, 0.75), SEG_VEGETATION, porosity=rng.uniform(0.25, 0.5))
        return True

    def add_building(self, x0, x1, side, y_inner, depth, height) -> None:
        rng = self.rng
        refl = rng.uniform(0.15, 0.55)
        y_outer = y_inner + depth
        cx, cy = (x0 + x1) / 2, side * (y_inner + y_outer) / 2
        self.structure.box((cx, cy, height / 2), ((x1 - x0) / 2, depth / 2, height / 2), 0.0, refl, SEG_MANMADE)
        self.add_footprint(cx, cy, (x1 - x0) / 2, depth / 2)
        if height > 8 and rng.random() < 0.35:
            top = rng.uniform(3, 12)
            inset = rng.uniform(1.0, 3.0)
            self.structure.box((cx, cy + side * inset / 2, height + top / 2),
                               (max((x1 - x0) / 2 - inset, 1.0), max(depth / 2 - inset / 2, 1.0), top / 2), 0.0,
                               refl, SEG_MANMADE)
        if rng.random() < 0.25 and y_inner - self.layout.sidewalk_outer < 0.5:
            awning = rng.uniform(1.0, 1.8)
            self.structure.box((cx, side * (y_inner - awning / 2), 3.0), ((x1 - x0) / 2 * 0.8, awning / 2, 0.08), 0.0,
                               rng.uniform(0.2, 0.6), SEG_MANMADE)
        for x in np.arange(x0 + 2.0, x1 - 1.0, rng.uniform(3.0, 6.0)) if rng.random() < 0.4 else []:
            self.structure.box((x, side * (y_inner - 0.15), height / 2), (0.25, 0.15, height / 2), 0.0, refl * 0.8,
                               SEG_MANMADE)

    def add_vegetation_lot(self, x0, x1, side, y_inner) -> None:
        rng = self.rng
        for _ in range(int(rng.integers(1, 3 + int((x1 - x0) / 8)))):
            x, d = rng.uniform(x0 + 1, x1 - 1), rng.uniform(1.5, 15.0)
            if rng.random() < 0.55:
                self.add_tree(x, side * (y_inner + d), rng)
            else:
                r = rng.uniform(0.4, 1.4)
                self.structure.ellipsoid((x, side * (y_inner + d), r * 0.6), (r, r * rng.uniform(0.7, 1.5), r * 0.7),
                                         rng.uniform(0, np.pi), rng.uniform(0.3, 0.5), SEG_VEGETATION, porosity=0.3)

    def build_frontage(self, side: int, reserved: list[tuple[float, float]]) -> None:
        """Buildings, walls, vegetation lots and a parking lot along one side of the main road."""
        rng, L = self.rng, self.layout
        dense = rng.uniform(0.45, 0.85)
        for x0, x1 in self.segments_along_x(side, L.sidewalk_width + 1.0):
            x = x0
            while x < x1:
                length = min(rng.uniform(8.0, 35.0), x1 - x)
                if length < 3.0:
                    break
                blocked = any(a < x + length and x < b for a, b in reserved)
                setback = rng.uniform(0.0, 5.0) if rng.random() < 0.6 else 0.0
                y_inner = L.sidewalk_outer + setback
                kind = rng.random()
                if blocked:
                    pass
                elif kind < dense:
                    self.add_building(x, x + length, side, y_inner, rng.uniform(8, 25), rng.uniform(4, 28))
                elif kind < dense + 0.1:
                    h = rng.uniform(1.0, 2.5)
                    fence = rng.random() < 0.5
                    self.structure.box((x + length / 2, side * (y_inner + 0.1), h / 2), (length / 2, 0.1, h / 2), 0.0,
                                       rng.uniform(0.2, 0.5), SEG_MANMADE, porosity=0.45 if fence else 0.0)
                    self.add_footprint(x + length / 2, side * (y_inner + 0.1), length / 2, 0.1)
                    self.add_vegetation_lot(x, x + length, side, y_inner + 1.0)
                else:
                    self.add_vegetation_lot(x, x + length, side, y_inner)
                x += length + (rng.uniform(1.0, 12.0) if rng.random() < 0.6 else 0.0)

    def build_street_furniture(self) -> None:
        rng, L = self.rng, self.layout
        hw = L.road_half_width
        for side in (-1, 1):
            has_trees = rng.random() < 0.65
            for x0, x1 in self.segments_along_x(side, L.sidewalk_width + 1.0):
                for x in np.arange(x0 + rng.uniform(0, 30), x1, rng.uniform(25, 40)):
                    self.add_pole(x, side * (hw + 0.45), rng.uniform(6.5, 9.0), arm_side=-side,
                                  arm_length=rng.uniform(1.0, 2.5))
                if has_trees:
                    for x in np.arange(x0 + rng.uniform(0, 10), x1, rng.uniform(7, 14)):
                        self.add_tree(x + rng.normal(0, 0.5), side * (hw + 0.6), rng)
                for x in np.arange(x0 + rng.uniform(0, 60), x1, rng.uniform(40, 90)):
                    if self.add_pole(x, side * (hw + 0.35), rng.uniform(2.4, 3.2), radius=0.05):
                        h = self.structure
                        h.box((x, side * (hw + 0.35), 2.6), (0.03, 0.35, 0.35), 0.0, 2.0, SEG_MANMADE)
                for x in np.arange(x0 + rng.uniform(0, 30), x1, rng.uniform(20, 60)):
                    y = side * (hw + rng.uniform(0.4, 0.7))
                    if self.static_fits(x, y, 0.3, 0.3):
                        self.add_footprint(x, y, 0.3, 0.3)
                        if rng.random() < 0.5:
                            self.structure.box((x, y, 0.5), (0.3, 0.3, 0.5), 0.0, rng.uniform(0.1, 0.4), SEG_MANMADE)
                        else:
                            self.structure.cylinder((x, y, 0.35), 0.15, 0.35, 0.5, SEG_MANMADE)
        if L.cross_x is not None:
            for side in (-1, 1):
                for edge in (-1, 1):
                    x = L.cross_x + edge * (L.cross_half_width + 0.6)
                    arm = L.lanes_half_width * 0.8 if side in L.cross_sides else 0.0
                    self.add_pole(x, side * (hw + 0.6), 5.8, radius=0.15, arm_side=-side, arm_length=arm)

    # ------------------------------------------------------------ construction
    def build_construction(self) -> list[tuple[int, float, float]]:
        """A lane closure or an off-road work site; returns (side, x0, x1) of reserved frontage."""
        rng, L = self.rng, self.layout
        if rng.random() > 0.6:
            return []
        ego_x0, ego_x1 = float(self.ego.position[:, 0].min()), float(self.ego.position[:, 0].max())
        length = rng.uniform(15.0, 40.0)
        x0 = rng.uniform(ego_x0 - 25.0, ego_x1 + 25.0)
        side = int(rng.choice([-1, 1]))
        if L.cross_x is not None and abs(x0 + length / 2 - L.cross_x) < length / 2 + L.cross_half_width + 8:
            x0 = L.cross_x + L.cross_half_width + 10.0
        workers = int(rng.integers(1, 4))
        if rng.random() < 0.6 and (self.has_shoulder(2.4) or L.lanes_per_direction >= 2):
            self.notes.append("lane closure")
            width = L.bike_lane_width + L.parking_width
            if width < 3.2:
                width += L.lane_width
            y_in = L.road_half_width - width
            direction = L.direction_of(side)
            upstream = x0 if direction > 0 else x0 + length
            for x in np.arange(x0, x0 + length, rng.uniform(2.0, 4.0)):
                taper = np.clip(abs(x - upstream) / 8.0, 0.0, 1.0)
                y = L.road_half_width - 0.5 - taper * (L.road_half_width - 0.5 - (y_in + 0.35))
                self.add_agent("traffic_cone", (x, side * y), rng.uniform(-np.pi, np.pi))
            downstream = x0 + length if direction > 0 else x0
            for k in range(int(rng.integers(2, 6))):
                y = L.road_half_width - 1.5 - k * 2.7
                if y - 1.3 < y_in:
                    break
                self.add_agent("barrier", (downstream - direction * 0.5, side * y), 0.0)
            if rng.random() < 0.85:
                cy = side * (y_in + L.road_half_width) / 2
                self.add_agent("construction_vehicle", (x0 + length / 2, cy), rng.choice([0.0, np.pi]) + rng.normal(0, 0.1),
                               attribute="vehicle.parked")
            area = (x0, x0 + length, side * y_in, side * L.road_half_width)
        else:
            self.notes.append("work site")
            y_inner = L.sidewalk_outer + 1.0
            depth = rng.uniform(12.0, 25.0)
            for x in np.arange(x0 + 1.4, x0 + length - 1.2, rng.uniform(2.6, 3.2)):
                self.add_agent("barrier", (x, side * (y_inner + 0.4)), np.pi / 2 + rng.normal(0, 0.03))
            for _ in range(int(rng.integers(1, 4))):
                self.add_agent("construction_vehicle",
                               (rng.uniform(x0 + 4, x0 + length - 4), side * rng.uniform(y_inner + 5, y_inner + depth - 3)),
                               rng.uniform(-np.pi, np.pi), attribute=str(rng.choice(["vehicle.parked", "vehicle.stopped"])))
            for _ in range(int(rng.integers(4, 15))):
                self.add_agent("traffic_cone", (rng.uniform(x0, x0 + length), side * rng.uniform(y_inner + 1.5, y_inner + depth)),
                               rng.uniform(-np.pi, np.pi))
            if rng.random() < 0.4:
                self.add_agent("truck", (rng.uniform(x0 + 5, x0 + length - 5), side * (y_inner + depth - 3)),
                               rng.choice([0.0, np.pi]), attribute="vehicle.parked")
            self.paint.solid(x0, x0 + length, side * y_inner, side * (y_inner + depth), SEG_TERRAIN,
                             rng.uniform(0.15, 0.3))
            area = (x0, x0 + length, side * (y_inner + 1.0), side * (y_inner + depth))
        for _ in range(workers):
            x, y = rng.uniform(area[0], area[1]), rng.uniform(min(area[2], area[3]), max(area[2], area[3]))
            moving = rng.random() < 0.4
            heading = rng.uniform(-np.pi, np.pi)
            speed = rng.uniform(0.2, 0.5) if moving else 0.0
            self.add_agent("pedestrian", (x, y), heading, (speed * np.cos(heading), speed * np.sin(heading)),
                           attribute="pedestrian.moving" if moving else "pedestrian.standing",
                           category="human.pedestrian.construction_worker")
        return [(side, x0 - 2.0, x0 + length + 2.0)]

    def build_barrier_rows(self) -> None:
        rng, L = self.rng, self.layout
        for _ in range(int(rng.integers(0, 4))):
            count = int(rng.integers(4, 16))
            x_start = rng.uniform(*self.x_window(0.0, 50.0))
            side = int(rng.choice([-1, 1]))
            if L.lanes_per_direction >= 2 and rng.random() < 0.5:
                y = 0.0
            elif self.has_shoulder(1.5):
                y = side * (L.road_half_width - 0.45)
            else:
                y = side * (L.road_half_width + 0.55)
            gap = rng.uniform(0.0, 0.6)
            x = x_start
            for _ in range(count):
                size = sample_size_lwh("barrier", rng)
                self.add_agent("barrier", (x + size[1] / 2, y), np.pi / 2 + rng.normal(0, 0.02), size_lwh=size)
                x += size[1] + gap
        for _ in range(int(rng.integers(0, 5))):
            x = rng.uniform(*self.x_window(0.0, 50.0))
            side = int(rng.choice([-1, 1]))
            inward = rng.uniform(0.4, 1.2) if self.has_shoulder(1.5) else -rng.uniform(0.5, 1.0)
            y = side * (L.road_half_width - inward)
            for k in range(int(rng.integers(1, 5))):
                self.add_agent("traffic_cone", (x + k * rng.uniform(1.0, 2.5), y), rng.uniform(-np.pi, np.pi))

    # ------------------------------------------------------------ vehicles
    def vehicle_in_lane(self, kind: str, x_front: float, y: float, direction: int, speed: float, attribute: str) -> float:
        """Place a lane vehicle whose front is at ``x_front``; returns the length it took (0 if rejected)."""
        rng = self.rng
        heading = 0.0 if direction > 0 else np.pi
        jitter_y, jitter_yaw = np.clip(rng.normal(0, 0.12), -0.3, 0.3), rng.normal(0, 0.01)
        velocity = (direction * speed, 0.0)
        if kind == "semi":
            tractor = sample_size_lwh("truck", rng) * np.array([0.85, 1.0, 1.0])
            trailer = sample_size_lwh("trailer", rng)
            tractor[1] = trailer[1] = min(tractor[1], trailer[1], self.layout.lane_width - 0.4)
            x_tractor = x_front - direction * tractor[0] / 2
            x_trailer = x_front - direction * (tractor[0] + 0.3 + trailer[0] / 2)
            size = np.array([tractor[0] + 0.3 + trailer[0], tractor[1], max(tractor[2], trailer[2])])
            centers = np.array([(x_front - direction * size[0] / 2, y + jitter_y)]) + np.asarray(velocity) * self.times[:, None]
            if not self.occupancy.fits(centers, np.full(len(self.times), heading), size[:2] / 2, 0.15):
                return 0.0
            self.add_agent("truck", (x_tractor, y + jitter_y), heading + jitter_yaw, velocity, attribute,
                           size_lwh=tractor, tractor=True, clearance=0.0)
            self.add_agent("trailer", (x_trailer, y + jitter_y), heading + jitter_yaw, velocity, attribute,
                           size_lwh=trailer, clearance=0.0)
            return float(size[0])
        size = sample_size_lwh(kind, rng)
        size[1] = min(size[1], self.layout.lane_width - 0.3)
        center_x = x_front - direction * size[0] / 2
        attr = "cycle.with_rider" if kind == "motorcycle" else attribute
        if not self.add_agent(kind, (center_x, y + jitter_y), heading + jitter_yaw, velocity, attr, size_lwh=size):
            return 0.0
        return float(size[0])

    def fill_lane(self, y: float, direction: int, speed: float, x_range: tuple[float, float], headway_gap: float) -> None:
        """Vehicles along a main-road lane from the far end back: all share ``speed`` so gaps hold."""
        rng = self.rng
        attribute = "vehicle.moving" if speed > 0.3 else "vehicle.stopped"
        lo, hi = x_range
        front = hi if direction > 0 else lo
        end = lo if direction > 0 else hi
        front -= direction * rng.uniform(0, headway_gap)
        while (front - end) * direction > 0:
            kind = _pick(rng, _LANE_MIX)
            taken = self.vehicle_in_lane(kind, front, y, direction, speed, attribute)
            gap = (rng.uniform(1.5, 4.0) if speed <= 0.3 else rng.uniform(4, 8) + rng.exponential(headway_gap))
            front -= direction * ((taken or rng.uniform(4.0, 6.0)) + gap)

    def build_main_traffic(self) -> None:
        rng, L = self.rng, self.layout
        ego_speed = float(self.ego.speed.max())
        busy = rng.uniform(6.0, 40.0)
        for direction in (1, -1):
            red = self.red_light
            for lane in range(L.lanes_per_direction):
                y = L.lane_y(direction, lane)
                if red:
                    stop = self.stop_line_x(direction)
                    behind = self.x_window(0.0)
                    queue_range = (behind[0], stop) if direction > 0 else (stop, behind[1])
                    self.fill_lane(y, direction, 0.0, queue_range, busy)
                    speed = rng.uniform(5.0, 12.0)
                    window = self.x_window(direction * speed)
                    past = L.cross_x + direction * (L.cross_half_width + L.sidewalk_width + 4.0)
                    self.fill_lane(y, direction, speed, (past, window[1]) if direction > 0 else (window[0], past),
                                   busy * 2)
                    continue
                if direction > 0 and lane == self.ego_lane:
                    speed = 0.0 if self.mode == "stationary" else ego_speed + rng.uniform(0.5, 2.5)
                elif rng.random() < 0.1:
                    speed = 0.0
                else:
                    speed = rng.uniform(max(2.0, ego_speed - 4.0), ego_speed + 5.0) if direction > 0 else rng.uniform(5, 14)
                self.fill_lane(y, direction, speed, self.x_window(direction * speed), busy)

    def build_cross_traffic(self) -> None:
        """Red light for the main road: cross traffic flows. Otherwise it queues at its stop lines
        or drives away from the intersection, so nothing crosses the moving main-road lanes."""
        rng, L = self.rng, self.layout
        if L.cross_x is None:
            return
        if self.red_light:
            for direction in (1, -1):
                speed = rng.uniform(5.0, 12.0)
                for _ in range(int(rng.integers(2, 8))):
                    tau, y_tau = rng.uniform(0, self.duration), rng.uniform(-70.0, 70.0)
                    y0 = y_tau - direction * speed * tau
                    y1 = y0 + direction * speed * self.duration
                    if len(L.cross_sides) == 1 and min(L.cross_sides[0] * y0, L.cross_sides[0] * y1) < L.road_half_width + 4:
                        continue
                    self.cross_vehicle(direction, y0, speed, "vehicle.moving")
            return
        for side in L.cross_sides:
            for direction in (1, -1):
                if direction == -side:
                    y_front = side * (L.sidewalk_outer + 1.5)
                    for _ in range(int(rng.integers(0, 5))):
                        taken = self.cross_vehicle(direction, y_front, 0.0, "vehicle.stopped", edge="front")
                        y_front += side * ((taken or 5.0) + rng.uniform(1.5, 4.0))
                else:
                    speed = rng.uniform(4.0, 10.0)
                    y_back = side * (L.sidewalk_outer + 3.0 + rng.uniform(0, 20))
                    for _ in range(int(rng.integers(0, 3))):
                        taken = self.cross_vehicle(direction, y_back, speed, "vehicle.moving", edge="back")
                        y_back += side * ((taken or 5.0) + rng.uniform(8.0, 30.0))

    def cross_vehicle(self, direction: int, y: float, speed: float, attribute: str, edge: str = "center") -> float:
        """A vehicle in the cross-street lane travelling along ``direction`` * +y, with its centre (or
        its front / back ``edge``) at ``y`` at t = 0; returns its length, 0 if it did not fit."""
        rng, L = self.rng, self.layout
        kind = _pick(rng, (("car", 0.85), ("truck", 0.1), ("bus", 0.03), ("motorcycle", 0.02)))
        size = sample_size_lwh(kind, rng)
        size[1] = min(size[1], L.lane_width - 0.3)
        cy = y - direction * size[0] / 2 if edge == "front" else y + direction * size[0] / 2 if edge == "back" else y
        heading = np.pi / 2 if direction > 0 else -np.pi / 2
        attribute = "cycle.with_rider" if kind == "motorcycle" else attribute
        placed = self.add_agent(kind, (L.cross_lane_x(direction) + rng.normal(0, 0.1), cy), heading + rng.normal(0, 0.01),
                                (0.0, direction * speed), attribute, size_lwh=size)
        return float(size[0]) if placed else 0.0

    def build_parking(self) -> None:
        rng, L = self.rng, self.layout
        if L.parking_width <= 0:
            return
        hw = L.road_half_width
        for side in (-1, 1):
            occupancy = rng.uniform(0.3, 0.9)
            direction = L.direction_of(side)
            lo, hi = self.x_window(0.0, PLACEMENT_RADIUS)
            x = lo
            while x < hi:
                keep_clear = L.cross_half_width + L.sidewalk_width + 8.0
                if L.cross_x is not None and abs(x - L.cross_x) < keep_clear:
                    x = L.cross_x + keep_clear + 0.5
                    continue
                if rng.random() > occupancy:
                    x += rng.uniform(4.0, 8.0)
                    continue
                kind = _pick(rng, _PARKED_MIX)
                if kind == "motorcycle":
                    for _ in range(int(rng.integers(1, 4))):
                        size = sample_size_lwh("motorcycle", rng)
                        y = side * (hw - 0.1 - size[0] / 2)
                        self.add_agent("motorcycle", (x + size[1] / 2, y), side * np.pi / 2 + rng.normal(0, 0.15),
                                       attribute="cycle.without_rider", size_lwh=size)
                        x += size[1] + rng.uniform(0.3, 0.8)
                    continue
                size = sample_size_lwh(kind, rng)
                y = side * (hw - 0.15 - size[1] / 2 - abs(rng.normal(0, 0.1)))
                heading = (0.0 if direction > 0 else np.pi) + (np.pi if rng.random() < 0.1 else 0.0)
                self.add_agent(kind, (x + size[0] / 2, y), heading + rng.normal(0, 0.03), attribute="vehicle.parked",
                               size_lwh=size)
                x += size[0] + rng.uniform(0.8, 3.0)

    def build_parking_lot(self, reserved: list[tuple[int, float, float]]) -> None:
        rng, L = self.rng, self.layout
        if rng.random() > 0.4:
            return
        side = int(rng.choice([-1, 1]))
        length = rng.uniform(25.0, 60.0)
        x0 = rng.uniform(*self.x_window(0.0, 40.0))
        if L.cross_x is not None and side in L.cross_sides and abs(x0 + length / 2 - L.cross_x) < length / 2 + L.cross_half_width + 6:
            return
        y0 = L.sidewalk_outer + 1.0
        depth = rng.uniform(13.0, 18.0)
        self.paint.solid(x0, x0 + length, side * y0, side * (y0 + depth), SEG_DRIVEABLE, rng.uniform(0.07, 0.12))
        reserved.append((side, x0 - 1, x0 + length + 1))
        occupancy = rng.uniform(0.4, 0.9)
        for row_y, facing in ((y0 + 2.8, side), (y0 + depth - 2.8, -side)):
            for x in np.arange(x0 + 1.5, x0 + length - 1.5, rng.uniform(2.6, 3.0)):
                if rng.random() > occupancy:
                    continue
                kind = "car" if rng.random() < 0.9 else "truck"
                heading = facing * np.pi / 2 + (np.pi if rng.random() < 0.3 else 0.0) + rng.normal(0, 0.05)
                self.add_agent(kind, (x, side * row_y), heading, attribute="vehicle.parked")
        if rng.random() < 0.5:
            self.add_agent("trailer", (x0 + length / 2, side * (y0 + depth / 2)), rng.normal(0, 0.05),
                           attribute="vehicle.parked")
        self.notes.append("parking lot")

    def build_bus_stop(self) -> None:
        """A bus at a stop in the parking / bike lane, a shelter, people waiting (needs a shoulder)."""
        rng, L = self.rng, self.layout
        if rng.random() > 0.55 or not self.has_shoulder(2.4):
            return
        side = int(rng.choice([-1, 1]))
        direction = L.direction_of(side)
        x = rng.uniform(*self.x_window(0.0, 45.0))
        size = sample_size_lwh("bus", rng)
        y = side * (L.road_half_width - 0.15 - size[1] / 2)
        moving_off = rng.random() < 0.3
        speed = 0.0
        if moving_off:
            speed = rng.uniform(2.0, 6.0)
        self.add_agent("bus", (x, y), (0.0 if direction > 0 else np.pi) + rng.normal(0, 0.02),
                       (direction * speed, 0.0), "vehicle.moving" if moving_off else "vehicle.stopped", size_lwh=size)
        shelter_y = side * (L.sidewalk_outer - 0.9)
        if self.static_fits(x, shelter_y, 2.0, 0.6):
            self.add_footprint(x, shelter_y, 2.0, 0.6)
            self.structure.box((x, shelter_y, 2.5), (2.0, 0.75, 0.06), 0.0, 0.4, SEG_MANMADE)
            self.structure.box((x, shelter_y + side * 0.6, 1.3), (2.0, 0.04, 1.1), 0.0, 0.2, SEG_MANMADE, porosity=0.4)
        for _ in range(int(rng.integers(0, 5))):
            self.add_agent("pedestrian", (x + rng.uniform(-4, 4), side * rng.uniform(L.road_half_width + 0.8, L.sidewalk_outer - 0.3)),
                           rng.uniform(-np.pi, np.pi), attribute="pedestrian.standing")
        self.notes.append("bus stop")

    # ------------------------------------------------------------ people and cycles
    def pedestrian_category(self) -> str:
        r = self.rng.random()
        return "human.pedestrian.child" if r < 0.05 else "human.pedestrian.police_officer" if r < 0.06 else "human.pedestrian.adult"

    def walker(self, x, y, heading, speed) -> bool:
        velocity = (speed * np.cos(heading), speed * np.sin(heading))
        attribute = "pedestrian.moving" if speed > 0 else "pedestrian.standing"
        return self.add_agent("pedestrian", (x, y), heading, velocity, attribute, self.pedestrian_category(), clearance=0.1)

    def build_pedestrians(self) -> None:
        rng, L = self.rng, self.layout
        spacing = rng.uniform(8.0, 40.0)
        lo_band, hi_band = L.walk_band()
        for side in (-1, 1):
            lo, hi = self.x_window(0.0)
            for _ in range(int(rng.poisson((hi - lo) / spacing))):
                speed = rng.uniform(0.9, 1.7)
                direction = int(rng.choice([-1, 1]))
                tau = rng.uniform(0, self.duration)
                x_tau = rng.uniform(self.ego_x_at(tau) - PLACEMENT_RADIUS, self.ego_x_at(tau) + PLACEMENT_RADIUS)
                self.walker(x_tau - direction * speed * tau, side * rng.uniform(lo_band, hi_band),
                            (0.0 if direction > 0 else np.pi) + rng.normal(0, 0.05), speed)
            for _ in range(int(rng.poisson((hi - lo) / (1.5 * spacing)))):
                self.walker(rng.uniform(lo, hi), side * rng.uniform(lo_band, L.sidewalk_outer - 0.3),
                            rng.uniform(-np.pi, np.pi), 0.0)
        if L.cross_x is None:
            return
        corners = [(edge, side) for edge in (-1, 1) for side in (-1, 1)]
        for edge, side in corners:
            cx = L.cross_x + edge * (L.cross_half_width + L.sidewalk_width / 2 + 0.5)
            for _ in range(int(rng.integers(0, 4))):
                self.walker(cx + rng.uniform(-1.2, 1.2), side * rng.uniform(lo_band, L.sidewalk_outer - 0.2),
                            rng.uniform(-np.pi, np.pi), 0.0)
        for side in L.cross_sides:
            for _ in range(int(rng.integers(0, 5))):
                edge = int(rng.choice([-1, 1]))
                x = L.cross_x + edge * (L.cross_half_width + rng.uniform(1.0, L.sidewalk_width - 0.5))
                heading = rng.choice([np.pi / 2, -np.pi / 2])
                self.walker(x, side * rng.uniform(L.sidewalk_outer, 60.0), heading + rng.normal(0, 0.05),
                            rng.uniform(0.9, 1.6))
        if self.red_light:
            for _ in range(int(rng.integers(2, 9))):
                edge = int(rng.choice([-1, 1]))
                x = L.cross_x + edge * (L.cross_half_width + L.sidewalk_width / 2 + 0.5) + rng.uniform(-1.0, 1.0)
                heading = rng.choice([np.pi / 2, -np.pi / 2])
                speed = rng.uniform(1.0, 1.6)
                y0 = rng.uniform(-L.sidewalk_outer, L.sidewalk_outer) - np.sin(heading) * speed * rng.uniform(0, self.duration / 2)
                self.walker(x, y0, heading + rng.normal(0, 0.04), speed)
            self.notes.append("pedestrians crossing")

    def build_cycles(self) -> None:
        rng, L = self.rng, self.layout
        for side in (-1, 1):
            direction = L.direction_of(side)
            heading = 0.0 if direction > 0 else np.pi
            if L.bike_lane_width > 0:
                y = side * (L.lanes_half_width + L.bike_lane_width / 2)
                speed = rng.uniform(3.0, 6.5)
                lo, hi = self.x_window(direction * speed)
                for _ in range(int(rng.poisson((hi - lo) / rng.uniform(150, 400)))):
                    self.add_agent("bicycle", (rng.uniform(lo, hi), y), heading + rng.normal(0, 0.03),
                                   (direction * speed, 0.0), "cycle.with_rider")
            if rng.random() < 0.15:
                lo_band, hi_band = L.walk_band()
                speed = rng.uniform(2.0, 4.0)
                lo, hi = self.x_window(direction * speed)
                self.add_agent("bicycle", (rng.uniform(lo, hi), side * (lo_band + hi_band) / 2), heading,
                               (direction * speed, 0.0), "cycle.with_rider")
        for _ in range(int(rng.integers(0, 3))):
            side = int(rng.choice([-1, 1]))
            x = rng.uniform(*self.x_window(0.0, 60.0))
            kind = "bicycle" if rng.random() < 0.6 else "motorcycle"
            for _ in range(int(rng.integers(1, 4))):
                size = sample_size_lwh(kind, rng)
                y = side * (L.sidewalk_outer - 0.1 - size[0] / 2)
                self.add_agent(kind, (x, y), side * np.pi / 2 + rng.normal(0, 0.12), attribute="cycle.without_rider",
                               size_lwh=size)
                x += size[1] + rng.uniform(0.15, 0.6)

    # ------------------------------------------------------------ result
    def build(self) -> Scene:
        self.sample_layout()
        self.sample_ego()
        reserved_sites = self.build_construction()
        reserved: list[tuple[int, float, float]] = list(reserved_sites)
        self.build_parking_lot(reserved)
        self.build_ground()
        self.build_curbs()
        self.build_street_furniture()
        for side in (-1, 1):
            self.build_frontage(side, [(a, b) for s, a, b in reserved if s == side])
        self.build_barrier_rows()
        self.build_bus_stop()
        self.build_cycles()
        self.build_main_traffic()
        self.build_cross_traffic()
        self.build_parking()
        self.build_pedestrians()
        L = self.layout
        road = f"{L.lanes_per_direction} lane(s) each way" + (", intersection" if L.cross_x is not None else "")
        description = f"synthetic, {road}, " + ", ".join(self.notes)
        return Scene(self.layout, self.ground, self.structure.build(), self.ego, self.agents, self.duration,
                     self.location, description)


def sample_scene(rng: np.random.Generator, duration_s: float = 20.0,
                 locations: Sequence[tuple[str, bool, float]] = NUSCENES_LOCATIONS) -> Scene:
    """Draw one scene lasting ``duration_s`` seconds.

    ``locations``: (name, drives on the left, probability) to draw the location from.
    """
    if not np.isfinite(duration_s) or duration_s <= 0:
        raise ValueError(f"duration_s must be a positive number of seconds, got {duration_s}")
    names, left, weights = zip(*locations)
    weights = np.asarray(weights, float)
    pick = int(rng.choice(len(names), p=weights / weights.sum()))
    return _SceneBuilder(rng, float(duration_s), names[pick], bool(left[pick])).build()
