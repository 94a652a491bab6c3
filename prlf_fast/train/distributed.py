"""Multi-process training under ``torchrun``: DistributedDataParallel with NCCL on CUDA and gloo
on CPU. Every rank draws the same global batch (same shuffle, same masks) and keeps its shard;
rank 0 alone writes files."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch's indices (sizes differ by ≤ 1)."""
        return idx.tensor_split(self.world_size)[self.rank] if self.distributed else idx

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """Average of ``t`` over ranks (``t`` itself on one rank)."""
        if not self.distributed:
            return t
        t = t.clone()
        dist.all_reduce(t)
        return t / self.world_size

    def any(self, flag: bool, device) -> bool:
        """True on every rank when ``flag`` is True on some rank."""
        if not self.distributed:
            return flag
        t = torch.tensor([int(flag)], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())


def setup(device: torch.device) -> Context:
    """Join the process group that ``torchrun`` describes in the environment (no-op without it)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Context()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(rank, world_size, local_rank)


def device_for(requested: str) -> torch.device:
    """``auto`` picks CUDA when available; under torchrun each rank takes its LOCAL_RANK's GPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {requested}: CUDA is not available in this torch build/machine")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def wrap(model, ctx: Context, device: torch.device):
    """DDP-wrap ``model`` when running on several ranks; return it unchanged otherwise."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def teardown(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
