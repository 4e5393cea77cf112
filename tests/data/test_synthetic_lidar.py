"""The simulated LiDAR: ray caster against a pure-Python twin, occlusion, range limit, adversarial
rays, ground paint, noise and dropout, hits inside label boxes, Waymo range-image directions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pointformer.data.synthetic.agents import (
    AGENT_MARGIN,
    Agent,
    agent_template,
    sample_size_lwh,
)
from pointformer.data.synthetic.lidar import (
    GROUND,
    NO_HIT,
    LidarModel,
    cast_rays,
    count_unoccluded,
    nuscenes_hdl32e,
    paint_ground,
    scan,
    waymo_top64,
    waymo_top_inclinations,
)
from pointformer.data.synthetic.scene import (
    EgoTrajectory,
    GroundPaint,
    RoadLayout,
    Scene,
    sample_scene,
)
from pointformer.data.synthetic.shapes import (
    BOX,
    CYLINDER,
    ShapeBuilder,
    Shapes,
)
from pointformer.data.synthetic.simulate import (
    NUSCENES_EGO_FROM_LIDAR,
    WAYMO_VEHICLE_FROM_TOP,
)
from pointformer.structures import Boxes3D

GOLDEN = 0.6180339887498949


# ----------------------------------------------------------------- pure-Python twin
def _twin_box(o, d, center, half, yaw):
    """Nearest entry through the six face planes (a different method from the slab test)."""
    c, s = math.cos(yaw), math.sin(yaw)
    p = [o[0] - center[0], o[1] - center[1], o[2] - center[2]]
    lo = [c * p[0] + s * p[1], -s * p[0] + c * p[1], p[2]]
    ld = [c * d[0] + s * d[1], -s * d[0] + c * d[1], d[2]]
    if all(abs(lo[k]) < half[k] for k in range(3)):
        return math.inf, 0.0
    best, cos = math.inf, 0.0
    for axis in range(3):
        if ld[axis] == 0.0:
            continue
        for sign in (-1.0, 1.0):
            t = (sign * half[axis] - lo[axis]) / ld[axis]
            if t <= 0.0 or t >= best:
                continue
            q = [lo[k] + t * ld[k] for k in range(3)]
            if all(abs(q[k]) <= half[k] * (1 + 1e-12) + 1e-12 for k in range(3) if k != axis):
                best, cos = t, abs(ld[axis])
    return best, cos


def _twin_cylinder(o, d, center, radius, half_height):
    p = [o[k] - center[k] for k in range(3)]
    if p[0] ** 2 + p[1] ** 2 < radius**2 and abs(p[2]) < half_height:
        return math.inf, 0.0
    best, cos = math.inf, 0.0
    a = d[0] ** 2 + d[1] ** 2
    if a > 1e-12:
        b = p[0] * d[0] + p[1] * d[1]
        disc = b * b - a * (p[0] ** 2 + p[1] ** 2 - radius**2)
        if disc >= 0:
            for t in ((-b - math.sqrt(disc)) / a, (-b + math.sqrt(disc)) / a):
                if 0 < t < best and abs(p[2] + t * d[2]) <= half_height:
                    best = t
                    cos = abs((p[0] + t * d[0]) * d[0] + (p[1] + t * d[1]) * d[1]) / radius
    if abs(d[2]) > 1e-12:
        for cap in (half_height, -half_height):
            t = (cap - p[2]) / d[2]
            if 0 < t < best and (p[0] + t * d[0]) ** 2 + (p[1] + t * d[1]) ** 2 <= radius**2:
                best, cos = t, abs(d[2])
    return best, cos


def _twin_ellipsoid(o, d, center, radii, yaw):
    c, s = math.cos(yaw), math.sin(yaw)
    p = [o[0] - center[0], o[1] - center[1], o[2] - center[2]]
    q = [(c * p[0] + s * p[1]) / radii[0], (-s * p[0] + c * p[1]) / radii[1], p[2] / radii[2]]
    ld = [c * d[0] + s * d[1], -s * d[0] + c * d[1], d[2]]
    u = [ld[k] / radii[k] for k in range(3)]
    a, b, cc = sum(x * x for x in u), sum(q[k] * u[k] for k in range(3)), sum(x * x for x in q) - 1
    if cc < 0 or b * b - a * cc < 0:
        return math.inf, 0.0
    t = (-b - math.sqrt(b * b - a * cc)) / a
    if t <= 0:
        return math.inf, 0.0
    n = [(q[k] + t * u[k]) / radii[k] for k in range(3)]
    return t, abs(sum(n[k] * ld[k] for k in range(3))) / math.sqrt(sum(x * x for x in n))


def twin_cast(origin, directions, shapes: Shapes, ground_z=0.0, ray_u=None):
    """Loop over rays, loop over shapes: nearest hit wins, ground first, then shape order."""
    ray_u = np.zeros(len(directions)) if ray_u is None else ray_u
    out_t, out_hit, out_cos = [], [], []
    for i, d in enumerate(directions.tolist()):
        best, hit, cos = math.inf, NO_HIT, 0.0
        if d[2] < 0 and origin[2] > ground_z:
            best, hit, cos = (ground_z - origin[2]) / d[2], GROUND, -d[2]
        for j in range(len(shapes)):
            if shapes.porosity[j] > 0:
                u = ray_u[i] + j * GOLDEN
                if u - math.floor(u) < shapes.porosity[j]:
                    continue
            center, extent, yaw = shapes.center[j].tolist(), shapes.extent[j].tolist(), float(shapes.yaw[j])
            if shapes.kind[j] == BOX:
                t, c = _twin_box(origin, d, center, extent, yaw)
            elif shapes.kind[j] == CYLINDER:
                t, c = _twin_cylinder(origin, d, center, extent[0], extent[2])
            else:
                t, c = _twin_ellipsoid(origin, d, center, extent, yaw)
            if t < best:
                best, hit, cos = t, j, c
        out_t.append(best)
        out_hit.append(hit)
        out_cos.append(cos)
    return np.array(out_t), np.array(out_hit), np.array(out_cos)


def random_shapes(rng: np.random.Generator, count: int, around: np.ndarray, spread: float = 25.0) -> Shapes:
    builder = ShapeBuilder()
    for j in range(count):
        center = around + np.array([rng.uniform(-spread, spread), rng.uniform(-spread, spread), rng.uniform(-1.5, 3.0)])
        kind = rng.integers(0, 3)
        porosity = 0.4 if rng.random() < 0.2 else 0.0
        if kind == BOX:
            builder.box(center, rng.uniform(0.2, 3.0, 3), rng.uniform(-np.pi, np.pi), 0.3, 28, porosity, agent=j)
        elif kind == CYLINDER:
            builder.cylinder(center, rng.uniform(0.1, 1.5), rng.uniform(0.2, 3.0), 0.3, 28, porosity, agent=j)
        else:
            builder.ellipsoid(center, rng.uniform(0.3, 2.5, 3), rng.uniform(-np.pi, np.pi), 0.3, 30, porosity, agent=j)
    return builder.build()


def random_directions(rng: np.random.Generator, count: int) -> np.ndarray:
    az = rng.uniform(-np.pi, np.pi, count)
    inc = rng.uniform(-0.6, 0.3, count)
    return np.stack([np.cos(az) * np.cos(inc), np.sin(az) * np.cos(inc), np.sin(inc)], axis=1)


def assert_matches_twin(origin, directions, shapes, ray_u=None, ground_z=0.0):
    hits = cast_rays(origin, directions, shapes, ground_z, ray_u)
    t, hit, cos = twin_cast(origin, directions, shapes, ground_z, ray_u)
    differ = hits.shape != hit
    # Where the two disagree on the surface it must be a genuine tie (two surfaces at one distance).
    assert np.all(np.abs(hits.distance[differ] - t[differ]) < 1e-9), np.flatnonzero(differ)
    finite = np.isfinite(t)
    assert np.array_equal(np.isfinite(hits.distance), finite)
    np.testing.assert_allclose(hits.distance[finite], t[finite], atol=1e-5, rtol=0)
    np.testing.assert_allclose(hits.cos_incidence[finite & ~differ], cos[finite & ~differ], atol=1e-6)
    return hits


# ------------------------------------------------------------------- the caster
def test_cast_rays_matches_python_twin_on_random_scenes():
    rng = np.random.default_rng(0)
    for origin in (np.array([0.0, 0.0, 1.8]), np.array([1534.25, -812.5, 1.84])):
        shapes = random_shapes(rng, 40, origin * np.array([1, 1, 0]), spread=20.0)
        directions = random_directions(rng, 1500)
        hits = assert_matches_twin(origin, directions, shapes, rng.random(len(directions)))
        assert (hits.shape >= 0).sum() > 300 and (hits.shape == GROUND).sum() > 300


def test_cast_rays_with_shapes_around_the_sensor_and_across_the_azimuth_wrap():
    rng = np.random.default_rng(1)
    builder = ShapeBuilder()
    builder.box((-10.0, 0.0, 1.0), (1.0, 2.0, 1.0), 0.3, 0.3, 17)          # straddles az = +-pi
    builder.cylinder((-6.0, -0.05, 1.0), 0.4, 1.0, 0.3, 28)                  # also on the wrap
    builder.ellipsoid((0.3, 0.2, 1.8), (0.8, 0.8, 0.8), 0.0, 0.3, 30)        # sensor inside its bounding sphere
    builder.box((0.0, 0.0, 0.5), (2.0, 1.0, 0.5), 0.0, 0.3, 31)              # under the sensor
    shapes = builder.build()
    az = np.concatenate([np.linspace(-np.pi, np.pi, 721), [np.pi, -np.pi, np.nextafter(np.pi, 0)]])
    inc = rng.uniform(-0.5, 0.2, len(az))
    directions = np.stack([np.cos(az) * np.cos(inc), np.sin(az) * np.cos(inc), np.sin(inc)], axis=1)
    hits = assert_matches_twin(np.array([0.0, 0.0, 1.8]), directions, shapes)
    behind = np.abs(np.abs(az) - np.pi) < 0.05
    assert set(hits.shape[behind].tolist()) & {0, 1}, "the object on the wrap must be hit"


def test_ray_exactly_grazing_a_box_face_and_edge():
    builder = ShapeBuilder()
    builder.box((10.0, 0.0, 1.0), (1.0, 1.0, 1.0), 0.0, 0.3, 28)
    shapes = builder.build()
    origins = [np.array([0.0, 1.0, 1.0]), np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0 + 1e-9, 1.0])]
    expected = [9.0, 9.0, math.inf]
    for origin, distance in zip(origins, expected):
        hits = cast_rays(origin, np.array([[1.0, 0.0, 0.0]]), shapes)
        twin_t, twin_hit, _ = twin_cast(origin, np.array([[1.0, 0.0, 0.0]]), shapes)
        assert hits.distance[0] == distance == twin_t[0]
        assert hits.shape[0] == twin_hit[0] == (0 if math.isfinite(distance) else NO_HIT)
        assert np.isfinite(hits.cos_incidence).all()


def test_ray_starting_inside_a_shape_does_not_hit_it():
    builder = ShapeBuilder()
    builder.box((0.0, 0.0, 1.0), (2.0, 2.0, 2.0), 0.0, 0.3, 28)
    builder.cylinder((0.0, 0.0, 1.0), 1.0, 1.0, 0.3, 28)
    builder.ellipsoid((0.0, 0.0, 1.0), (1.0, 1.0, 1.0), 0.0, 0.3, 28)
    directions = random_directions(np.random.default_rng(2), 200)
    hits = assert_matches_twin(np.array([0.0, 0.0, 1.0]), directions, builder.build())
    assert set(np.unique(hits.shape)) <= {NO_HIT, GROUND}


def test_cast_rays_rejects_non_finite_input():
    shapes = random_shapes(np.random.default_rng(3), 3, np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        cast_rays(np.array([0.0, np.nan, 1.0]), np.array([[1.0, 0.0, 0.0]]), shapes)
    with pytest.raises(ValueError, match="finite"):
        cast_rays(np.zeros(3), np.array([[np.inf, 0.0, 0.0]]), shapes)
    empty = cast_rays(np.zeros(3), np.zeros((0, 3)), shapes)
    assert len(empty.distance) == 0


def test_count_unoccluded_matches_a_loop():
    rng = np.random.default_rng(4)
    shapes = random_shapes(rng, 12, np.zeros(3), spread=10.0)
    shapes.agent = (np.arange(len(shapes)) // 3).astype(np.int32)
    origin, directions = np.array([0.0, 0.0, 1.5]), random_directions(rng, 3000)
    agents = np.array([2, 0, 3])
    counts = count_unoccluded(origin, directions, shapes, agents, max_range=60.0)
    for agent, count in zip(agents, counts):
        own = shapes.select(np.flatnonzero(shapes.agent == agent))
        own.porosity = np.zeros(len(own))
        t, _, _ = twin_cast(origin, directions, own, ground_z=-1e9)
        assert count == np.sum(t <= 60.0)


# ---------------------------------------------------------------- scenes built by hand
def bare_scene(structure: Shapes, agents: list[Agent] | None = None) -> Scene:
    """A scene with only the given structure and agents on a bare flat ground; ego parked at the origin."""
    layout = RoadLayout(3.5, 1, 0.0, 0.0, 3.0, 0.15, False, None, 0.0, ())
    ground = GroundPaint(np.zeros((0, 4)), np.zeros(0, np.int8), np.zeros(0), np.zeros(0), np.zeros(0),
                         np.zeros(0, np.uint8), np.zeros(0))
    times = np.array([-1.0, 100.0])
    ego = EgoTrajectory(times, np.zeros((2, 2)), np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2))
    return Scene(layout, ground, structure, ego, agents or [], 100.0, "test", "hand-made")


def make_agent(index: int, detection_class: str, center_xy, yaw: float = 0.0, velocity=(0.0, 0.0)) -> Agent:
    rng = np.random.default_rng(index)
    size = sample_size_lwh(detection_class, rng)
    category = {"car": "vehicle.car", "pedestrian": "human.pedestrian.adult", "truck": "vehicle.truck"}[detection_class]
    attribute = {"car": "vehicle.parked", "pedestrian": "pedestrian.moving", "truck": "vehicle.parked"}[detection_class]
    template = agent_template(detection_class, category, attribute, size, rng)
    return Agent(index, detection_class, category, attribute, size, np.array([*center_xy, size[2] / 2]),
                 np.asarray(velocity, float), yaw, template, gait_hz=1.0 if detection_class == "pedestrian" else 0.0)


def noiseless(model: LidarModel) -> LidarModel:
    return LidarModel(model.name, model.inclinations, model.azimuths, model.max_range, model.min_range,
                      model.sweep_hz, range_noise_std=0.0, range_noise_clip=0.0, dropout_prob=0.0,
                      detection_power=0.0, jitter_azimuth=False)


SENSOR = np.eye(4)
SENSOR[2, 3] = 1.84


def test_object_fully_behind_another_gets_no_points():
    structure = ShapeBuilder()
    structure.box((8.0, 0.0, 2.0), (0.5, 3.0, 2.0), 0.0, 0.3, 28)           # a wall 8 m ahead, 4 m tall
    agents = [make_agent(0, "car", (20.0, 0.0), yaw=0.3), make_agent(1, "pedestrian", (5.0, 12.0))]
    scene = bare_scene(structure.build(), agents)
    sweep = scan(scene, noiseless(nuscenes_hdl32e()), SENSOR, 0.0, np.random.default_rng(0))
    hit_agents = set(np.unique(sweep.image.agent_index).tolist())
    assert 0 not in hit_agents, "the car hides behind the wall"
    assert 1 in hit_agents, "the pedestrian in the open is seen"
    # The same car without the wall is seen.
    open_scene = bare_scene(Shapes.empty(), agents)
    assert 0 in np.unique(scan(open_scene, noiseless(nuscenes_hdl32e()), SENSOR, 0.0, np.random.default_rng(0)).image.agent_index)


def test_nothing_beyond_the_range_limit_and_empty_scene_is_ground_only():
    agents = [make_agent(0, "truck", (90.0, 5.0)), make_agent(1, "car", (-60.0, -30.0))]
    scene = bare_scene(Shapes.empty(), agents)
    model = noiseless(nuscenes_hdl32e())
    image = scan(scene, model, SENSOR, 0.0, np.random.default_rng(0)).image
    assert set(np.unique(image.agent_index).tolist()) == {-1, 1}
    assert image.range.max() <= model.max_range
    empty = scan(bare_scene(Shapes.empty()), model, SENSOR, 0.0, np.random.default_rng(0)).image
    returned = empty.range > 0
    assert returned.any() and set(np.unique(empty.lidarseg[returned]).tolist()) == {27}
    down = empty.directions[..., 2]
    expected = np.where(-1.84 / np.minimum(down, -1e-9) <= model.max_range, -1.84 / np.minimum(down, -1e-9), 0.0)
    expected = np.where(down < 0, expected, 0.0)
    np.testing.assert_allclose(empty.range, expected, atol=1e-4)
    assert np.all(empty.agent_index == -1) and np.all(empty.instance_id == -1)


def test_every_agent_return_lies_inside_its_label_box_with_noise_on():
    scene = sample_scene(np.random.default_rng(5), 2.0)
    model = nuscenes_hdl32e()
    rng = np.random.default_rng(6)
    total = 0
    for t in (0.0, 0.85, 1.7):
        map_from_sensor = scene.ego.pose(t) @ NUSCENES_EGO_FROM_LIDAR
        image = scan(scene, model, map_from_sensor, t, rng).image
        points = image.points() @ map_from_sensor[:3, :3].T + map_from_sensor[:3, 3]
        agent = image.agent_index
        boxes = Boxes3D(torch.from_numpy(scene.agent_boxes(t)[:, :7]))
        on_agent = agent >= 0
        inside = boxes.points_in_boxes(torch.from_numpy(points[on_agent]))
        own = inside[torch.arange(int(on_agent.sum())), torch.from_numpy(agent[on_agent]).long()]
        assert bool(own.all()), f"{int((~own).sum())} agent returns outside their box at t={t}"
        ids = scene.instance_ids[agent[on_agent]]
        assert np.array_equal(image.instance_id[on_agent], ids)
        seg_of_agent = np.array([a.lidarseg for a in scene.agents])[agent[on_agent]]
        assert np.array_equal(image.lidarseg[on_agent], seg_of_agent)
        total += int(on_agent.sum())
    assert total > 1000


def test_templates_stay_inside_their_boxes():
    rng = np.random.default_rng(7)
    scene = sample_scene(rng, 2.0)
    for agent in scene.agents:
        lo, hi = agent.template.local_bounds()
        half = agent.size_lwh / 2 - AGENT_MARGIN + 1e-9
        assert np.all(lo >= -half) and np.all(hi <= half), agent.detection_class


def test_noise_dropout_and_intensity_statistics():
    scene = bare_scene(Shapes.empty())
    model = nuscenes_hdl32e()
    truth = scan(scene, noiseless(model), SENSOR, 0.0, np.random.default_rng(0)).image
    noisy = scan(scene, LidarModel(model.name, model.inclinations, model.azimuths, model.max_range, model.min_range,
                                   model.sweep_hz, range_noise_std=0.02, dropout_prob=0.05, detection_power=0.0),
                 SENSOR, 0.0, np.random.default_rng(1)).image
    both = (truth.range > 0) & (noisy.range > 0)
    error = noisy.range[both] - truth.range[both]
    assert np.abs(error).max() <= model.range_noise_clip + 1e-5
    assert 0.015 < error.std() < 0.025
    lost = 1 - both.sum() / (truth.range > 0).sum()
    assert 0.04 < lost < 0.06
    intensity = noisy.intensity[noisy.range > 0]
    assert intensity.min() >= 0 and intensity.max() <= 255 and np.all(intensity == np.round(intensity))


def test_sensor_model_validation():
    model = nuscenes_hdl32e()
    with pytest.raises(ValueError, match="margin"):
        LidarModel("x", model.inclinations, model.azimuths, 70.0, 0.3, 20.0, range_noise_clip=1.0)
    with pytest.raises(ValueError, match="finite"):
        LidarModel("x", np.array([0.1, np.nan]), model.azimuths, 70.0, 0.3, 20.0)
    with pytest.raises(ValueError, match="min_range"):
        LidarModel("x", model.inclinations, model.azimuths, 10.0, 20.0, 20.0)
    with pytest.raises(ValueError, match="pose"):
        scan(bare_scene(Shapes.empty()), model, np.eye(3), 0.0, np.random.default_rng(0))


def test_presets():
    hdl = nuscenes_hdl32e()
    assert hdl.shape == (32, 1084)
    np.testing.assert_allclose(np.degrees(hdl.inclinations[[0, -1]]), [-30.67, 10.67])
    steps = np.diff(np.unwrap(hdl.azimuths))
    np.testing.assert_allclose(steps, -2 * np.pi / 1084)  # clockwise
    inclinations = waymo_top_inclinations()
    assert np.all(np.diff(inclinations) > 0)
    np.testing.assert_allclose(np.degrees(inclinations[[0, -1]]), [-17.6, 2.4])
    spacing = np.diff(inclinations)
    assert spacing[-1] < spacing[0] / 2, "denser near the horizon"


def test_waymo_rays_follow_the_range_image_convention():
    model = waymo_top64(WAYMO_VEHICLE_FROM_TOP)
    height, width = model.shape
    assert (height, width) == (64, 2650)
    ascending = waymo_top_inclinations()
    correction = math.atan2(WAYMO_VEHICLE_FROM_TOP[1, 0], WAYMO_VEHICLE_FROM_TOP[0, 0])
    directions = model.directions()
    for row, col in [(0, 0), (0, width - 1), (63, 1325), (17, 999), (40, 2000)]:
        az = ((width - col - 0.5) / width * 2 - 1) * math.pi - correction
        inc = ascending[::-1][row]
        expected = [math.cos(az) * math.cos(inc), math.sin(az) * math.cos(inc), math.sin(inc)]
        np.testing.assert_allclose(directions[row, col], expected, atol=1e-12)
    vehicle_az = np.arctan2(*(directions[32] @ WAYMO_VEHICLE_FROM_TOP[:3, :3].T)[:, [1, 0]].T)
    assert abs(vehicle_az[0] - math.pi * (1 - 1 / width)) < 0.01, "column 0 looks backwards, near +pi"


def test_paint_ground_matches_the_reference_lookup():
    scene = sample_scene(np.random.default_rng(8), 2.0)
    rng = np.random.default_rng(9)
    xy = rng.uniform(-80, 80, (20000, 2))
    rects = scene.ground.rects
    corners = np.concatenate([rects[:, [0, 2]], rects[:, [1, 3]], rects[:, [0, 3]]])
    xy = np.concatenate([xy, corners, [[0.0, 0.0]]])
    seg, refl = paint_ground(scene.ground, xy)
    ref_seg, ref_refl = scene.ground.lookup(xy)
    assert np.array_equal(seg, ref_seg) and np.array_equal(refl, ref_refl)
    assert {24, 26, 27} <= set(np.unique(seg).tolist())
    for point, value in zip(xy[::500], seg[::500]):
        loop_value = scene.ground.default_lidarseg
        for p in range(len(rects)):
            x0, x1, y0, y1 = rects[p]
            if x0 <= point[0] <= x1 and y0 <= point[1] <= y1:
                axis = scene.ground.axis[p]
                if axis < 0 or (point[axis] - scene.ground.offset[p]) % scene.ground.period[p] < scene.ground.duty[p]:
                    loop_value = scene.ground.lidarseg[p]
        assert value == loop_value
    empty_seg, _ = paint_ground(scene.ground, np.zeros((0, 2)))
    assert empty_seg.shape == (0,)
