"""DDP for real on the CPU: ``tools/train.py --devices 2`` (Lightning starts the second process,
gloo backend) against one process with the same global batch.

What makes the two equal: both see the same samples per step (``ResumableSampler`` splits one
permutation between ranks), batch norm uses the global batch (``GlobalBatchNorm``), and the
CenterPoint losses divide by the positives / objects of the global batch (``CenterHead``'s rank
balance). What remains is float rounding: gradients are averaged by an all-reduce, the batch
statistics summed over ranks, and each rank's loss is scaled by its share of the normaliser, so
sums run in another order: ~1e-6 relative in the first step's loss. Adam then magnifies the
rounding of gradients that are mathematically zero (an attention key bias cannot change a
softmax over keys, so its gradient is pure rounding noise, which Adam normalises into a full
learning-rate step of either sign): after 4 steps at lr 2e-3 such weights differ by up to ~2e-3,
the loss by ~2e-4 relative, while the median weight differs by ~2e-6 (measured on this machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, TOOLS, tool

from pointformer.engine.checkpoint import load_checkpoint_file

STEPS = 4
LR = 5e-4  # small steps: Adam turns the ranks' all-reduce rounding into lr-sized steps on near-zero gradients
COMMON = [f"train.max_steps={STEPS}", "train.limit_val_batches=2", f"train.optimizer.lr={LR}"]
FIRST_LOSS_RTOL = 1e-5   # same weights: only the forward's rounding differs
LOSS_RTOL = 1e-3


def test_two_processes_end_with_identical_weights_and_the_single_process_loss_curve(detector_config, tmp_path):
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    command = [sys.executable, str(TOOLS / "train.py"), str(detector_config), *COMMON, "dataset.batch_size=1",
               "--devices", "2", "--work-dir", str(ddp_dir), "--debug-digest", "--no-progress"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    finished = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=600,
                              check=False)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert tool("train").main([str(detector_config), *COMMON, "dataset.batch_size=2", "--work-dir", str(single_dir),
                               "--debug-digest", "--no-progress"]) == 0

    ranks = [json.loads((ddp_dir / "debug" / f"rank{r}.json").read_text()) for r in (0, 1)]
    single = json.loads((single_dir / "debug" / "rank0.json").read_text())
    assert [r["world_size"] for r in ranks] == [2, 2] and single["world_size"] == 1
    assert ranks[0]["parameter_digest"] == ranks[1]["parameter_digest"], "DDP ranks ended with different weights"
    assert ranks[0]["buffer_digest"] == ranks[1]["buffer_digest"], "DDP ranks ended with different BN statistics"
    assert ranks[0]["losses"] == ranks[1]["losses"]  # the logged loss is the global one on every rank
    assert len(ranks[0]["losses"]) == len(single["losses"]) == STEPS
    assert ranks[0]["losses"][0] == pytest.approx(single["losses"][0], rel=FIRST_LOSS_RTOL)
    np.testing.assert_allclose(ranks[0]["losses"], single["losses"], rtol=LOSS_RTOL)

    distributed = load_checkpoint_file(ddp_dir / "checkpoints" / "last.ckpt")["state_dict"]
    alone = load_checkpoint_file(single_dir / "checkpoints" / "last.ckpt")["state_dict"]
    assert distributed.keys() == alone.keys()
    weights = [name for name, value in alone.items() if value.is_floating_point() and "running_" not in name]
    gaps = torch.cat([(distributed[name] - alone[name]).abs().flatten() for name in weights])
    assert float(gaps.max()) <= LR * STEPS  # Adam moves a weight by at most ~lr per step
    assert float(gaps.median()) < 1e-5
    assert float((gaps < 1e-4).float().mean()) > 0.98
