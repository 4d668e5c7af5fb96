"""Training across processes with PyTorch's own DistributedDataParallel (``torchrun``).

``torchrun --nproc_per_node=N -m napari_dissipation fit ...`` starts N copies of the
command with ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in their environment.  Each copy
reads the same movies and makes the same split, normalisation and initial weights from
the same seed (DDP also copies rank 0's weights to the others when it wraps the model);
each draws its own share of every global batch from its own random stream; DDP averages
the gradients.  Rank 0 alone evaluates on the held-out data and decides when to stop, and
its decisions (and clock) are sent to the others every step, so no rank waits forever.

Without those variables (or with ``WORLD_SIZE=1``) nothing here does anything and the
single-process path runs unchanged.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import numpy as np

__all__ = ["Context", "SINGLE", "launched", "setup", "shutdown"]


def launched() -> bool:
    """True when started by ``torchrun`` (or similar) with more than one process."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


@dataclass(frozen=True)
class Context:
    """Where this process stands in a distributed run.

    Attributes
    ----------
    rank, world_size, local_rank : int
        As set by ``torchrun``; (0, 1, 0) for a single process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """True with more than one process (a process group is initialised)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, which evaluates, keeps the best weights and writes outputs."""
        return self.rank == 0

    # ------------------------------------------------------------------ batches
    def share(self, global_batch: int) -> int:
        """This rank's part of a global batch (the parts add up to ``global_batch``)."""
        base, extra = divmod(int(global_batch), self.world_size)
        return base + (1 if self.rank < extra else 0)

    def batch_rng(self, seed: int, iteration: int) -> np.random.Generator:
        """This rank's own stream of batches, started afresh at ``iteration``."""
        return np.random.default_rng(np.random.SeedSequence([int(seed), 7919, self.rank,
                                                             int(iteration)]))

    # ------------------------------------------------------------------ wrapping
    def wrap(self, model, device):
        """``model`` itself for one process; a DistributedDataParallel wrapper otherwise."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        # The buffers (principal patterns, mean frame) are fixed after initialisation and
        # copied once from rank 0 when wrapping; no need to send them every step.
        params = inspect.signature(DistributedDataParallel).parameters
        sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in params
                else {"broadcast_buffers": False})
        return DistributedDataParallel(model, device_ids=ids, **sync)

    # ------------------------------------------------------------------ messages
    def sync_step(self, elapsed: float, stop_requested: bool, device) -> tuple[float, bool]:
        """Rank 0's clock and whether any rank was asked to stop, the same on all ranks."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([elapsed if self.is_main else 0.0, 1.0 if stop_requested else 0.0],
                         dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t[0]), bool(t[1] > 0)

    def broadcast_values(self, values, device) -> list[float]:
        """Rank 0's list of floats (``nan`` for missing values), on every rank."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([np.nan if v is None else float(v) for v in values],
                         dtype=torch.float64, device=device)
        dist.broadcast(t, src=0)
        return [float(v) for v in t.cpu()]

    def broadcast_object(self, obj):
        """Rank 0's picklable ``obj`` on every rank (between processes of one job)."""
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_state(self, model) -> None:
        """Copy rank 0's weights and buffers into ``model`` on every rank, in place."""
        import torch.distributed as dist

        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)

    def sum_parts(self, part: np.ndarray, device) -> np.ndarray:
        """Element-wise sum over ranks of float64 arrays (each rank fills its own part)."""
        import torch
        import torch.distributed as dist

        t = torch.as_tensor(np.ascontiguousarray(part, dtype=np.float64)).to(device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu().numpy()

    def part(self, n: int) -> slice:
        """This rank's contiguous share of ``range(n)``."""
        edges = np.linspace(0, n, self.world_size + 1).astype(int)
        return slice(int(edges[self.rank]), int(edges[self.rank + 1]))

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()


#: The context of a single process.
SINGLE = Context()


def setup(device) -> tuple[Context, object]:
    """Join the process group when launched by ``torchrun``; return (context, device).

    Backend gloo on CPU, nccl on CUDA (then each process uses GPU ``LOCAL_RANK``).
    Idempotent: a group that is already initialised is used as it is.
    """
    if not launched():
        return SINGLE, device
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Context(rank=dist.get_rank(), world_size=dist.get_world_size(),
                   local_rank=local_rank), device


def current() -> Context:
    """The context of this process (without joining a group)."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return Context(rank=dist.get_rank(), world_size=dist.get_world_size(),
                           local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    except ImportError:
        pass
    return SINGLE


def shutdown() -> None:
    """Leave the process group, if one was joined, once every rank has come to leave it.

    A rank that tears its gloo connections down while rank 0 is still writing the run
    folder can be aborted ("terminate called without an active exception"); the barrier
    makes the ranks leave together.
    """
    try:
        import torch.distributed as dist
    except ImportError:
        return
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
