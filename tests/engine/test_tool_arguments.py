"""tools/train.py and tools/test.py take config overrides before or after their options."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv", [
    ["cfg.yaml", "--work-dir", "out", "train.max_epochs=3", "dataset.batch_size=1"],
    ["cfg.yaml", "train.max_epochs=3", "--work-dir", "out", "dataset.batch_size=1"],
    ["--work-dir", "out", "cfg.yaml", "train.max_epochs=3", "dataset.batch_size=1"],
])
def test_train_overrides_in_any_position(argv):
    args = tool("train").parse_args(argv)
    assert args.overrides == ["train.max_epochs=3", "dataset.batch_size=1"]
    assert args.work_dir == Path("out") and args.config == Path("cfg.yaml")


def test_test_overrides_after_options():
    args = tool("test").parse_args(["cfg.yaml", "--ckpt", "last.ckpt", "--out", "eval", "dataset.num_workers=0"])
    assert args.overrides == ["dataset.num_workers=0"] and args.ckpt == Path("last.ckpt")
