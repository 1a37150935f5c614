"""Data-parallel training through ``torchrun``: process group, batch sharding, metric reduction.

``torchrun --nproc_per_node N -m katbench.run ...`` starts N copies of the runner with
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set; :func:`init` joins them into one process group
(NCCL on CUDA, gloo on CPU) and pins each rank to its GPU. Every rank builds the same model from
the same seed and DDP averages gradients. Two kinds of loaders are handled:

* loaders already split per rank (a ``DistributedSampler`` inside, as ``katbench.data.vision``
  uses once a process group exists): each rank trains on its own batches; the global batch is
  ``world_size x batch_size`` (the timm convention);
* any other loader (tabular ``TensorBatches``, full-batch fitting, PyG loaders): every rank
  iterates the same batches and keeps its contiguous slice (:func:`shard_batch`), so the global
  batch is the configured one and N processes compute the same update as one.

Evaluation metrics and the training loss are averaged over ranks (:func:`mean_over_ranks`); only
rank 0 writes files and talks to MLflow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Rank:
    """This process's place in the job: ``rank`` of ``world`` (``world == 1`` without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run folder, checkpoints and the MLflow run."""
        return self.rank == 0


def init(device: torch.device) -> tuple[Rank, torch.device]:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1``; return the rank and device.

    On CUDA each rank uses ``cuda:<LOCAL_RANK>``; on CPU the gloo backend is used. Without
    ``torchrun`` (or with one process) nothing is initialised and the device is unchanged.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Rank(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Rank(rank, world, local), device


def shutdown() -> None:
    """Leave the process group (a no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_sharded(loader: Any) -> bool:
    """True when the loader already splits its data per rank (a ``DistributedSampler``, or a
    loader whose ``shard(rank, world)`` was called, such as the graph loader)."""
    from torch.utils.data.distributed import DistributedSampler

    inner = getattr(loader, "loader", loader)
    return bool(getattr(inner, "sharded", False)) or isinstance(getattr(inner, "sampler", None),
                                                                 DistributedSampler)


def shard_batch(batch: Any, rank: Rank) -> Any:
    """This rank's contiguous slice of a batch: tensors (and tuples/lists/dicts of them) are
    cut along dim 0, a PyG ``Batch`` by graphs. Equal slices (the batch size divisible by the
    world size) make the DDP-averaged gradient equal to the one-process gradient of the whole
    batch for a mean-reduced loss."""
    if rank.world == 1:
        return batch
    if hasattr(batch, "to_data_list"):
        graphs = batch.to_data_list()
        return type(batch).from_data_list(_slice_list(graphs, rank))
    if isinstance(batch, torch.Tensor):
        if batch.dim() == 0:
            return batch
        return torch.tensor_split(batch, rank.world)[rank.rank]
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard_batch(b, rank) for b in batch)
    if isinstance(batch, dict):
        return {k: shard_batch(v, rank) for k, v in batch.items()}
    return batch


def _slice_list(items: list[Any], rank: Rank) -> list[Any]:
    per = -(-len(items) // rank.world)
    return items[rank.rank * per:(rank.rank + 1) * per]


def mean_over_ranks(values: dict[str, float], rank: Rank) -> dict[str, float]:
    """Average each value over ranks (all-reduce); unchanged in a one-process run."""
    if rank.world == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return {k: float(v) / rank.world for k, v in zip(keys, t.tolist(), strict=True)}


def any_rank(flags: list[bool], rank: Rank) -> list[bool]:
    """Each flag made true on every rank when it is true on any (one all-reduce for all of
    them): a stop request or a non-finite loss on one rank must stop every rank together."""
    if rank.world == 1:
        return list(flags)
    t = torch.tensor([1.0 if f else 0.0 for f in flags])
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return [bool(v > 0) for v in t.tolist()]
