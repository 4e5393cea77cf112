"""Segmentation metrics against a dense Python-loop twin: streaming over batches, ignore index,
scores vs labels, absent classes, merging, and a 2-process gloo all-reduce."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pointformer.evaluation.segmentation import ConfusionMatrix

NUM_CLASSES = 5
IGNORE = 255


def _twin(pairs, num_classes: int, ignore: int | None):
    """Per-class IoU, mIoU and accuracy by counting (target, pred) pairs one by one."""
    tp, fp, fn, total, correct = [0] * num_classes, [0] * num_classes, [0] * num_classes, 0, 0
    for target, pred in pairs:
        if ignore is not None and target == ignore:
            continue
        total += 1
        if target == pred:
            tp[target] += 1
            correct += 1
        else:
            fn[target] += 1
            fp[pred] += 1
    iou = [tp[c] / (tp[c] + fp[c] + fn[c]) if tp[c] + fp[c] + fn[c] else math.nan for c in range(num_classes)]
    present = [v for v in iou if not math.isnan(v)]
    return iou, (sum(present) / len(present) if present else math.nan), (correct / total if total else math.nan)


def _assert_matches(metrics, pairs, num_classes=NUM_CLASSES, ignore=IGNORE):
    iou, miou, accuracy = _twin(pairs, num_classes, ignore)
    np.testing.assert_allclose(metrics.iou, iou, equal_nan=True)
    assert (math.isnan(miou) and math.isnan(metrics.miou)) or metrics.miou == pytest.approx(miou)
    assert (math.isnan(accuracy) and math.isnan(metrics.accuracy)) or metrics.accuracy == pytest.approx(accuracy)


def _batch(rng: np.random.Generator, size: int, classes=NUM_CLASSES):
    target = rng.integers(0, classes, size)
    target[rng.random(size) < 0.2] = IGNORE
    pred = np.where(rng.random(size) < 0.6, target % classes, rng.integers(0, classes, size))
    return torch.from_numpy(pred), torch.from_numpy(target)


@pytest.mark.parametrize("seed", range(4))
def test_streaming_batches_match_twin(seed):
    rng = np.random.default_rng(seed)
    matrix = ConfusionMatrix(NUM_CLASSES, ignore_index=IGNORE)
    pairs = []
    for _ in range(5):
        pred, target = _batch(rng, int(rng.integers(0, 300)))
        matrix.update(pred, target)
        pairs += list(zip(target.tolist(), pred.tolist()))
    metrics = matrix.compute()
    _assert_matches(metrics, pairs)
    assert metrics.num_points == sum(t != IGNORE for t, _ in pairs)


def test_scores_are_argmaxed_and_shapes_kept():
    rng = np.random.default_rng(5)
    scores = torch.from_numpy(rng.random((4, 30, NUM_CLASSES)))
    target = torch.from_numpy(rng.integers(0, NUM_CLASSES, (4, 30)))
    from_scores, from_labels = ConfusionMatrix(NUM_CLASSES), ConfusionMatrix(NUM_CLASSES)
    from_scores.update(scores, target)
    from_labels.update(scores.argmax(-1), target)
    assert torch.equal(from_scores.matrix, from_labels.matrix)


def test_absent_classes_and_empty_input():
    matrix = ConfusionMatrix(4, ignore_index=-1, class_names=["a", "b", "c", "d"])
    empty = matrix.compute()
    assert math.isnan(empty.miou) and math.isnan(empty.accuracy) and np.isnan(empty.iou).all()
    matrix.update(torch.tensor([0, 0, 2, 1]), torch.tensor([0, -1, 0, -1]))
    metrics = matrix.compute()
    # class 0: 1 TP, 1 FN (predicted 2); class 2 only predicted -> IoU 0; classes 1, 3 absent.
    assert metrics.iou[0] == 0.5 and metrics.iou[2] == 0.0
    assert math.isnan(metrics.iou[1]) and math.isnan(metrics.iou[3])
    assert metrics.miou == 0.25 and metrics.accuracy == 0.5
    summary = metrics.to_json()
    assert summary["iou"]["b"] is None and summary["miou"] == 0.25
    assert metrics.table().row_count == 5


def test_merge_equals_one_matrix():
    rng = np.random.default_rng(9)
    batches = [_batch(rng, 200) for _ in range(4)]
    whole, first, second = (ConfusionMatrix(NUM_CLASSES, IGNORE) for _ in range(3))
    for i, (pred, target) in enumerate(batches):
        whole.update(pred, target)
        (first if i % 2 else second).update(pred, target)
    assert torch.equal(first.merge(second).matrix, whole.matrix)
    assert torch.equal(whole.all_reduce().matrix, first.matrix)  # not initialised: unchanged


def test_bad_input():
    matrix = ConfusionMatrix(3, ignore_index=IGNORE)
    with pytest.raises(ValueError, match="target labels"):
        matrix.update(torch.tensor([0, 1]), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="pred labels"):
        matrix.update(torch.tensor([0, -1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="shape"):
        matrix.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer"):
        matrix.update(torch.tensor([0, 1]), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="scores"):
        matrix.update(torch.rand(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="classes"):
        matrix.merge(ConfusionMatrix(4))
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)
    assert int(matrix.matrix.sum()) == 0  # failed updates count nothing


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_labels_count_on_the_gpu():
    rng = np.random.default_rng(2)
    pred, target = _batch(rng, 500)
    gpu, cpu = ConfusionMatrix(NUM_CLASSES, IGNORE), ConfusionMatrix(NUM_CLASSES, IGNORE)
    gpu.update(pred.cuda(), target.cuda())
    cpu.update(pred, target)
    assert gpu.matrix.is_cuda and torch.equal(gpu.matrix.cpu(), cpu.matrix)


def _rank_worker(rank: int, world_size: int, init_file: str, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        rng = np.random.default_rng(42)
        batches = [_batch(rng, 100 + 10 * i) for i in range(4)]
        matrix = ConfusionMatrix(NUM_CLASSES, IGNORE)
        for pred, target in batches[rank::world_size]:
            matrix.update(pred, target)
        matrix.all_reduce()
        torch.save(matrix.matrix, f"{out_file}.{rank}")
    finally:
        dist.destroy_process_group()


def test_all_reduce_across_two_gloo_ranks(tmp_path):
    out_file = str(tmp_path / "matrix")
    mp.spawn(_rank_worker, args=(2, str(tmp_path / "init"), out_file), nprocs=2, join=True)
    rng = np.random.default_rng(42)
    whole = ConfusionMatrix(NUM_CLASSES, IGNORE)
    for pred, target in [_batch(rng, 100 + 10 * i) for i in range(4)]:
        whole.update(pred, target)
    for rank in range(2):
        assert torch.equal(torch.load(f"{out_file}.{rank}", weights_only=True), whole.matrix)
