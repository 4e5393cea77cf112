"""Synthetic scenes: class sizes, class coverage, categories and attributes consistent with motion,
no overlapping boxes at any time (checked with shapely), determinism, ego motion."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon

from pointformer.data.classes import (
    NUSCENES_CATEGORY_TO_DETECTION,
    NUSCENES_CLASS_ATTRIBUTES,
    NUSCENES_DETECTION_CLASSES,
)
from pointformer.data.synthetic.agents import (
    EGO_LENGTH,
    EGO_WIDTH,
    MEAN_SIZE_WLH,
    sample_size_lwh,
)
from pointformer.data.synthetic.scene import (
    NUSCENES_LOCATIONS,
    rectangles_overlap,
    sample_scene,
)

SEEDS = range(5)


@pytest.fixture(scope="module")
def scenes():
    return [sample_scene(np.random.default_rng(seed), 8.0) for seed in SEEDS]


def rectangle(center, yaw, half) -> Polygon:
    c, s = np.cos(yaw), np.sin(yaw)
    corners = [(sx * half[0], sy * half[1]) for sx, sy in ((1, 1), (-1, 1), (-1, -1), (1, -1))]
    return Polygon([(center[0] + c * x - s * y, center[1] + s * x + c * y) for x, y in corners])


def test_sampled_sizes_match_the_nuscenes_means():
    rng = np.random.default_rng(0)
    for name, (w, l, h) in MEAN_SIZE_WLH.items():
        sizes = sample_size_lwh(name, rng, 4000)
        np.testing.assert_allclose(sizes.mean(axis=0), [l, w, h], rtol=0.01, err_msg=name)
        spread = sizes.std(axis=0) / np.array([l, w, h])
        assert np.all((spread > 0.08) & (spread < 0.12)), (name, spread)
        assert sample_size_lwh(name, rng).shape == (3,)
    with pytest.raises(ValueError, match="unknown detection class"):
        sample_size_lwh("tram", rng)


def test_scene_agents_have_nuscenes_sizes(scenes):
    sizes: dict[str, list] = {}
    for scene in scenes:
        for agent in scene.agents:
            if agent.category != "human.pedestrian.child":
                sizes.setdefault(agent.detection_class, []).append(agent.size_lwh)
    for name, values in sizes.items():
        if len(values) < 8:
            continue
        w, l, h = MEAN_SIZE_WLH[name]
        np.testing.assert_allclose(np.mean(values, axis=0), [l, w, h], rtol=0.1, err_msg=name)


def test_every_class_appears_and_cars_dominate(scenes):
    counts = Counter(agent.detection_class for scene in scenes for agent in scene.agents)
    assert set(counts) == set(NUSCENES_DETECTION_CLASSES), counts
    assert counts.most_common(1)[0][0] == "car"
    assert counts["pedestrian"] > counts["bus"] + counts["trailer"] + counts["construction_vehicle"]


def test_categories_and_attributes_agree_with_motion(scenes):
    for scene in scenes:
        assert scene.location in {name for name, _, _ in NUSCENES_LOCATIONS}
        ids = [agent.instance_id for agent in scene.agents]
        assert len(set(ids)) == len(ids)
        for agent in scene.agents:
            cls = agent.detection_class
            assert NUSCENES_CATEGORY_TO_DETECTION[agent.category] == cls
            allowed = NUSCENES_CLASS_ATTRIBUTES[cls]
            assert agent.attribute in allowed if allowed else agent.attribute == ""
            speed = float(np.hypot(*agent.velocity))
            if agent.attribute in ("vehicle.moving", "pedestrian.moving"):
                assert speed > 0.1
                heading = np.arctan2(agent.velocity[1], agent.velocity[0])
                assert abs((heading - agent.yaw + np.pi) % (2 * np.pi) - np.pi) < 0.2, agent
            if agent.attribute in ("vehicle.parked", "vehicle.stopped", "pedestrian.standing", "cycle.without_rider", ""):
                assert speed == 0.0, agent
            limit = 2.0 if cls == "pedestrian" else 8.0 if cls == "bicycle" else 15.0
            assert speed <= limit
            assert np.isclose(agent.start[2], agent.size_lwh[2] / 2), "boxes stand on the ground"


def test_boxes_never_overlap_each_other_or_the_ego(scenes):
    for scene in scenes:
        for t in np.arange(0.05, scene.duration_s, 0.3):
            boxes = scene.agent_boxes(t)
            polygons = [rectangle(b[:2], b[6], b[3:5] / 2) for b in boxes]
            pose = scene.ego.pose(t)
            yaw = np.arctan2(pose[1, 0], pose[0, 0])
            center = pose[:2, 3] + (EGO_LENGTH / 2 - 0.66) * np.array([np.cos(yaw), np.sin(yaw)])
            polygons.append(rectangle(center, yaw, (EGO_LENGTH / 2, EGO_WIDTH / 2)))
            tree = shapely.STRtree(polygons)
            pairs = tree.query(polygons, predicate="intersects")
            for i, j in pairs.T:
                if i < j:
                    assert polygons[i].intersection(polygons[j]).area < 1e-9, (t, i, j)


def test_rectangles_overlap_matches_shapely():
    rng = np.random.default_rng(1)
    count = 3000
    c1, c2 = rng.uniform(-3, 3, (count, 2)), rng.uniform(-3, 3, (count, 2))
    yaw1, yaw2 = rng.uniform(-np.pi, np.pi, count), rng.uniform(-np.pi, np.pi, count)
    h1, h2 = rng.uniform(0.1, 2.0, (count, 2)), rng.uniform(0.1, 2.0, (count, 2))
    ours = rectangles_overlap(c1, yaw1, h1, c2, yaw2, h2)
    for k in range(count):
        a, b = rectangle(c1[k], yaw1[k], h1[k]), rectangle(c2[k], yaw2[k], h2[k])
        if a.distance(b) > 1e-9 or a.intersection(b).area > 1e-9:
            assert ours[k] == a.intersects(b), k
    assert ours.any() and not ours.all()
    # Touching edges count as overlap; a hair apart does not.
    assert rectangles_overlap([0, 0], 0.0, [1, 1], [2, 0], 0.0, [1, 1])
    assert not rectangles_overlap([0, 0], 0.0, [1, 1], [2 + 1e-9, 0], 0.0, [1, 1])


def test_same_seed_same_scene_and_different_seed_different_scene():
    a, b = (sample_scene(np.random.default_rng(11), 3.0) for _ in range(2))
    c = sample_scene(np.random.default_rng(12), 3.0)
    assert len(a.agents) == len(b.agents)
    np.testing.assert_array_equal(a.agent_boxes(1.3), b.agent_boxes(1.3))
    np.testing.assert_array_equal(a.structure.center, b.structure.center)
    np.testing.assert_array_equal(a.ground.rects, b.ground.rects)
    assert [x.category for x in a.agents] == [x.category for x in b.agents]
    shapes_a, shapes_b = a.shapes_at(2.0), b.shapes_at(2.0)
    np.testing.assert_array_equal(shapes_a.center, shapes_b.center)
    assert len(a.agents) != len(c.agents) or not np.array_equal(a.agent_boxes(0.0), c.agent_boxes(0.0))


def test_ego_trajectory_is_a_plausible_drive():
    modes = Counter()
    for seed in range(12):
        scene = sample_scene(np.random.default_rng(100 + seed), 10.0)
        ego = scene.ego
        modes[scene.description.split("ego ")[1].split(",")[0]] += 1
        assert np.all(ego.speed >= 0) and ego.speed.max() <= 15.0
        assert np.all(np.diff(ego.position[:, 0]) >= -1e-9), "the ego never reverses"
        assert np.abs(ego.yaw).max() < 0.05 and np.abs(ego.pitch).max() < 0.03 and np.abs(ego.roll).max() < 0.01
        for t in (0.0, 3.3, 10.0):
            rotation = ego.pose(t)[:3, :3]
            np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
            assert ego.pose(t)[2, 3] == 0.0
        lane_y = scene.layout.lane_y(1, 0)
        assert abs(ego.position[0, 1]) < scene.layout.lanes_half_width and np.sign(ego.position[0, 1]) == np.sign(lane_y)
    assert len(modes) >= 2, modes


def test_layout_sides_follow_the_traffic_hand():
    scene = sample_scene(np.random.default_rng(0), 2.0, locations=(("singapore-onenorth", True, 1.0),))
    assert scene.location == "singapore-onenorth"
    assert scene.layout.lane_y(1, 0) > 0 and scene.layout.direction_of(1) == 1
    scene = sample_scene(np.random.default_rng(0), 2.0, locations=(("boston-seaport", False, 1.0),))
    assert scene.layout.lane_y(1, 0) < 0 and scene.layout.direction_of(-1) == 1
    with pytest.raises(ValueError, match="duration_s"):
        sample_scene(np.random.default_rng(0), float("nan"))
