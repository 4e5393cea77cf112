"""Backbone benchmarks: FlatFormer against the SST-style window transformer and CenterPoint's
spconv sparse ResNet on the same clouds, with FlatFormer's and SST's time split into its parts.

Each cloud (``common.inputs()``: a simulated Waymo-like frame and the real KITTI / nuScenes scans,
plus random points with a Waymo frame's occupancy) is encoded once: 0.32 m pillars on FlatFormer's 468 x 468 Waymo grid through the published
DynamicVFE [64, 128] for the two transformers (published width 128, 8 heads, 8 layers, 13 x 13
windows, FlatFormer groups of 144, SST buckets 30/60/100/169), and 0.1 x 0.1 x 0.15 m voxels over
(-75.2, -75.2, -2, 75.2, 75.2, 4) with mean features (CenterPoint's Waymo VoxelNet input) for the
sparse ResNet. Only the backbone forward is timed (eval, no grad, planning included), medians.

Peak memory is measured in a fresh process per (model, cloud) that loads only the model and its
input voxels: the peak resident set over one forward above the resident set before it (CPU), or ``torch.cuda.max_memory_allocated`` (GPU).

The split of FlatFormer / SST time replays one forward's work piece by piece on the same shapes:
planning (all window orders), attention (``scaled_dot_product_attention`` on the grouped layout),
gather/scatter (grouping q/k/v and scattering outputs back), and the token-wise rest (q/k/v and
output projections, FFN, norms).
"""

from __future__ import annotations

import multiprocessing
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pointformer.models.backbones.flatformer import FlatFormer
from pointformer.models.backbones.sparse_resnet import SparseResNet8x
from pointformer.models.backbones.sst import SSTBackbone
from pointformer.models.encoders import DynamicVFE, MeanVFE
from pointformer.structures import PointBatch, SparseVoxels

from .common import Row, inputs, median_seconds

PILLAR_SIZE, PILLAR_RANGE = (0.32, 0.32, 6.0), (-74.88, -74.88, -2.0, 74.88, 74.88, 4.0)
VOXEL_SIZE, VOXEL_RANGE = (0.1, 0.1, 0.15), (-75.2, -75.2, -2.0, 75.2, 75.2, 4.0)
MODELS = ("FlatFormer", "SST", "SparseResNet8x")


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def encoded_inputs(points: np.ndarray) -> dict[str, SparseVoxels]:
    """The backbone input of each model for one cloud (x, y, z, intensity)."""
    torch.manual_seed(0)
    batch = PointBatch(torch.from_numpy(points[:, :4]).float(), torch.tensor([0, len(points)]))
    with torch.no_grad():
        pillars = DynamicVFE(4, PILLAR_SIZE, PILLAR_RANGE).eval()(batch).voxels
        voxels = MeanVFE(4, VOXEL_SIZE, VOXEL_RANGE)(batch).voxels
    return {"FlatFormer": pillars, "SST": pillars, "SparseResNet8x": voxels}


def build(name: str, voxels: SparseVoxels) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "FlatFormer":
        model = FlatFormer()
    elif name == "SST":
        model = SSTBackbone()
    else:
        model = SparseResNet8x(voxels.feats.shape[1], voxels.spatial_shape)
    return model.eval().to(device())


def forward_seconds(name: str, voxels: SparseVoxels, repeats: int) -> float:
    model, voxels = build(name, voxels), voxels.to(device())
    with torch.no_grad():
        return median_seconds(lambda: model(voxels), repeats, sync=sync)


def _peak_bytes(name: str, voxels_path: str, queue) -> None:
    saved = torch.load(voxels_path, weights_only=True)
    voxels = SparseVoxels(saved["coords"], saved["feats"], tuple(saved["shape"]), 1)
    model, voxels = build(name, voxels), voxels.to(device())
    with torch.no_grad():
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            model(voxels)
            queue.put(torch.cuda.max_memory_allocated() - before)
            return
        before = _status_kib("VmRSS")
        _reset_peak_rss()
        model(voxels)
        queue.put((_status_kib("VmHWM") - before) * 1024)


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` memory field (kB). ``VmHWM`` is this process image's own peak;
    ``getrusage``'s ``ru_maxrss`` is not (it starts at the parent's peak after fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> None:
    """Set the peak resident set to the current one (Linux ``clear_refs`` 5), where allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_mib(name: str, voxels: SparseVoxels) -> float:
    """Extra peak memory of one forward on ``voxels``, in a fresh process that loads only the
    voxels and the model (MiB)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "voxels.pt")
        torch.save({"coords": voxels.coords, "feats": voxels.feats, "shape": list(voxels.spatial_shape)}, path)
        process = context.Process(target=_peak_bytes, args=(name, path, queue))
        process.start()
        value = queue.get(timeout=900)
        process.join()
    return value / 2**20


def breakdown(model: torch.nn.Module, voxels: SparseVoxels, plan_fn, plan_names, repeats: int) -> dict[str, float]:
    """Seconds of one forward's planning, attention, gather/scatter and token-wise work."""
    voxels = voxels.to(device())
    with torch.no_grad():
        plans = plan_fn()
        layers = list(model.layers)
        x = voxels.feats
        qkv = torch.randn(x.shape[0], 3 * x.shape[1], device=x.device)
        grouped = {name: plans[name].gather_buckets(qkv) for name in set(plan_names)}
        heads = layers[0].attention.num_heads

        def attention() -> None:
            for name in plan_names:
                for tokens in grouped[name]:
                    groups, size, _ = tokens.shape
                    q, k, v = tokens.view(groups, size, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
                    mask = None
                    if isinstance(model, SSTBackbone):
                        bucket = next(b for b in plans[name].buckets if b.num_groups == groups and b.group_size == size)
                        mask = ~bucket.padding.view(groups, 1, 1, size)
                    F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

        def gather_scatter() -> None:
            for name in plan_names:
                parts = plans[name].gather_buckets(qkv)
                plans[name].scatter([p[..., : x.shape[1]] for p in parts])

        def tokenwise() -> None:
            for layer in layers:
                y = layer.attention.query_key(x)
                layer.attention.value(x)
                y = layer.norm1(x + layer.attention.out(y[:, : x.shape[1]]))
                layer.norm2(y + layer.ffn(y))

        return {"planning": median_seconds(plan_fn, repeats, sync=sync),
                "attention (SDPA)": median_seconds(attention, repeats, sync=sync),
                "gather/scatter": median_seconds(gather_scatter, repeats, sync=sync),
                "projections, FFN, norms": median_seconds(tokenwise, repeats, sync=sync)}


def transformer_breakdowns(voxels: SparseVoxels, repeats: int) -> dict[str, dict[str, float]]:
    from pointformer.ops import flat_window_plans, sst_window_plans

    flat, sst = build("FlatFormer", voxels), build("SST", voxels)
    on_device = voxels.to(device())
    flat_orders = [flat.orders[i % len(flat.orders)] for i in range(len(flat.layers))]
    sst_orders = ["shifted" if i % 2 else "regular" for i in range(len(sst.layers))]
    return {
        "FlatFormer": breakdown(flat, voxels, lambda: flat_window_plans(on_device, flat.window_shape, flat.group_size),
                                flat_orders, repeats),
        "SST": breakdown(sst, voxels, lambda: sst_window_plans(on_device, sst.window_shape, sst.bucket_caps),
                         sst_orders, repeats),
    }


def waymo_occupancy_cloud(count: int = 160_000, seed: int = 0) -> np.ndarray:
    """Random points over +-74 m, denser near the sensor (radius 2 + 72 u^1.8), z uniform in
    [-2, 4] m: ~74k occupied 0.32 m pillars and ~157k 0.1 m voxels, the occupancy of a Waymo
    frame (the simulated street canyon fills only ~4k pillars)."""
    rng = np.random.default_rng(seed)
    radius, angle = 2 + 72 * rng.uniform(0, 1, count) ** 1.8, rng.uniform(-np.pi, np.pi, count)
    columns = [radius * np.cos(angle), radius * np.sin(angle), rng.uniform(-2, 4, count), rng.uniform(0, 1, count)]
    return np.stack(columns, 1).astype(np.float32)


def rows(repeats: int = 5, memory: bool = True) -> list[Row]:
    results = []
    clouds = {**inputs(), "random Waymo-size occupancy": waymo_occupancy_cloud()}
    for cloud_name, points in clouds.items():
        encoded = encoded_inputs(points)
        pillars, voxels = encoded["FlatFormer"].num_voxels, encoded["SparseResNet8x"].num_voxels
        name = f"{cloud_name}: {pillars} pillars / {voxels} voxels"
        seconds = {model: forward_seconds(model, encoded[model], repeats) for model in MODELS}
        peaks = {model: peak_mib(model, encoded[model]) for model in MODELS} if memory else {}
        for baseline in ("SST", "SparseResNet8x"):
            label = {"SST": "SST-style windows + padding (same width/depth)",
                     "SparseResNet8x": "spconv SparseResNet8x (CenterPoint VoxelNet, 0.1 m)"}[baseline]
            results.append(Row("FlatFormer backbone", name, seconds["FlatFormer"], label, seconds[baseline],
                               peak_mib=peaks.get("FlatFormer"), baseline_peak_mib=peaks.get(baseline)))
        for model, parts in transformer_breakdowns(encoded["FlatFormer"], repeats).items():
            for part, part_seconds in parts.items():
                results.append(Row(f"{model} part: {part}", name, part_seconds))
    return results
