"""A run killed in the middle of an epoch and resumed from its last checkpoint ends with the
same weights, EMA weights and optimiser state as an uninterrupted run (deterministic mode),
with GT sampling and random augmentations on, validation between the epochs and EMA."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from pointformer.engine.checkpoint import load_checkpoint_file
from pointformer.engine.config import load_config
from pointformer.engine.runner import RunOptions, train

STEPS = 7        # 4 training samples, batch 1: epoch 0 is steps 1-4, epoch 1 steps 5-8
KILLED_AT = 5    # the last checkpoint is one batch into epoch 1
OVERRIDES = [f"train.max_steps={STEPS}", "dataset.batch_size=1", "train.deterministic=true", "train.ema_decay=0.9",
             "train.checkpoint.every_n_steps=1", "train.limit_val_batches=1", "train.optimizer.lr=3e-3"]


class Killed(Exception):
    """Stands for the process dying."""


class KillAt(pl.Callback):
    """Dies as step ``step + 1`` starts, after the checkpoint of step ``step`` was written."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise Killed(f"killed before step {self.step + 1}")


@pytest.fixture
def deterministic_mode():
    yield
    torch.use_deterministic_algorithms(False)


def run(config_path, work_dir, callbacks=(), resume=None):
    config = load_config(config_path, OVERRIDES)
    options = RunOptions(work_dir=work_dir, progress_bar=False, loggers=False, extra_callbacks=list(callbacks))
    return train(config, options, resume=resume)


def test_resume_after_a_kill_mid_epoch_matches_an_uninterrupted_run(detector_config, tmp_path, deterministic_mode):
    run(detector_config, tmp_path / "straight")
    with pytest.raises(Killed):
        run(detector_config, tmp_path / "killed", [KillAt(KILLED_AT)])
    killed = load_checkpoint_file(tmp_path / "killed" / "checkpoints" / "last.ckpt")
    assert killed["global_step"] == KILLED_AT
    assert killed["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "consumed": 1, "dataset_size": 4, "seed": 0}]
    trainer, _ = run(detector_config, tmp_path / "killed", resume="auto")
    assert trainer.global_step == STEPS

    straight = load_checkpoint_file(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    resumed = load_checkpoint_file(tmp_path / "killed" / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == straight["global_step"] == STEPS
    for key in ("training_state_dict", "state_dict"):  # live weights, EMA weights
        assert straight[key].keys() == resumed[key].keys()
        for name, value in straight[key].items():
            assert torch.equal(value, resumed[key][name]), f"{key}[{name}] differs"
    for name, value in straight["optimizer_states"][0]["state"].items():
        for field, tensor in value.items():
            assert torch.equal(tensor, resumed["optimizer_states"][0]["state"][name][field]), (name, field)
    assert straight["lr_schedulers"] == resumed["lr_schedulers"]
    assert straight["callbacks"].keys() == resumed["callbacks"].keys()


def test_an_interrupted_run_is_not_the_same_as_a_shorter_one(detector_config, tmp_path, deterministic_mode):
    """The comparison above can fail: a run that restarts its epoch instead of resuming it differs."""
    run(detector_config, tmp_path / "straight")
    with pytest.raises(Killed):
        run(detector_config, tmp_path / "killed", [KillAt(KILLED_AT)])
    path = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    payload = load_checkpoint_file(path)
    payload["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["consumed"] = 0  # forget the position in the epoch
    torch.save(payload, path)
    run(detector_config, tmp_path / "killed", resume="auto")
    straight = load_checkpoint_file(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    resumed = load_checkpoint_file(path)
    assert any(not torch.equal(value, resumed["training_state_dict"][name])
               for name, value in straight["training_state_dict"].items())
