"""Experiment configs: YAML files that inherit, command-line overrides, and a checked schema.

A config file has four sections, ``dataset``, ``model``, ``train`` and ``eval``, and may name
the files it builds on::

    _base_: [_base_/datasets/nuscenes.yaml, _base_/models/flatformer_centerpoint.yaml]
    train:
      max_epochs: 20

Bases (paths relative to the file, read in order, each with its own bases) are merged first and
the file's own keys over them: mappings merge key by key, every other value (lists included)
is replaced. A mapping whose ``type`` differs from the base's replaces it whole (switching a
backbone drops the old one's options), as does a mapping with ``_delete_: true``.

Overrides ``key.sub.key=value`` (value parsed as YAML; list items by index, ``a.0.b=1``) are
applied to the merged mapping. Then every key is checked: the non-model sections against the
dataclasses below (and transforms against their constructors), the model by building it on
the CPU (``pointformer.models.build``). A misspelt key is a ``ValueError`` naming the full
dotted key and the nearest valid one.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pointformer.naming import did_you_mean

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"
MODEL_TYPES = ("Detector", "Segmentor")
BENCHMARKS = ("nuscenes", "waymo", "segmentation", "none")
LABEL_MAPS = ("nuscenes_lidarseg",)
PRECISIONS = ("auto", "32", "32-true", "16-mixed", "bf16-mixed")


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading floats as YAML 1.2 does: ``1e-4`` is a number, not a string."""


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.VERBOSE),
    list("-+0123456789."),
)


# ------------------------------------------------------------------ schema
@dataclass
class SplitsConfig:
    """Split names of the info files used for training, validation and ``tools/test.py``."""

    train: str = "train"
    val: str = "val"
    test: str = "val"


@dataclass
class InfoFilesConfig:
    """Explicit info files per stage (relative to the dataset root); None: ``pointformer_infos_<split>.json``."""

    train: str | None = None
    val: str | None = None
    test: str | None = None


@dataclass
class DatasetConfig:
    """Where the data is and how a sample becomes a batch.

    ``num_sweeps``: earlier sweeps merged into each sample (nuScenes: 9, for 10 in all); with
    sweeps the points get a ``time_lag`` column (seconds before the keyframe).
    Transforms: ``[{type: GlobalRotScaleTrans, rot_range: [...]}, ...]`` with the classes of
    ``pointformer.data.transforms``; ``point_cloud_range`` / ``class_names`` options left out are
    filled from this section and a ``GTSampling.database`` path is relative to ``root``.
    ``label_map`` (segmentation): ``nuscenes_lidarseg`` or a list raw id -> training id (< 0 ignored).
    """

    root: str
    class_names: list[str]
    point_cloud_range: list[float]
    voxel_size: list[float]
    layout: str | None = None
    num_sweeps: int = 0
    feature_columns: list[str] = field(default_factory=lambda: ["intensity"])
    splits: SplitsConfig = field(default_factory=SplitsConfig)
    info_files: InfoFilesConfig = field(default_factory=InfoFilesConfig)
    train_transforms: list[dict[str, Any]] = field(default_factory=list)
    eval_transforms: list[dict[str, Any]] = field(default_factory=list)
    batch_size: int = 4
    eval_batch_size: int | None = None
    num_workers: int = 2
    label_map: str | list[int] | None = None
    ignore_index: int = -1

    @property
    def with_time_lag(self) -> bool:
        return self.num_sweeps > 0

    @property
    def point_columns(self) -> tuple[str, ...]:
        """The columns of every loaded point: x, y, z, the features, then time_lag when used."""
        return ("x", "y", "z", *self.feature_columns) + (("time_lag",) if self.with_time_lag else ())

    @property
    def point_channels(self) -> int:
        return len(self.point_columns)

    def check(self, where: str) -> None:
        _require(len(self.point_cloud_range) == 6 and all(lo < hi for lo, hi in zip(self.point_cloud_range[:3],
                                                                                  self.point_cloud_range[3:])),
                 f"{where}.point_cloud_range must be [x0, y0, z0, x1, y1, z1] with x0 < x1 etc., "
                 f"got {self.point_cloud_range}")
        _require(len(self.voxel_size) == 3 and min(self.voxel_size) > 0,
                 f"{where}.voxel_size must be 3 positive sizes in metres, got {self.voxel_size}")
        _require(len(self.class_names) > 0 and len(set(self.class_names)) == len(self.class_names),
                 f"{where}.class_names must be a non-empty list of distinct names, got {self.class_names}")
        _require(self.num_sweeps >= 0, f"{where}.num_sweeps must be >= 0, got {self.num_sweeps}")
        _require(self.batch_size >= 1, f"{where}.batch_size must be >= 1, got {self.batch_size}")
        _require(self.eval_batch_size is None or self.eval_batch_size >= 1,
                 f"{where}.eval_batch_size must be >= 1, got {self.eval_batch_size}")
        _require(self.num_workers >= 0, f"{where}.num_workers must be >= 0, got {self.num_workers}")
        if isinstance(self.label_map, str):
            _require(self.label_map in LABEL_MAPS, f"{where}.label_map: unknown map {self.label_map!r}"
                     f"{did_you_mean(self.label_map, LABEL_MAPS)}; give one of {list(LABEL_MAPS)} or a list of ids")


@dataclass
class OptimizerConfig:
    """AdamW. ``lr`` is the peak of the one-cycle schedule. ``no_decay_norm``: no weight decay on
    normalisation layers (SST / FlatFormer's ``norm: decay_mult 0``)."""

    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.95, 0.99])
    no_decay_norm: bool = False

    def check(self, where: str) -> None:
        _require(self.lr > 0, f"{where}.lr must be > 0, got {self.lr}")
        _require(self.weight_decay >= 0, f"{where}.weight_decay must be >= 0, got {self.weight_decay}")
        _require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                 f"{where}.betas must be two numbers in [0, 1), got {self.betas}")


@dataclass
class ScheduleConfig:
    """One-cycle learning rate stepped every iteration (mmdetection3d's ``cyclic``, OpenPCDet's
    ``adam_onecycle``; ``torch.optim.lr_scheduler.OneCycleLR``): from ``lr / div_factor`` up to
    ``lr`` over the first ``pct_start`` of the steps (cosine), then down to
    ``lr / div_factor / final_div_factor``. ``momentum`` [low, high]: Adam's beta1 goes from high
    to low while the rate rises and back (None: not cycled)."""

    pct_start: float = 0.4
    div_factor: float = 10.0
    final_div_factor: float = 1e4
    momentum: list[float] | None = field(default_factory=lambda: [0.85, 0.95])

    def check(self, where: str) -> None:
        _require(0 < self.pct_start < 1, f"{where}.pct_start must lie in (0, 1), got {self.pct_start}")
        _require(self.div_factor > 0 and self.final_div_factor > 0,
                 f"{where}.div_factor and final_div_factor must be > 0, got {self.div_factor}, {self.final_div_factor}")
        _require(self.momentum is None or (len(self.momentum) == 2 and 0 <= self.momentum[0] <= self.momentum[1] < 1),
                 f"{where}.momentum must be [low, high] with 0 <= low <= high < 1, or null; got {self.momentum}")


@dataclass
class CheckpointConfig:
    """``best.ckpt`` by ``monitor`` (None: no best checkpoint) and ``last.ckpt`` at every
    validation, every ``every_n_steps`` steps and every ``every_n_minutes`` (0: off)."""

    monitor: str | None = "val/mAP"
    mode: Literal["max", "min"] = "max"
    every_n_steps: int = 0
    every_n_minutes: float = 10.0

    def check(self, where: str) -> None:
        _require(self.every_n_steps >= 0, f"{where}.every_n_steps must be >= 0, got {self.every_n_steps}")
        _require(self.every_n_minutes >= 0, f"{where}.every_n_minutes must be >= 0, got {self.every_n_minutes}")


@dataclass
class TrainConfig:
    """The loop. The one-cycle schedule needs a known length: ``max_steps``, else ``max_epochs``;
    ``max_time`` ("HH:MM:SS" or "DD:HH:MM:SS") only stops early. ``precision``: ``auto`` is
    16-mixed on a GPU and 32 on the CPU (mixed precision is used on GPUs only). ``ema_decay``:
    exponential moving average of the weights (None: off). ``grad_clip``: max global L2 norm."""

    max_epochs: int | None = None
    max_steps: int | None = None
    max_time: str | None = None
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    grad_clip: float | None = 10.0
    ema_decay: float | None = None
    precision: str = "auto"
    seed: int = 0
    deterministic: bool = False
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    sync_batchnorm: bool = True
    find_unused_parameters: bool = False
    val_interval: int = 1
    log_every_n_steps: int = 10
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    limit_train_batches: float | int = 1.0
    limit_val_batches: float | int = 1.0

    def check(self, where: str) -> None:
        _require(self.max_epochs is not None or self.max_steps is not None,
                 f"{where}: set max_epochs or max_steps (the one-cycle schedule needs the run's length)")
        _require(self.max_epochs is None or self.max_epochs >= 1, f"{where}.max_epochs must be >= 1, got {self.max_epochs}")
        _require(self.max_steps is None or self.max_steps >= 1, f"{where}.max_steps must be >= 1, got {self.max_steps}")
        if self.max_time is not None:
            parse_duration(self.max_time, f"{where}.max_time")
        _require(self.grad_clip is None or self.grad_clip > 0, f"{where}.grad_clip must be > 0 or null, got {self.grad_clip}")
        _require(self.ema_decay is None or 0 < self.ema_decay < 1,
                 f"{where}.ema_decay must lie in (0, 1) or be null, got {self.ema_decay}")
        _require(self.precision in PRECISIONS, f"{where}.precision: unknown {self.precision!r}"
                 f"{did_you_mean(self.precision, PRECISIONS)}; choose one of {list(PRECISIONS)}")
        _require(self.val_interval >= 1, f"{where}.val_interval must be >= 1, got {self.val_interval}")
        _require(self.log_every_n_steps >= 1, f"{where}.log_every_n_steps must be >= 1, got {self.log_every_n_steps}")
        _require(self.seed >= 0, f"{where}.seed must be >= 0, got {self.seed}")
        for name in ("limit_train_batches", "limit_val_batches"):
            value = getattr(self, name)
            _require(value > 0, f"{where}.{name} must be > 0 (a fraction <= 1.0 or a number of batches), got {value}")


@dataclass
class EvalConfig:
    """How validation and ``tools/test.py`` score predictions.

    ``benchmark``: ``nuscenes`` (NDS, mAP; nuScenes layouts), ``waymo`` (mAP/mAPH L1/L2),
    ``segmentation`` (mIoU) or ``none`` (losses only). nuScenes: ``ground_truth`` ``tables``
    reads the devkit tables of the root (the benchmark's numbers; falls back to the info records
    when a run scores part of a split) or ``infos``; ``class_range`` replaces the devkit's
    per-class distance limits (its keys are the classes scored)."""

    benchmark: str = "nuscenes"
    ground_truth: Literal["tables", "infos"] = "tables"
    class_range: dict[str, float] | None = None

    def check(self, where: str) -> None:
        _require(self.benchmark in BENCHMARKS, f"{where}.benchmark: unknown {self.benchmark!r}"
                 f"{did_you_mean(self.benchmark, BENCHMARKS)}; choose one of {list(BENCHMARKS)}")


@dataclass
class ExperimentConfig:
    """A checked config: the dataset, the model (a ``Detector`` / ``Segmentor`` config mapping),
    training and evaluation settings, and the file it came from."""

    dataset: DatasetConfig
    model: dict[str, Any]
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    source: str = ""

    @property
    def task(self) -> str:
        """``detection`` (a Detector) or ``segmentation`` (a Segmentor)."""
        return "segmentation" if self.model.get("type") == "Segmentor" else "detection"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, numbers, strings) for YAML and checkpoints."""
        return {name: copy.deepcopy(getattr(self, name)) if name == "model" else dataclasses.asdict(getattr(self, name))
                for name in ("dataset", "model", "train", "eval")}

    def model_description(self) -> dict[str, Any]:
        """What rebuilds the model without this config (the checkpoint keys of
        ``pointformer.models.export``): model_config, class_names, point_channels, voxel_size,
        point_cloud_range."""
        return {
            "model_config": copy.deepcopy(self.model),
            "class_names": list(self.dataset.class_names),
            "point_channels": self.dataset.point_channels,
            "voxel_size": [float(v) for v in self.dataset.voxel_size],
            "point_cloud_range": [float(v) for v in self.dataset.point_cloud_range],
        }

    def build_model(self):
        """A freshly initialised ``Detector`` / ``Segmentor``."""
        from pointformer.models.detector import Detector
        from pointformer.models.segmentor import Segmentor

        geometry = {"point_channels": self.dataset.point_channels, "voxel_size": self.dataset.voxel_size,
                    "point_cloud_range": self.dataset.point_cloud_range}
        if self.task == "segmentation":
            parts = {key: value for key, value in self.model.items() if key != "type"}
            return Segmentor.from_config(parts, len(self.dataset.class_names), ignore_index=self.dataset.ignore_index,
                                         **geometry)
        return Detector.from_config(self.model, self.dataset.class_names, **geometry)


# ------------------------------------------------------------------ loading
def load_config(path: str | Path, overrides: Sequence[str] = (), *, check_model: bool = True) -> ExperimentConfig:
    """Read ``path`` with its bases, apply ``overrides`` (``a.b.c=value``), check every key and
    (``check_model``) build the model on the CPU so that a bad model option fails now."""
    raw = read_config_tree(path)
    raw = apply_overrides(raw, overrides)
    config = config_from_mapping(raw, source=str(path))
    if check_model:
        check_model_builds(config)
    return config


def read_config_tree(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping of ``path`` merged over its ``_base_`` files (recursively)."""
    path = Path(path)
    if not path.is_file():
        where = f" (a base of {_chain[-1]})" if _chain else ""
        raise FileNotFoundError(f"config file {path}{where} not found")
    resolved = path.resolve()
    if resolved in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, resolved))
        raise ValueError(f"config files include each other in a cycle: {cycle}")
    try:
        content = yaml.load(path.read_text(), Loader=ConfigLoader) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(content, dict):
        raise ValueError(f"{path}: a config file must hold a mapping of sections, got {type(content).__name__}")
    bases = content.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ValueError(f"{path}: {BASE_KEY} must be a file name or a list of them, got {bases!r}")
    merged: dict[str, Any] = {}
    for base in bases:
        merged = merge(merged, read_config_tree(path.parent / base, (*_chain, resolved)))
    return merge(merged, content)


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` deep-merged over ``base`` (neither is modified): mappings merge key by key;
    lists and scalars replace; a mapping with ``_delete_: true`` or another ``type`` replaces."""
    result = copy.deepcopy(dict(base))
    for key, value in update.items():
        old = result.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping) and not _replaces(old, value):
            result[key] = merge(old, value)
        elif isinstance(value, Mapping):
            result[key] = {k: copy.deepcopy(v) for k, v in value.items() if k != DELETE_KEY}
        else:
            result[key] = copy.deepcopy(value)
    return result


def _replaces(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return bool(new.get(DELETE_KEY)) or ("type" in new and "type" in old and new["type"] != old["type"])


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``raw`` with every ``dotted.key=value`` set (value parsed as YAML); list items by index."""
    result = copy.deepcopy(dict(raw))
    for text in overrides:
        keys, value = parse_override(text)
        node: Any = result
        for depth, key in enumerate(keys[:-1]):
            node = _child(node, key, keys[: depth + 1], create=True)
        last = keys[-1]
        if isinstance(node, list):
            node[_list_index(node, last, keys)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ValueError(f"override {text!r}: {'.'.join(keys[:-1])} is a {type(node).__name__}, not a mapping")
    return result


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.optimizer.lr=2e-3"`` -> (["train", "optimizer", "lr"], 0.002)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key.sub.key=value")
    key, value_text = text.split("=", 1)
    keys = key.strip().split(".")
    if not key.strip() or any(not k for k in keys):
        raise ValueError(f"override {text!r}: the key must be dotted names like train.optimizer.lr")
    try:
        value = yaml.load(value_text, Loader=ConfigLoader) if value_text.strip() else None
    except yaml.YAMLError as error:
        raise ValueError(f"override {text!r}: the value is not valid YAML ({error})") from error
    return keys, value


def _child(node: Any, key: str, path: list[str], create: bool) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, key, path)]
    if not isinstance(node, dict):
        raise ValueError(f"override: {'.'.join(path[:-1])} is a {type(node).__name__}, not a mapping")
    if key not in node or node[key] is None:
        if not create:
            raise KeyError(key)
        node[key] = {}
    return node[key]


def _list_index(node: list, key: str, path: Sequence[str]) -> int:
    if not key.lstrip("-").isdigit() or not -len(node) <= int(key) < len(node):
        raise ValueError(f"override: {'.'.join(path)}: {key!r} is not an index of a list of {len(node)} items")
    return int(key)


# ------------------------------------------------------------------ checking
def config_from_mapping(raw: Mapping[str, Any], source: str = "") -> ExperimentConfig:
    """Check a merged mapping against the schema; errors name the dotted key."""
    known = ("dataset", "model", "train", "eval")
    for key in raw:
        if key not in known:
            raise ValueError(f"{key}: unknown config section{did_you_mean(str(key), known)}; sections are {list(known)}")
    for key in ("dataset", "model"):
        if key not in raw:
            raise ValueError(f"the config has no {key!r} section (did a _base_ file go missing?)")
    dataset = build_dataclass(DatasetConfig, raw["dataset"], "dataset")
    check_transforms(dataset.train_transforms, "dataset.train_transforms")
    check_transforms(dataset.eval_transforms, "dataset.eval_transforms")
    model = raw["model"]
    if not isinstance(model, Mapping):
        raise ValueError(f"model must be a mapping of parts, got {type(model).__name__}")
    model_type = model.get("type")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model.type: expected one of {list(MODEL_TYPES)}, got {model_type!r}"
                         f"{did_you_mean(str(model_type), MODEL_TYPES)}")
    train = build_dataclass(TrainConfig, raw.get("train") or {}, "train")
    evaluation = build_dataclass(EvalConfig, raw.get("eval") or {}, "eval")
    config = ExperimentConfig(dataset, copy.deepcopy(dict(model)), train, evaluation, source)
    if config.task == "segmentation" and dataset.label_map is None:
        raise ValueError("dataset.label_map: a Segmentor needs a label map (raw point label -> training id)")
    return config


def check_model_builds(config: ExperimentConfig) -> None:
    """Build the model once on the CPU so a misspelt part or option fails before training."""
    config.build_model()


def build_dataclass(cls: type, values: Any, where: str) -> Any:
    """An instance of dataclass ``cls`` from a mapping, every value type-checked; unknown keys
    are errors naming ``where.key`` and the nearest field."""
    if not isinstance(values, Mapping):
        raise ValueError(f"{where} must be a mapping, got {type(values).__name__} {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            raise ValueError(f"{where}.{key}: unknown key{did_you_mean(str(key), fields)}; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    arguments = {}
    for name, spec in fields.items():
        if name in values:
            arguments[name] = check_value(values[name], hints[name], f"{where}.{name}")
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise ValueError(f"{where}.{name} is required")
    instance = cls(**arguments)
    if hasattr(instance, "check"):
        instance.check(where)
    return instance


def check_value(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked (and numbers converted) against a type hint; ValueError naming ``where``."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        errors = []
        for option in (a for a in arguments if a is not type(None)):
            try:
                return check_value(value, option, where)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(errors[0] if len(errors) == 1 else f"{where}: expected {_describe(hint)}, got {value!r}")
    if origin is Literal:
        if value not in arguments:
            raise ValueError(f"{where}: expected one of {list(arguments)}, got {value!r}{did_you_mean(str(value), map(str, arguments))}")
        return value
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        item = arguments[0] if arguments else Any
        return [check_value(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        item = arguments[1] if arguments else Any
        return {str(k): check_value(v, item, f"{where}.{k}") for k, v in value.items()}
    return _check_scalar(value, hint, where)


def _check_scalar(value: Any, hint: Any, where: str) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(float(value)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: the schema has an unsupported type {hint!r}")


def _describe(hint: Any) -> str:
    names = [getattr(a, "__name__", str(a)) for a in typing.get_args(hint)]
    return " or ".join(n if n != "NoneType" else "null" for n in names)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def parse_duration(text: str, where: str) -> dict[str, int]:
    """``"HH:MM:SS"`` or ``"DD:HH:MM:SS"`` -> Lightning's ``max_time`` mapping."""
    parts = str(text).split(":")
    if len(parts) not in (3, 4) or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"{where} must be \"HH:MM:SS\" or \"DD:HH:MM:SS\", got {text!r}")
    values = [int(p) for p in parts]
    if len(values) == 3:
        values = [0, *values]
    return dict(zip(("days", "hours", "minutes", "seconds"), values))


# ------------------------------------------------------------------ transforms
def transform_classes() -> dict[str, type]:
    """The transforms a config may name: every public class of ``pointformer.data.transforms``
    that is called as ``transform(sample, rng)``."""
    from pointformer.data import transforms

    return {name: cls for name, cls in vars(transforms).items()
            if inspect.isclass(cls) and cls.__module__ == transforms.__name__ and not name.startswith("_")
            and callable(cls) and name not in ("Compose", "Transform")}


def check_transforms(items: Sequence[Mapping[str, Any]], where: str) -> None:
    """Each item names a known transform ``type`` and only options its constructor takes."""
    known = transform_classes()
    for index, item in enumerate(items):
        at = f"{where}[{index}]"
        if not isinstance(item, Mapping) or "type" not in item:
            raise ValueError(f"{at} must be a mapping with a 'type' (one of {sorted(known)}), got {item!r}")
        name = item["type"]
        if name not in known:
            raise ValueError(f"{at}.type: unknown transform {name!r}{did_you_mean(str(name), known)}; "
                             f"choose one of {sorted(known)}")
        accepted = [p for p in inspect.signature(known[name]).parameters]
        for key in item:
            if key != "type" and key not in accepted:
                raise ValueError(f"{at}.{key}: {name} has no option {key!r}{did_you_mean(str(key), accepted)}; "
                                 f"its options are {accepted}")
