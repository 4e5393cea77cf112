"""Training and evaluation with PyTorch Lightning: configs, data loaders that resume mid-epoch,
LightningModules, callbacks, checkpoints, and the runner behind ``tools/train.py`` / ``test.py``.

- :mod:`.config`      YAML configs with ``_base_`` inheritance, overrides and a checked schema
- :mod:`.data`        the DataModule of a config; resumable training loader; evaluation shards
- :mod:`.modules`     ``DetectionModule`` / ``SegmentationModule``
- :mod:`.callbacks`   EMA of the weights, throughput, per-rank digests
- :mod:`.checkpoint`  atomic checkpoint files read with ``weights_only=True``
- :mod:`.distributed` batch norm over the global batch on any device; objects between ranks
- :mod:`.evaluation`  the benchmark hook (nuScenes, Waymo)
- :mod:`.outputs`     metrics / results / boxes JSON and BEV pictures
- :mod:`.runner`      the Trainer of a config; ``train`` and ``evaluate``
"""

from .config import ExperimentConfig, load_config
from .modules import DetectionModule, SegmentationModule
from .runner import RunOptions, evaluate, train

__all__ = ["DetectionModule", "ExperimentConfig", "RunOptions", "SegmentationModule", "evaluate", "load_config",
           "train"]
