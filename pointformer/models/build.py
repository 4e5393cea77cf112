"""Build model parts from config dicts: ``{"type": "FlatFormer", "group_size": 144, ...}``.

A part's options are its constructor's arguments; a misspelt type or option is an error that
names it, the part it belongs to and the nearest valid name. Values every part of a model
shares (voxel size, range, class names, channel counts) are passed down by the model, so a
config states them once.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from torch import nn

from pointformer.naming import did_you_mean

from .backbones.flatformer import FlatFormer
from .backbones.sparse_resnet import SparseResNet8x
from .backbones.sst import SSTBackbone
from .encoders import DynamicVFE, MeanVFE
from .heads.centerpoint import CenterHead
from .heads.segmentation import SegmentationHead
from .necks import SecondFPN

PARTS: dict[str, dict[str, type[nn.Module]]] = {
    "encoder": {"DynamicVFE": DynamicVFE, "MeanVFE": MeanVFE},
    "backbone": {"FlatFormer": FlatFormer, "SSTBackbone": SSTBackbone, "SparseResNet8x": SparseResNet8x},
    "neck": {"SecondFPN": SecondFPN},
    "head": {"CenterHead": CenterHead, "SegmentationHead": SegmentationHead},
}


def part_class(part: str, config: Mapping[str, Any]) -> type[nn.Module]:
    """The class a part config names under ``type``."""
    if not isinstance(config, Mapping) or "type" not in config:
        raise ValueError(f"model.{part} must be a mapping with a 'type' (one of {sorted(PARTS[part])}), got {config!r}")
    name = config["type"]
    if name not in PARTS[part]:
        raise ValueError(f"model.{part}.type: unknown {part} {name!r}{did_you_mean(str(name), PARTS[part])}; "
                         f"choose one of {sorted(PARTS[part])}")
    return PARTS[part][name]


def build_part(part: str, config: Mapping[str, Any], **shared: Any) -> nn.Module:
    """Instantiate ``config``; ``shared`` values fill the arguments the config leaves out
    (those the class does not take are skipped)."""
    cls = part_class(part, config)
    accepted = inspect.signature(cls.__init__).parameters
    options = {key: value for key, value in config.items() if key != "type"}
    for key in options:
        if key not in accepted:
            valid = [p for p in accepted if p != "self"]
            raise ValueError(f"model.{part}.{key}: {config['type']} has no option {key!r}{did_you_mean(key, valid)}; "
                             f"its options are {valid}")
    arguments = {key: value for key, value in shared.items() if key in accepted and key not in options}
    return cls(**arguments, **options)
