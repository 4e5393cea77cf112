"""write_nuscenes: layout, tables, chains, tokens, file contents, atomicity and bad input.

The devkit's view of the same output is checked in test_nuscenes_devkit.py.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
from nuscenes_fixtures import random_scene

from pointformer.data.classes import NUSCENES_ATTRIBUTES, NUSCENES_LIDARSEG_CATEGORIES
from pointformer.data.synthetic import nuscenes_writer
from pointformer.data.synthetic.nuscenes_writer import TABLE_NAMES, make_token, write_nuscenes
from pointformer.structures.rotation import quaternion_to_matrix

VERSION = "v1.0-trainval"
TOKEN = re.compile(r"^[0-9a-f]{32}$")


def _scenes(seed: int = 0, **kwargs):
    rng = np.random.default_rng(seed)
    return [random_scene(rng, "scene-0003", leading_sweeps=2, **kwargs), random_scene(rng, "scene-0012", **kwargs)]


def _tables(root: Path, version: str = VERSION) -> dict[str, list[dict]]:
    names = [*TABLE_NAMES] + (["lidarseg"] if (root / version / "lidarseg.json").exists() else [])
    return {name: json.loads((root / version / f"{name}.json").read_text()) for name in names}


def _by_token(records):
    return {r["token"]: r for r in records}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("nuscenes_writer")
    scenes = _scenes()
    summary = write_nuscenes(root, scenes, VERSION, seed=3)
    return root, scenes, summary, _tables(root)


def test_every_table_and_file_is_written(written):
    root, scenes, _, tables = written
    assert sorted(p.name for p in (root / VERSION).iterdir()) == sorted(f"{n}.json" for n in [*TABLE_NAMES, "lidarseg"])
    pattern = re.compile(r"^(samples|sweeps)/LIDAR_TOP/(.+)__LIDAR_TOP__(\d+)\.pcd\.bin$")
    logs = {log["token"]: log["logfile"] for log in tables["log"]}
    scene_of_sample = {s["token"]: s["scene_token"] for s in tables["sample"]}
    log_of_scene = {s["token"]: s["log_token"] for s in tables["scene"]}
    for record in tables["sample_data"]:
        match = pattern.match(record["filename"])
        assert match, record["filename"]
        assert (match.group(1) == "samples") == record["is_key_frame"]
        assert match.group(2) == logs[log_of_scene[scene_of_sample[record["sample_token"]]]]
        assert int(match.group(3)) == record["timestamp"] and record["fileformat"] == "pcd"
        assert (root / record["filename"]).is_file()
    assert len(tables["sample_data"]) == sum(len(s.sweeps) for s in scenes)
    assert [s["name"] for s in tables["scene"]] == ["scene-0003", "scene-0012"]
    assert not list(root.glob(".*staging*")) and not list((root / "lidarseg").glob(".*"))


def test_point_and_label_files_hold_the_input(written):
    root, scenes, summary, tables = written
    sample_data = _by_token(tables["sample_data"])
    lidarseg = _by_token(tables["lidarseg"])
    for scene in scenes:
        for sweep, token in zip(scene.sweeps, summary.lidar_tokens[scene.name]):
            stored = np.fromfile(root / sample_data[token]["filename"], dtype=np.float32).reshape(-1, 5)
            np.testing.assert_array_equal(stored, sweep.points)
            if sweep.lidarseg is None:
                assert token not in lidarseg
            else:
                assert lidarseg[token]["sample_data_token"] == token
                assert lidarseg[token]["filename"] == f"lidarseg/{VERSION}/{token}_lidarseg.bin"
                np.testing.assert_array_equal(np.fromfile(root / lidarseg[token]["filename"], np.uint8), sweep.lidarseg)
    assert len(list((root / "lidarseg" / VERSION).iterdir())) == len(tables["lidarseg"])


def test_tokens_are_hex_unique_and_deterministic(written, tmp_path):
    root, scenes, _, tables = written
    tokens = []
    for name, records in tables.items():
        for record in records:
            if name == "visibility":
                assert record["token"] in {"1", "2", "3", "4"}
                continue
            assert TOKEN.match(record["token"]), (name, record["token"])
            if name not in ("ego_pose", "lidarseg"):  # these share the sample_data tokens, as in nuScenes
                tokens.append(record["token"])
    assert len(tokens) == len(set(tokens))
    assert TOKEN.match(make_token(0, "anything")) and make_token(1, "a") != make_token(2, "a")

    write_nuscenes(tmp_path / "same", _scenes(), VERSION, seed=3)
    write_nuscenes(tmp_path / "other", _scenes(), VERSION, seed=4)
    for name in TABLE_NAMES:
        same = (tmp_path / "same" / VERSION / f"{name}.json").read_bytes()
        assert same == (root / VERSION / f"{name}.json").read_bytes(), name
    assert _tables(tmp_path / "other")["sample"][0]["token"] != tables["sample"][0]["token"]


def test_chains_link_samples_sweeps_and_annotations(written):
    _, scenes, summary, tables = written
    samples = _by_token(tables["sample"])
    sample_data = _by_token(tables["sample_data"])
    annotations = _by_token(tables["sample_annotation"])
    for scene_record, scene in zip(tables["scene"], scenes):
        chain, token = [], scene_record["first_sample_token"]
        while token:
            chain.append(token)
            assert samples[token]["scene_token"] == scene_record["token"]
            following = samples[token]["next"]
            if following:
                assert samples[following]["prev"] == token
                assert samples[following]["timestamp"] > samples[token]["timestamp"]
            token = following
        assert chain == summary.sample_tokens[scene.name] and chain[-1] == scene_record["last_sample_token"]
        assert scene_record["nbr_samples"] == len(chain) == sum(s.is_key_frame for s in scene.sweeps)
        assert samples[chain[0]]["prev"] == ""

        sweeps = summary.lidar_tokens[scene.name]
        assert sample_data[sweeps[0]]["prev"] == "" and sample_data[sweeps[-1]]["next"] == ""
        for earlier, later in zip(sweeps, sweeps[1:]):
            assert sample_data[earlier]["next"] == later and sample_data[later]["prev"] == earlier
        for token, sweep in zip(sweeps, scene.sweeps):
            record = sample_data[token]
            assert record["is_key_frame"] == sweep.is_key_frame and record["timestamp"] == sweep.timestamp_us
            owner = samples[record["sample_token"]]
            if sweep.is_key_frame:
                assert owner["timestamp"] == sweep.timestamp_us
            else:  # a sweep belongs to the next keyframe, or to the last one after it
                assert owner["timestamp"] > sweep.timestamp_us or owner["token"] == chain[-1]

    for instance in tables["instance"]:
        chain, token = [], instance["first_annotation_token"]
        while token:
            record = annotations[token]
            assert record["instance_token"] == instance["token"]
            chain.append(token)
            if record["next"]:
                assert annotations[record["next"]]["prev"] == token
            token = record["next"]
        assert chain[-1] == instance["last_annotation_token"] and len(chain) == instance["nbr_annotations"]
        assert annotations[chain[0]]["prev"] == ""
        times = [samples[annotations[t]["sample_token"]]["timestamp"] for t in chain]
        assert times == sorted(times)
    assert sum(i["nbr_annotations"] for i in tables["instance"]) == len(tables["sample_annotation"])


def test_annotations_and_poses_hold_the_input(written):
    _, scenes, summary, tables = written
    categories = _by_token(tables["category"])
    attributes = _by_token(tables["attribute"])
    instances = _by_token(tables["instance"])
    ego_poses = _by_token(tables["ego_pose"])
    sample_data = _by_token(tables["sample_data"])
    calibrations = _by_token(tables["calibrated_sensor"])
    by_sample: dict[str, list[dict]] = {}
    for record in tables["sample_annotation"]:
        by_sample.setdefault(record["sample_token"], []).append(record)
    for scene in scenes:
        keyframes = [i for i, s in enumerate(scene.sweeps) if s.is_key_frame]
        for index, sample_token in zip(keyframes, summary.sample_tokens[scene.name]):
            records = by_sample.get(sample_token, [])
            assert len(records) == len(scene.keyframe_boxes[index])
            for box, record in zip(scene.keyframe_boxes[index], records):
                assert categories[instances[record["instance_token"]]["category_token"]]["name"] == box.category
                names = [attributes[t]["name"] for t in record["attribute_tokens"]]
                assert names == ([box.attribute] if box.attribute else [])
                np.testing.assert_array_equal(record["translation"], box.translation)
                np.testing.assert_array_equal(record["size"], box.size_wlh)
                np.testing.assert_allclose(quaternion_to_matrix(record["rotation"]),
                                           quaternion_to_matrix(box.rotation_wxyz), atol=1e-12)
                assert (record["num_lidar_pts"], record["num_radar_pts"], record["visibility_token"]) == (
                    box.num_lidar_pts, box.num_radar_pts, box.visibility)
        for token, sweep in zip(summary.lidar_tokens[scene.name], scene.sweeps):
            record = sample_data[token]
            pose = ego_poses[record["ego_pose_token"]]
            assert pose["timestamp"] == sweep.timestamp_us
            np.testing.assert_array_equal(pose["translation"], sweep.global_from_ego[:3, 3])
            np.testing.assert_allclose(quaternion_to_matrix(pose["rotation"]), sweep.global_from_ego[:3, :3],
                                       atol=1e-12)
            calibration = calibrations[record["calibrated_sensor_token"]]
            np.testing.assert_allclose(quaternion_to_matrix(calibration["rotation"]), scene.ego_from_lidar[:3, :3],
                                       atol=1e-12)


def test_static_tables_follow_nuscenes(written):
    root, _, _, tables = written
    assert [(c["name"], c["index"]) for c in tables["category"]] == [
        (name, index) for index, name in enumerate(NUSCENES_LIDARSEG_CATEGORIES)
    ]
    assert all(c["description"] for c in tables["category"])
    assert sorted(a["name"] for a in tables["attribute"]) == sorted(NUSCENES_ATTRIBUTES)
    assert [s["channel"] for s in tables["sensor"]] == ["LIDAR_TOP"]
    assert all(len(a["attribute_tokens"]) <= 1 for a in tables["sample_annotation"])
    mapped_logs = [t for m in tables["map"] for t in m["log_tokens"]]
    assert sorted(mapped_logs) == sorted(log["token"] for log in tables["log"])
    from PIL import Image

    for record in tables["map"]:
        with Image.open(root / record["filename"]) as image:
            image.load()
            assert image.size == (1, 1) and image.getpixel((0, 0)) == 0


def test_existing_version_needs_overwrite_and_overwrite_replaces_everything(tmp_path):
    write_nuscenes(tmp_path, _scenes(0), VERSION)
    with pytest.raises(FileExistsError, match=VERSION):
        write_nuscenes(tmp_path, _scenes(1), VERSION)
    rng = np.random.default_rng(5)
    single = [random_scene(rng, "scene-0013", num_keyframes=2, lidarseg=True)]
    write_nuscenes(tmp_path, single, VERSION, overwrite=True)
    tables = _tables(tmp_path)
    assert [s["name"] for s in tables["scene"]] == ["scene-0013"]
    assert len(list((tmp_path / "lidarseg" / VERSION).iterdir())) == len(tables["lidarseg"]) == 2
    no_labels = [random_scene(rng, "scene-0014", num_keyframes=2, lidarseg=False)]
    write_nuscenes(tmp_path, no_labels, VERSION, overwrite=True)
    assert not (tmp_path / VERSION / "lidarseg.json").exists() and not (tmp_path / "lidarseg" / VERSION).exists()


def test_a_crash_leaves_no_table_folder_that_looks_complete(tmp_path, monkeypatch):
    real_dumps = json.dumps
    calls = {"n": 0}

    def failing_dumps(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise OSError("disk full (simulated)")
        return real_dumps(*args, **kwargs)

    monkeypatch.setattr(nuscenes_writer.json, "dumps", failing_dumps)
    with pytest.raises(OSError, match="simulated"):
        write_nuscenes(tmp_path, _scenes(), VERSION)
    assert not (tmp_path / VERSION).exists()
    assert not list(tmp_path.glob(".*")) and not list((tmp_path / "lidarseg").glob(".*"))

    monkeypatch.setattr(nuscenes_writer.json, "dumps", real_dumps)
    write_nuscenes(tmp_path, _scenes(), VERSION)
    before = {name: (tmp_path / VERSION / f"{name}.json").read_bytes() for name in TABLE_NAMES}
    calls["n"] = 0
    monkeypatch.setattr(nuscenes_writer.json, "dumps", failing_dumps)
    with pytest.raises(OSError, match="simulated"):
        write_nuscenes(tmp_path, _scenes(9), VERSION, overwrite=True)
    # The previous dataset is untouched by the failed overwrite.
    assert {name: (tmp_path / VERSION / f"{name}.json").read_bytes() for name in TABLE_NAMES} == before


def _mutate(attribute_path: str, value):
    def apply(scenes):
        target = scenes[0]
        *parents, last = attribute_path.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else (
                target[int(part)] if isinstance(target, dict) else getattr(target, part))
        if isinstance(target, (list, dict)) and last.isdigit():
            target[int(last)] = value
        else:
            setattr(target, last, value)
        return scenes

    return apply


def _box_field(name, value):
    def apply(scenes):
        first = min(scenes[0].keyframe_boxes)
        setattr(scenes[0].keyframe_boxes[first][0], name, value)
        return scenes

    return apply


BAD_INPUTS = {
    "four point columns": (_mutate("sweeps.0.points", np.zeros((10, 4), np.float32)), "expected \\(N, 5\\)"),
    "nan point": (lambda s: (s[0].sweeps[1].points.__setitem__((0, 0), np.nan), s)[1], "NaN"),
    "beyond float32": (_mutate("sweeps.1.points", np.full((3, 5), 1e39)), "beyond float32"),
    "lidarseg length": (_mutate("sweeps.2.lidarseg", np.zeros(3, np.uint8)), "lidarseg of shape"),
    "lidarseg on sweep": (_mutate("sweeps.0.lidarseg", np.zeros(200, np.uint8)), "not a keyframe"),
    "lidarseg id": (lambda s: (s[0].sweeps[2].lidarseg.__setitem__(0, 200), s)[1], "lidarseg ids"),
    "unknown category": (_box_field("category", "vehicle.spaceship"), "unknown category"),
    "unknown attribute": (_box_field("attribute", "vehicle.flying"), "unknown attribute"),
    "visibility": (_box_field("visibility", "5"), "visibility"),
    "nan translation": (_box_field("translation", np.array([np.nan, 0.0, 0.0])), "translation"),
    "negative size": (_box_field("size_wlh", np.array([1.0, -1.0, 1.0])), "positive"),
    "zero quaternion": (_box_field("rotation_wxyz", np.zeros(4)), "zero quaternion"),
    "scaled pose": (_mutate("ego_from_lidar", np.diag([2.0, 1.0, 1.0, 1.0])), "rigid"),
    "mirrored pose": (_mutate("sweeps.3.global_from_ego", np.diag([-1.0, 1.0, 1.0, 1.0])), "rigid"),
    "time order": (_mutate("sweeps.1.timestamp_us", 0), "is not after"),
    "no keyframe": (lambda s: [_no_keyframes(s[0])], "no keyframe"),
    "boxes on a sweep": (lambda s: (s[0].keyframe_boxes.__setitem__(1, []), s)[1], "not the index of a keyframe"),
    "duplicate scene": (lambda s: [s[0], copy.deepcopy(s[0])], "duplicate scene names"),
    "duplicate instance": (lambda s: (_duplicate_instance(s[0]), s)[1], "annotated twice"),
    "category change": (lambda s: (_change_category(s[0]), s)[1], "is both"),
    "file name characters": (_mutate("vehicle", "car/../x"), "file-name characters"),
    "no scenes": (lambda s: [], "no scenes"),
}


def _no_keyframes(scene):
    for sweep in scene.sweeps:
        sweep.is_key_frame = False
        sweep.lidarseg = None
    scene.keyframe_boxes = {}
    return scene


def _duplicate_instance(scene):
    first = min(scene.keyframe_boxes)
    scene.keyframe_boxes[first].append(copy.deepcopy(scene.keyframe_boxes[first][0]))


def _change_category(scene):
    last = max(scene.keyframe_boxes)
    box = next(b for b in scene.keyframe_boxes[last] if b.instance_id == "obj2")
    box.category = "animal" if box.category != "animal" else "vehicle.car"


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_before_anything_is_written(case, tmp_path):
    mutate, message = BAD_INPUTS[case]
    scenes = mutate(_scenes())
    with pytest.raises(ValueError, match=message):
        write_nuscenes(tmp_path / "out", scenes, VERSION)
    assert not (tmp_path / "out").exists()


def test_bad_version_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="plain folder name"):
        write_nuscenes(tmp_path, _scenes(), "../v1.0-trainval")


def test_scenes_streamed_from_an_iterator_give_the_same_dataset(written, tmp_path):
    root, _, _, _ = written
    write_nuscenes(tmp_path / "streamed", iter(_scenes()), VERSION, seed=3)
    for name in TABLE_NAMES:
        assert (tmp_path / "streamed" / VERSION / f"{name}.json").read_bytes() == (root / VERSION / f"{name}.json").read_bytes()


def test_iterator_errors_leave_no_tables(tmp_path):
    scenes = _scenes()
    with pytest.raises(ValueError, match="duplicate scene names"):
        write_nuscenes(tmp_path, iter([scenes[0], scenes[0]]), VERSION)
    with pytest.raises(ValueError, match="no scenes given"):
        write_nuscenes(tmp_path, iter([]), VERSION)
    assert not (tmp_path / VERSION).exists()
