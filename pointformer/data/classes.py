"""Class tables of the benchmarks: names, category mappings, attributes, lidarseg ids."""

from __future__ import annotations

# The 10 classes of the nuScenes detection benchmark, in CenterPoint / mmdetection3d order.
NUSCENES_DETECTION_CLASSES: tuple[str, ...] = (
    "car", "truck", "construction_vehicle", "bus", "trailer",
    "barrier", "motorcycle", "bicycle", "pedestrian", "traffic_cone",
)

# nuScenes general category -> detection class (the devkit's ``category_to_detection_name``).
NUSCENES_CATEGORY_TO_DETECTION: dict[str, str] = {
    "movable_object.barrier": "barrier",
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone",
    "vehicle.trailer": "trailer",
    "vehicle.truck": "truck",
}

# Attributes the benchmark scores for each detection class ("" where a class has none).
NUSCENES_CLASS_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    **{c: ("vehicle.moving", "vehicle.parked", "vehicle.stopped")
       for c in ("car", "truck", "bus", "trailer", "construction_vehicle")},
    "pedestrian": ("pedestrian.moving", "pedestrian.standing", "pedestrian.sitting_lying_down"),
    "motorcycle": ("cycle.with_rider", "cycle.without_rider"),
    "bicycle": ("cycle.with_rider", "cycle.without_rider"),
    "barrier": (),
    "traffic_cone": (),
}

NUSCENES_ATTRIBUTES: tuple[str, ...] = (
    "vehicle.moving", "vehicle.stopped", "vehicle.parked", "cycle.with_rider", "cycle.without_rider",
    "pedestrian.sitting_lying_down", "pedestrian.standing", "pedestrian.moving",
)

# nuScenes-lidarseg raw ids (the ``index`` of category.json) of the 32 categories.
NUSCENES_LIDARSEG_CATEGORIES: tuple[str, ...] = (
    "noise", "animal", "human.pedestrian.adult", "human.pedestrian.child",
    "human.pedestrian.construction_worker", "human.pedestrian.personal_mobility",
    "human.pedestrian.police_officer", "human.pedestrian.stroller", "human.pedestrian.wheelchair",
    "movable_object.barrier", "movable_object.debris", "movable_object.pushable_pullable",
    "movable_object.trafficcone", "static_object.bicycle_rack", "vehicle.bicycle", "vehicle.bus.bendy",
    "vehicle.bus.rigid", "vehicle.car", "vehicle.construction", "vehicle.emergency.ambulance",
    "vehicle.emergency.police", "vehicle.motorcycle", "vehicle.trailer", "vehicle.truck",
    "flat.driveable_surface", "flat.other", "flat.sidewalk", "flat.terrain", "static.manmade",
    "static.other", "static.vegetation", "vehicle.ego",
)

# The 16 classes of the nuScenes-lidarseg benchmark (index 0 of the devkit's mapping is "ignore").
NUSCENES_LIDARSEG_CLASSES: tuple[str, ...] = (
    "barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle", "pedestrian",
    "traffic_cone", "trailer", "truck", "driveable_surface", "other_flat", "sidewalk", "terrain",
    "manmade", "vegetation",
)

_LIDARSEG_FINE_TO_COARSE: dict[str, str] = {
    **{k: v for k, v in NUSCENES_CATEGORY_TO_DETECTION.items()},
    "flat.driveable_surface": "driveable_surface",
    "flat.sidewalk": "sidewalk",
    "flat.terrain": "terrain",
    "flat.other": "other_flat",
    "static.manmade": "manmade",
    "static.vegetation": "vegetation",
}


def nuscenes_lidarseg_to_benchmark() -> list[int]:
    """Lookup (32,) from raw lidarseg id to the 16-class benchmark id, -1 for ignored ids."""
    index = {name: i for i, name in enumerate(NUSCENES_LIDARSEG_CLASSES)}
    return [index.get(_LIDARSEG_FINE_TO_COARSE.get(name, ""), -1) for name in NUSCENES_LIDARSEG_CATEGORIES]


KITTI_CLASSES: tuple[str, ...] = ("Car", "Pedestrian", "Cyclist")

# Waymo Open Dataset label types (``LiDARBoxComponent.type``).
WAYMO_TYPES: dict[int, str] = {0: "Unknown", 1: "Vehicle", 2: "Pedestrian", 3: "Sign", 4: "Cyclist"}
WAYMO_CLASSES: tuple[str, ...] = ("Vehicle", "Pedestrian", "Cyclist")
