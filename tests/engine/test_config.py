"""Config files: inheritance, overrides, the schema's errors (full dotted key + nearest name), and
every shipped config loading and building its model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pointformer.engine.config import (
    TrainConfig,
    apply_overrides,
    build_dataclass,
    load_config,
    merge,
    parse_override,
    read_config_tree,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "configs").glob("*.yaml"))
SYNTHETIC = REPO / "configs" / "flatformer_centerpoint_synthetic.yaml"


def write(path: Path, document) -> Path:
    path.write_text(yaml.safe_dump(document) if not isinstance(document, str) else document)
    return path


# ------------------------------------------------------------------ merging
def merge_by_hand(base, update):
    """Twin of ``merge``: the rules spelt out one case at a time."""
    out = dict(base)
    for key, value in update.items():
        old = base.get(key)
        both_maps = isinstance(old, dict) and isinstance(value, dict)
        replaced = both_maps and (value.get("_delete_") or ("type" in value and "type" in old and value["type"] != old["type"]))
        if both_maps and not replaced:
            out[key] = merge_by_hand(old, value)
        elif isinstance(value, dict):
            out[key] = {k: v for k, v in value.items() if k != "_delete_"}
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("base, update", [
    ({"a": {"b": 1, "c": [1, 2]}, "d": 1}, {"a": {"c": [3]}, "e": 2}),
    ({"m": {"type": "A", "x": 1}}, {"m": {"type": "B", "y": 2}}),
    ({"m": {"type": "A", "x": 1}}, {"m": {"type": "A", "y": 2}}),
    ({"m": {"x": 1, "y": {"z": 1}}}, {"m": {"_delete_": True, "y": {"w": 2}}}),
    ({"a": 1}, {"a": {"b": 2}}),
    ({"a": {"b": 2}}, {"a": None}),
    ({}, {}),
])
def test_merge_matches_the_rules(base, update):
    assert merge(base, update) == merge_by_hand(base, update)
    assert merge(base, update) is not base


def test_bases_are_read_in_order_then_the_file(tmp_path):
    write(tmp_path / "a.yaml", {"train": {"seed": 1, "max_epochs": 3}, "x": [1, 2]})
    write(tmp_path / "b.yaml", {"_base_": "a.yaml", "train": {"seed": 2}})
    write(tmp_path / "c.yaml", {"train": {"max_epochs": 7}, "x": [9]})
    write(tmp_path / "top.yaml", {"_base_": ["b.yaml", "c.yaml"], "train": {"log_every_n_steps": 4}})
    assert read_config_tree(tmp_path / "top.yaml") == {
        "train": {"seed": 2, "max_epochs": 7, "log_every_n_steps": 4}, "x": [9]}


def test_inheritance_errors_name_the_files(tmp_path):
    write(tmp_path / "loop_a.yaml", {"_base_": "loop_b.yaml"})
    write(tmp_path / "loop_b.yaml", {"_base_": "loop_a.yaml"})
    with pytest.raises(ValueError, match="cycle"):
        read_config_tree(tmp_path / "loop_a.yaml")
    write(tmp_path / "orphan.yaml", {"_base_": "missing.yaml"})
    with pytest.raises(FileNotFoundError, match="missing.yaml.*a base of .*orphan.yaml"):
        read_config_tree(tmp_path / "orphan.yaml")
    write(tmp_path / "broken.yaml", "train: [unclosed")
    with pytest.raises(ValueError, match="broken.yaml: not valid YAML"):
        read_config_tree(tmp_path / "broken.yaml")
    write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping of sections"):
        read_config_tree(tmp_path / "list.yaml")


# ------------------------------------------------------------------ overrides
def test_overrides_set_nested_keys_list_items_and_parse_yaml():
    raw = {"train": {"optimizer": {"lr": 1.0}}, "dataset": {"train_transforms": [{"type": "A", "p": 1}]}}
    out = apply_overrides(raw, ["train.optimizer.lr=2e-3", "train.new.deep=[1, 2]", "dataset.train_transforms.0.p=0.5",
                                "train.flag=true", "train.name=abc", "train.none="])
    assert out["train"]["optimizer"]["lr"] == 0.002 and out["train"]["new"] == {"deep": [1, 2]}
    assert out["dataset"]["train_transforms"][0]["p"] == 0.5
    assert out["train"]["flag"] is True and out["train"]["name"] == "abc" and out["train"]["none"] is None
    assert raw["train"]["optimizer"]["lr"] == 1.0  # the input is left alone
    assert parse_override("a.b=1e-4") == (["a", "b"], 1e-4)  # YAML 1.1 would read a string


@pytest.mark.parametrize("text, message", [
    ("train.lr", "must look like key.sub.key=value"),
    ("=3", "dotted names"),
    ("train..lr=3", "dotted names"),
    ("dataset.train_transforms.5.p=1", "not an index"),
    ("train.optimizer.lr.deeper=1", "not a mapping"),
    ("train.x=[1, 2", "not valid YAML"),
])
def test_bad_overrides_are_errors(text, message):
    raw = {"train": {"optimizer": {"lr": 1.0}}, "dataset": {"train_transforms": [{"type": "A"}]}}
    with pytest.raises(ValueError, match=message):
        apply_overrides(raw, [text])


# ------------------------------------------------------------------ the schema
@pytest.mark.parametrize("override, message", [
    ("dataset.batch_sise=2", r"dataset\.batch_sise: unknown key \(did you mean 'batch_size'\?\)"),
    ("train.optimizer.lrr=1e-3", r"train\.optimizer\.lrr: unknown key \(did you mean 'lr'\?\)"),
    ("train.checkpoint.monitr=val/NDS", r"train\.checkpoint\.monitr: unknown key \(did you mean 'monitor'\?\)"),
    ("dataset.splits.vall=val", r"dataset\.splits\.vall: unknown key \(did you mean 'val'\?\)"),
    ("evall.benchmark=nuscenes", r"evall: unknown config section \(did you mean 'eval'\?\)"),
    ("dataset.train_transforms.1.rot_rnage=[0, 1]",
     r"dataset\.train_transforms\[1\]\.rot_rnage: GlobalRotScaleTrans has no option 'rot_rnage' \(did you mean 'rot_range'\?\)"),
    ("dataset.eval_transforms.0.type=PointRangeFiltr",
     r"dataset\.eval_transforms\[0\]\.type: unknown transform 'PointRangeFiltr' \(did you mean 'PointRangeFilter'\?\)"),
    ("model.backbone.chanels=32", r"model\.backbone\.chanels: FlatFormer has no option 'chanels' \(did you mean 'channels'\?\)"),
    ("model.neck.type=SecondFNP", r"model\.neck\.type: unknown neck 'SecondFNP' \(did you mean 'SecondFPN'\?\)"),
    ("model.type=Detektor", r"model\.type: .*'Detektor' \(did you mean 'Detector'\?\)"),
    ("eval.benchmark=nuscene", r"eval\.benchmark: unknown 'nuscene' \(did you mean 'nuscenes'\?\)"),
    ("train.precision=16-mixd", r"train\.precision: unknown '16-mixd' \(did you mean '16-mixed'\?\)"),
    ("train.max_epochs=many", r"train\.max_epochs: expected an integer, got 'many'"),
    ("train.optimizer.betas=[0.9]", r"train\.optimizer\.betas must be two numbers"),
    ("train.optimizer.lr=true", r"train\.optimizer\.lr: expected a number, got True"),
    ("dataset.voxel_size=[0.4, 0.4]", r"dataset\.voxel_size must be 3 positive sizes"),
    ("dataset.point_cloud_range=[1, 0, 0, 0, 1, 1]", r"dataset\.point_cloud_range must be"),
    ("dataset.label_map=nuscenes_lidarsg", r"dataset\.label_map: unknown map 'nuscenes_lidarsg' \(did you mean 'nuscenes_lidarseg'\?\)"),
    ("train.max_time=10 minutes", r"train\.max_time must be \"HH:MM:SS\""),
    ("train.checkpoint.mode=maximum", r"train\.checkpoint\.mode: expected one of \['max', 'min'\]"),
])
def test_a_bad_key_or_value_names_the_dotted_key_and_the_nearest_name(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(SYNTHETIC, [override])


def test_the_schedule_needs_a_length():
    with pytest.raises(ValueError, match="set max_epochs or max_steps"):
        build_dataclass(TrainConfig, {"max_epochs": None}, "train")
    assert build_dataclass(TrainConfig, {"max_steps": 5, "max_time": "00:01:00"}, "train").max_steps == 5


def test_required_sections_and_keys():
    with pytest.raises(ValueError, match="no 'model' section"):
        from pointformer.engine.config import config_from_mapping

        config_from_mapping({"dataset": {}})
    with pytest.raises(ValueError, match=r"dataset\.root is required"):
        load_config(SYNTHETIC, ["dataset={class_names: [car], point_cloud_range: [0,0,0,1,1,1], voxel_size: [1,1,1]}"])


def test_typed_values_are_converted():
    config = load_config(SYNTHETIC, ["train.optimizer.lr=2", "train.grad_clip=5"])
    assert isinstance(config.train.optimizer.lr, float) and config.train.optimizer.lr == 2.0
    assert config.dataset.point_columns == ("x", "y", "z", "intensity", "time_lag")
    assert config.dataset.point_channels == 5
    assert load_config(SYNTHETIC, ["dataset.num_sweeps=0"]).dataset.point_channels == 4


# ------------------------------------------------------------------ shipped configs
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_config_loads_and_builds(path):
    config = load_config(path)  # builds the model on the CPU
    assert config.task == ("segmentation" if "_seg_" in path.name else "detection")
    assert config.train.max_epochs or config.train.max_steps
    description = config.model_description()
    assert description["point_channels"] == config.dataset.point_channels


def test_the_families_inherit_their_published_parts():
    flat = load_config(REPO / "configs" / "flatformer_centerpoint_waymo.yaml")
    sst = load_config(REPO / "configs" / "sst_centerpoint_waymo.yaml")
    assert flat.model["backbone"] == {"type": "FlatFormer", "channels": 128, "num_heads": 8, "num_blocks": 2,
                                      "window_shape": [13, 13], "group_size": 144,
                                      "orders": ["x", "x_shift", "y", "y_shift"], "ffn_ratio": 2.0}
    assert sst.model["backbone"]["type"] == "SSTBackbone" and "group_size" not in sst.model["backbone"]
    assert {k: v for k, v in sst.model.items() if k != "backbone"} == {k: v for k, v in flat.model.items() if k != "backbone"}
    assert flat.dataset.voxel_size == [0.32, 0.32, 6.0] and flat.train.optimizer.no_decay_norm
    nus = load_config(REPO / "configs" / "spconv_centerpoint_nuscenes.yaml")
    assert nus.dataset.voxel_size == [0.075, 0.075, 0.2] and len(nus.model["head"]["tasks"]) == 6
    assert nus.train.grad_clip == 35.0 and nus.train.max_epochs == 20
