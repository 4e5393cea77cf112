"""A spinning multi-beam LiDAR ray-cast against a scene: ground, structure and agents.

Each ray returns the nearest surface it meets (true occlusion) within the sensor's range. On
top of the geometry: Gaussian range noise (clipped), random dropout, a detection probability
that falls with received power (albedo x incidence / range^2), pass-through of porous shapes
(foliage, glass), and an intensity model (albedo x incidence, range fall-off, speckle).

Conventions. A ``LidarModel`` fires one ray per (row, column) of its range image: row r at
inclination ``inclinations[r]``, column c at azimuth ``azimuths[c]`` in the sensor frame, the
direction being (cos az cos inc, sin az cos inc, sin inc). Rays are cast in the scene's map
frame from ``map_from_sensor``. Intensities are reported on the 0-255 scale of nuScenes
(0-100 diffuse, above 100 retro-reflective, like a calibrated Velodyne).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from .agents import AGENT_MARGIN
from .scene import GroundPaint, Scene
from .shapes import BOX, CYLINDER, Shapes

# Shapes are sorted into this many azimuth bins per sweep; a ray tests only its bin's shapes.
AZIMUTH_BINS = 1024
GROUND = -2
NO_HIT = -1
# Porous shapes let a ray through when frac(u_ray + shape * golden) < porosity.
_GOLDEN = 0.6180339887498949
_PARALLEL_EPS = 1e-12


# ------------------------------------------------------------------------ sensor model
@dataclass(frozen=True)
class LidarModel:
    """A spinning LiDAR. ``inclinations`` (H,) radians per range-image row; ``azimuths`` (W,)
    radians per column in the sensor frame; ranges in metres; ``sweep_hz`` rotations per second.

    ``range_noise_std`` (m) Gaussian noise clipped at ``range_noise_clip`` (m);
    ``dropout_prob``: chance a return is lost at random; ``detection_power``: received power
    (albedo x |cos incidence| / range^2) at which half the returns are detected;
    ``jitter_azimuth``: shift the whole sweep by a random fraction of a column (the start angle of
    a real sweep is never the same twice).
    """

    name: str
    inclinations: np.ndarray
    azimuths: np.ndarray
    max_range: float
    min_range: float
    sweep_hz: float
    range_noise_std: float = 0.02
    range_noise_clip: float = AGENT_MARGIN
    dropout_prob: float = 0.01
    detection_power: float = 2e-7
    jitter_azimuth: bool = False

    def __post_init__(self) -> None:
        if self.range_noise_clip > AGENT_MARGIN + 1e-12:
            raise ValueError(f"range_noise_clip {self.range_noise_clip} exceeds the agent shape margin {AGENT_MARGIN}")
        for name in ("inclinations", "azimuths"):
            value = np.asarray(getattr(self, name), np.float64)
            if value.ndim != 1 or len(value) == 0 or not np.isfinite(value).all():
                raise ValueError(f"LidarModel.{name} must be a non-empty finite 1D array")
            object.__setattr__(self, name, value)
        if not 0 <= self.min_range < self.max_range:
            raise ValueError(f"need 0 <= min_range < max_range, got {self.min_range}, {self.max_range}")

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.inclinations), len(self.azimuths)

    def directions(self, azimuth_offset: float = 0.0) -> np.ndarray:
        """(H, W, 3) unit ray directions in the sensor frame."""
        inc = self.inclinations[:, None]
        az = self.azimuths[None, :] + azimuth_offset
        return np.stack(np.broadcast_arrays(np.cos(az) * np.cos(inc), np.sin(az) * np.cos(inc), np.sin(inc)), axis=-1)


def nuscenes_hdl32e() -> LidarModel:
    """nuScenes LIDAR_TOP (Velodyne HDL-32E): 32 beams evenly from -30.67 to +10.67 deg, row =
    ring (0 lowest), 1084 columns a sweep starting at -pi and turning clockwise, 20 Hz, 70 m."""
    inclinations = np.radians(np.linspace(-30.67, 10.67, 32))
    azimuths = -np.pi - 2 * np.pi * np.arange(1084) / 1084
    return LidarModel("nuscenes-hdl32e", inclinations, (azimuths + np.pi) % (2 * np.pi) - np.pi, max_range=70.0,
                      min_range=0.3, sweep_hz=20.0, range_noise_std=0.02, dropout_prob=0.01, detection_power=2e-7,
                      jitter_azimuth=True)


def waymo_top_inclinations() -> np.ndarray:
    """(64,) ascending beam inclinations of a Waymo-like TOP laser: -17.6 to +2.4 deg, denser near
    the horizon."""
    u = np.linspace(0.0, 1.0, 64)
    return np.radians(2.4 - 20.0 * u**1.6)[::-1].copy()


def waymo_range_image_azimuths(width: int, extrinsic: np.ndarray) -> np.ndarray:
    """(W,) sensor-frame azimuth of each range-image column, Waymo's convention: column c looks at
    ((W - c - 0.5) / W * 2 - 1) * pi in the vehicle frame, minus the laser's yaw on the vehicle."""
    az_correction = np.arctan2(extrinsic[1, 0], extrinsic[0, 0])
    columns = np.arange(width)
    return (2.0 * (width - columns - 0.5) / width - 1.0) * np.pi - az_correction


def waymo_top64(extrinsic: np.ndarray, width: int = 2650) -> LidarModel:
    """Waymo-like TOP laser: 64 beams (row 0 highest), ``width`` columns in Waymo's range-image
    order, 10 Hz, 75 m."""
    inclinations = waymo_top_inclinations()[::-1].copy()
    return LidarModel("waymo-top64", inclinations, waymo_range_image_azimuths(width, extrinsic), max_range=75.0,
                      min_range=0.8, sweep_hz=10.0, range_noise_std=0.015, dropout_prob=0.005, detection_power=1.5e-7)


# ----------------------------------------------------------------------- intersection
@nb.njit(cache=True, inline="always")
def _intersect(kind, ox, oy, oz, dx, dy, dz, cx, cy, cz, ex, ey, ez, c, s):
    """Entry distance along a unit ray of one upright primitive and |cos| of the incidence angle.

    Returns (inf, 0) on a miss, when the ray starts inside the primitive, or when it only meets
    it behind the origin.
    """
    px, py, pz = ox - cx, oy - cy, oz - cz
    lx, ly = c * px + s * py, -s * px + c * py
    ldx, ldy = c * dx + s * dy, -s * dx + c * dy
    if kind == BOX:
        t_near, t_far, axis = -np.inf, np.inf, -1
        for k in range(3):
            o = lx if k == 0 else ly if k == 1 else pz
            d = ldx if k == 0 else ldy if k == 1 else dz
            e = ex if k == 0 else ey if k == 1 else ez
            if abs(d) < _PARALLEL_EPS:
                if o < -e or o > e:
                    return np.inf, 0.0
            else:
                t1, t2 = (-e - o) / d, (e - o) / d
                if t1 > t2:
                    t1, t2 = t2, t1
                if t1 > t_near:
                    t_near, axis = t1, k
                t_far = min(t_far, t2)
        if t_near > t_far or t_near <= 0.0:
            return np.inf, 0.0
        d_axis = ldx if axis == 0 else ldy if axis == 1 else dz
        return t_near, abs(d_axis)
    if kind == CYLINDER:
        r2 = ex * ex
        if px * px + py * py < r2 and abs(pz) < ez:
            return np.inf, 0.0
        best, cos = np.inf, 0.0
        a = dx * dx + dy * dy
        if a > _PARALLEL_EPS:
            b = px * dx + py * dy
            q = px * px + py * py - r2
            disc = b * b - a * q
            if disc >= 0.0:
                t = (-b - np.sqrt(disc)) / a
                if t > 0.0 and abs(pz + t * dz) <= ez:
                    best = t
                    cos = abs((px + t * dx) * dx + (py + t * dy) * dy) / ex
        if abs(dz) > _PARALLEL_EPS:
            for cap in (ez, -ez):
                t = (cap - pz) / dz
                if 0.0 < t < best:
                    qx, qy = px + t * dx, py + t * dy
                    if qx * qx + qy * qy <= r2:
                        best, cos = t, abs(dz)
        return best, cos
    # ELLIPSOID
    qx, qy, qz = lx / ex, ly / ey, pz / ez
    ux, uy, uz = ldx / ex, ldy / ey, dz / ez
    aa = ux * ux + uy * uy + uz * uz
    bb = qx * ux + qy * uy + qz * uz
    cc = qx * qx + qy * qy + qz * qz - 1.0
    if cc < 0.0:
        return np.inf, 0.0
    disc = bb * bb - aa * cc
    if disc < 0.0:
        return np.inf, 0.0
    t = (-bb - np.sqrt(disc)) / aa
    if t <= 0.0:
        return np.inf, 0.0
    nx, ny, nz = (qx + t * ux) / ex, (qy + t * uy) / ey, (qz + t * uz) / ez
    return t, abs(nx * ldx + ny * ldy + nz * dz) / np.sqrt(nx * nx + ny * ny + nz * nz)


@nb.njit(parallel=True, cache=True)
def _cast_kernel(origin, directions, ray_bin, ray_u, kind, center, extent, cos_yaw, sin_yaw, porosity,
                 bin_start, bin_items, ground_z, out_t, out_hit, out_cos):
    ox, oy, oz = origin[0], origin[1], origin[2]
    for i in nb.prange(directions.shape[0]):
        dx, dy, dz = directions[i, 0], directions[i, 1], directions[i, 2]
        best, hit, cos = np.inf, NO_HIT, 0.0
        if dz < 0.0 and oz > ground_z:
            best, hit, cos = (ground_z - oz) / dz, GROUND, -dz
        b = ray_bin[i]
        for k in range(bin_start[b], bin_start[b + 1]):
            j = bin_items[k]
            if porosity[j] > 0.0:
                u = ray_u[i] + j * _GOLDEN
                if u - np.floor(u) < porosity[j]:
                    continue
            t, c = _intersect(kind[j], ox, oy, oz, dx, dy, dz, center[j, 0], center[j, 1], center[j, 2],
                              extent[j, 0], extent[j, 1], extent[j, 2], cos_yaw[j], sin_yaw[j])
            if t < best:
                best, hit, cos = t, j, c
        out_t[i], out_hit[i], out_cos[i] = best, hit, cos


@nb.njit(parallel=True, cache=True)
def _unoccluded_kernel(origin, directions, kind, center, extent, cos_yaw, sin_yaw, group_start, group_center,
                       group_radius, max_range, out_count):
    """Per group of shapes (one agent), how many rays meet it within ``max_range`` ignoring the rest."""
    ox, oy, oz = origin[0], origin[1], origin[2]
    for g in nb.prange(group_start.shape[0] - 1):
        px, py, pz = group_center[g, 0] - ox, group_center[g, 1] - oy, group_center[g, 2] - oz
        distance2, radius = px * px + py * py + pz * pz, group_radius[g]
        count = 0
        for i in range(directions.shape[0]):
            dx, dy, dz = directions[i, 0], directions[i, 1], directions[i, 2]
            along = px * dx + py * dy + pz * dz
            if along < -radius or distance2 - along * along > radius * radius:
                continue
            for j in range(group_start[g], group_start[g + 1]):
                t, _ = _intersect(kind[j], ox, oy, oz, dx, dy, dz, center[j, 0], center[j, 1], center[j, 2],
                                  extent[j, 0], extent[j, 1], extent[j, 2], cos_yaw[j], sin_yaw[j])
                if t <= max_range:
                    count += 1
                    break
        out_count[g] = count


@nb.njit(parallel=True, cache=True)
def _paint_kernel(xy, rects, axis, period, duty, offset, patch_seg, patch_refl, default_seg, default_refl,
                  out_seg, out_refl):
    """Ground material per point: the last patch covering it, else the default (see ``GroundPaint``)."""
    for i in nb.prange(xy.shape[0]):
        x, y = xy[i, 0], xy[i, 1]
        seg, refl = default_seg, default_refl
        for p in range(rects.shape[0]):
            if x < rects[p, 0] or x > rects[p, 1] or y < rects[p, 2] or y > rects[p, 3]:
                continue
            if axis[p] >= 0:
                u = (x if axis[p] == 0 else y) - offset[p]
                if u - np.floor(u / period[p]) * period[p] >= duty[p]:
                    continue
            seg, refl = patch_seg[p], patch_refl[p]
        out_seg[i], out_refl[i] = seg, refl


def paint_ground(ground: GroundPaint, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) ground points -> lidarseg ids (N,) uint8 and reflectivity (N,); numba twin of
    ``GroundPaint.lookup``."""
    xy = np.ascontiguousarray(xy, np.float64).reshape(-1, 2)
    seg, refl = np.empty(len(xy), np.uint8), np.empty(len(xy))
    if len(xy):
        _paint_kernel(xy, np.ascontiguousarray(ground.rects, np.float64), ground.axis.astype(np.int64),
                      ground.period.astype(np.float64), ground.duty.astype(np.float64), ground.offset.astype(np.float64),
                      ground.lidarseg.astype(np.uint8), ground.reflectivity.astype(np.float64),
                      np.uint8(ground.default_lidarseg), float(ground.default_reflectivity), seg, refl)
    return seg, refl


# ------------------------------------------------------------------------- ray casting
@dataclass
class RayHits:
    """Geometry of R rays: ``distance`` (R,) to the nearest surface (inf: none), ``shape`` (R,)
    int32 index into the shapes cast against (-1 none, -2 ground), ``cos_incidence`` (R,)."""

    distance: np.ndarray
    shape: np.ndarray
    cos_incidence: np.ndarray


def azimuth_bins(origin: np.ndarray, directions: np.ndarray, shapes: Shapes, bins: int = AZIMUTH_BINS):
    """Sort shapes into azimuth bins as seen from ``origin``.

    Returns ``ray_bin`` (R,) int64, ``bin_start`` (bins + 1,) int64 and ``bin_items`` int32 (CSR, shape
    indices ascending within a bin). A shape enters every bin its bounding sphere's horizontal disc
    may cover (one bin of padding each side); when the origin is inside that disc, all bins.
    """
    ray_az = np.arctan2(directions[:, 1], directions[:, 0])
    ray_bin = np.minimum(((ray_az + np.pi) / (2 * np.pi) * bins).astype(np.int64), bins - 1)
    n = len(shapes)
    if n == 0:
        return ray_bin, np.zeros(bins + 1, np.int64), np.zeros(0, np.int32)
    radius = shapes.bounding_radius()
    rel = shapes.center[:, :2] - origin[None, :2]
    dist = np.hypot(rel[:, 0], rel[:, 1])
    az = np.arctan2(rel[:, 1], rel[:, 0])
    half = np.arcsin(np.clip(radius / np.maximum(dist, 1e-12), 0.0, 1.0))
    first = np.floor((az - half + np.pi) / (2 * np.pi) * bins).astype(np.int64) - 1
    last = np.floor((az + half + np.pi) / (2 * np.pi) * bins).astype(np.int64) + 1
    count = np.where(dist <= radius, bins, np.minimum(last - first + 1, bins))
    first = np.where(dist <= radius, 0, first)
    owner = np.repeat(np.arange(n, dtype=np.int32), count)
    offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    item_bin = (np.repeat(first, count) + offset) % bins
    order = np.argsort(item_bin, kind="stable")
    bin_start = np.zeros(bins + 1, np.int64)
    np.cumsum(np.bincount(item_bin, minlength=bins), out=bin_start[1:])
    return ray_bin, bin_start, owner[order]


def cast_rays(origin: np.ndarray, directions: np.ndarray, shapes: Shapes, ground_z: float = 0.0,
              ray_u: np.ndarray | None = None) -> RayHits:
    """Nearest hit of every ray (origin (3,), unit ``directions`` (R, 3), map frame).

    The ground is the plane z = ``ground_z`` (hit from above). Ties go to the ground, then to the
    lowest shape index. ``ray_u`` (R,) uniforms in [0, 1) drive porous pass-through (default
    zeros: a porous shape j passes rays only when frac(j * golden) < porosity).
    """
    origin = np.ascontiguousarray(origin, np.float64).reshape(3)
    directions = np.ascontiguousarray(directions, np.float64).reshape(-1, 3)
    if not (np.isfinite(origin).all() and np.isfinite(directions).all()):
        raise ValueError("cast_rays: origin and directions must be finite")
    n = len(directions)
    ray_u = np.zeros(n) if ray_u is None else np.ascontiguousarray(ray_u, np.float64)
    ray_bin, bin_start, bin_items = azimuth_bins(origin, directions, shapes)
    out_t, out_hit, out_cos = np.empty(n), np.empty(n, np.int32), np.empty(n)
    if n:
        _cast_kernel(origin, directions, ray_bin, ray_u, shapes.kind, np.ascontiguousarray(shapes.center),
                     np.ascontiguousarray(shapes.extent), np.cos(shapes.yaw), np.sin(shapes.yaw), shapes.porosity,
                     bin_start, bin_items, float(ground_z), out_t, out_hit, out_cos)
    return RayHits(out_t, out_hit, out_cos)


def count_unoccluded(origin: np.ndarray, directions: np.ndarray, shapes: Shapes, agents: np.ndarray,
                     max_range: float) -> np.ndarray:
    """(len(agents),) number of rays (origin (3,), ``directions`` (R, 3)) that would meet each
    agent's shapes (``shapes.agent == agent``) within ``max_range`` if nothing else were there."""
    agents = np.asarray(agents, np.int64).reshape(-1)
    if len(agents) == 0 or len(directions) == 0:
        return np.zeros(len(agents), np.int64)
    unique = np.unique(agents)
    index = np.flatnonzero(np.isin(shapes.agent, unique))
    index = index[np.argsort(shapes.agent[index], kind="stable")]
    sub = shapes.select(index)
    group_start = np.append(np.searchsorted(sub.agent, unique, side="left"), len(index)).astype(np.int64)
    group_center = np.zeros((len(unique), 3))
    group_radius = np.zeros(len(unique))
    radius = sub.bounding_radius()
    for g in range(len(unique)):
        a, b = group_start[g], group_start[g + 1]
        if b > a:
            group_center[g] = sub.center[a:b].mean(axis=0)
            group_radius[g] = (np.linalg.norm(sub.center[a:b] - group_center[g], axis=1) + radius[a:b]).max()
    counts = np.zeros(len(unique), np.int64)
    _unoccluded_kernel(np.ascontiguousarray(origin, np.float64).reshape(3), np.ascontiguousarray(directions, np.float64),
                       sub.kind, np.ascontiguousarray(sub.center), np.ascontiguousarray(sub.extent), np.cos(sub.yaw),
                       np.sin(sub.yaw), group_start, group_center, group_radius, float(max_range), counts)
    return counts[np.searchsorted(unique, agents)]


# -------------------------------------------------------------------------- the sweep
@dataclass
class RangeImage:
    """One sweep as an (H, W) image, row = beam, column = azimuth step.

    ``range`` float32 metres (0: no return); ``intensity`` float32 on the 0-255 scale;
    ``elongation`` float32 (pulse stretch, grows at grazing incidence); ``agent_index`` int32 index
    into ``Scene.agents`` (-1: ground, structure, ego body or no return); ``instance_id`` int32
    (-1 likewise); ``lidarseg`` uint8 nuScenes-lidarseg raw id (0 'noise' where no return);
    ``directions`` (H, W, 3) float64 unit rays in the sensor frame.
    """

    range: np.ndarray
    intensity: np.ndarray
    elongation: np.ndarray
    agent_index: np.ndarray
    instance_id: np.ndarray
    lidarseg: np.ndarray
    directions: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return self.range > 0

    def points(self) -> np.ndarray:
        """(H, W, 3) float64 return positions in the sensor frame (zeros where no return)."""
        return self.directions * self.range[..., None].astype(np.float64)


@dataclass
class Sweep:
    """A cast sweep with what labelling needs: the range image, the sensor pose and time, the
    shapes cast against (culled to the sensor's reach) and the geometric hit per pixel before
    noise and dropout (shape index, -1 none, -2 ground)."""

    image: RangeImage
    map_from_sensor: np.ndarray
    time_s: float
    shapes: Shapes
    geometric_hit: np.ndarray


def _cull(shapes: Shapes, origin: np.ndarray, max_range: float) -> Shapes:
    reach = np.linalg.norm(shapes.center - origin[None, :], axis=1) - shapes.bounding_radius()
    return shapes.select(np.flatnonzero(reach <= max_range))


def shade(hits: RayHits, reflectivity: np.ndarray, model: LidarModel, rng: np.random.Generator):
    """Range noise, detection and intensity for R rays with nearest hits ``hits``.

    Returns measured range (R,) (0 where no return), intensity (R,) 0-255, elongation (R,).
    """
    n = len(hits.distance)
    distance = hits.distance
    geometric = np.isfinite(distance) & (distance >= model.min_range) & (distance <= model.max_range)
    safe = np.where(geometric, distance, 1.0)
    noise = np.clip(rng.normal(0.0, model.range_noise_std, n), -model.range_noise_clip, model.range_noise_clip)
    power = reflectivity * np.maximum(hits.cos_incidence, 1e-3) / safe**2
    detect = rng.random(n) * (power + model.detection_power) < power
    kept = geometric & detect & (rng.random(n) >= model.dropout_prob)
    measured = np.where(kept, np.maximum(safe + noise, 1e-3), 0.0)
    speckle = np.exp(0.3 * rng.normal(size=n) - 0.045)
    falloff = 1.0 / (1.0 + (safe / 150.0) ** 2)
    intensity = 100.0 * reflectivity * (0.5 + 0.5 * hits.cos_incidence) * falloff * speckle
    intensity = np.where(kept, np.clip(np.round(intensity), 0, 255), 0.0)
    elongation = 0.05 + 0.8 * (1.0 - hits.cos_incidence) ** 3 * np.minimum(safe / 40.0, 1.0) + rng.normal(0, 0.02, n)
    elongation = np.where(kept, np.clip(elongation, 0.0, 1.5), 0.0)
    return measured, intensity, elongation


def scan(scene: Scene, model: LidarModel, map_from_sensor: np.ndarray, time_s: float, rng: np.random.Generator,
         extra_shapes: Shapes | None = None) -> Sweep:
    """Cast one sweep of ``model`` at ``time_s`` from ``map_from_sensor`` (4x4) into ``scene``.

    ``extra_shapes`` (map frame, e.g. the ego body) are cast too and labelled as structure. The
    sweep is instantaneous (no rolling shutter): every ray sees the scene at ``time_s``.
    """
    map_from_sensor = np.asarray(map_from_sensor, np.float64)
    if map_from_sensor.shape != (4, 4) or not np.isfinite(map_from_sensor).all():
        raise ValueError(f"map_from_sensor must be a finite 4x4 pose, got shape {map_from_sensor.shape}")
    origin = map_from_sensor[:3, 3].copy()
    offset = rng.uniform(0.0, 2 * np.pi / len(model.azimuths)) if model.jitter_azimuth else 0.0
    directions_sensor = model.directions(offset)
    height, width = model.shape
    directions = directions_sensor.reshape(-1, 3) @ map_from_sensor[:3, :3].T
    parts = [scene.shapes_at(time_s)] + ([extra_shapes] if extra_shapes is not None and len(extra_shapes) else [])
    shapes = _cull(Shapes.concat(parts), origin, model.max_range)
    ray_u = rng.random(len(directions))
    hits = cast_rays(origin, directions, shapes, scene.ground.height, ray_u)
    reflectivity, lidarseg, agent = _surface_properties(hits, shapes, scene.ground, origin, directions)
    measured, intensity, elongation = shade(hits, reflectivity, model, rng)
    returned = measured > 0
    agent = np.where(returned, agent, -1)
    ids = scene.instance_ids
    instance = np.where(agent >= 0, ids[np.maximum(agent, 0)] if len(ids) else -1, -1)
    image = RangeImage(
        range=measured.reshape(height, width).astype(np.float32),
        intensity=intensity.reshape(height, width).astype(np.float32),
        elongation=elongation.reshape(height, width).astype(np.float32),
        agent_index=agent.reshape(height, width).astype(np.int32),
        instance_id=instance.reshape(height, width).astype(np.int32),
        lidarseg=np.where(returned, lidarseg, 0).reshape(height, width).astype(np.uint8),
        directions=directions_sensor,
    )
    geometric = np.where((hits.distance >= model.min_range) & (hits.distance <= model.max_range), hits.shape, NO_HIT)
    return Sweep(image, map_from_sensor, float(time_s), shapes, geometric.reshape(height, width).astype(np.int32))


def _surface_properties(hits: RayHits, shapes: Shapes, ground: GroundPaint, origin: np.ndarray,
                        directions: np.ndarray):
    """Reflectivity (R,), lidarseg id (R,) and agent index (R,) of each ray's nearest surface."""
    n = len(hits.shape)
    reflectivity, lidarseg, agent = np.zeros(n), np.zeros(n, np.uint8), np.full(n, -1, np.int64)
    on_shape = hits.shape >= 0
    index = hits.shape[on_shape]
    reflectivity[on_shape] = shapes.reflectivity[index]
    lidarseg[on_shape] = shapes.lidarseg[index]
    agent[on_shape] = shapes.agent[index]
    on_ground = hits.shape == GROUND
    if on_ground.any():
        xy = origin[None, :2] + directions[on_ground, :2] * hits.distance[on_ground, None]
        lidarseg[on_ground], reflectivity[on_ground] = paint_ground(ground, xy)
    return reflectivity, lidarseg, agent
