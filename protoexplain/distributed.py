"""Running a command on several processes with torch.distributed (started by ``torchrun``).

``torchrun --nproc_per_node N -m protoexplain train|benchmark|report ...`` starts N processes
per node and gives each ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``. :func:`join` makes such a process join the process group, with the backend
the device calls for (nccl on CUDA, gloo on the CPU) and, on CUDA, the GPU ``LOCAL_RANK``.
Without those variables every helper here acts as the only process of a group of one, so
the same code runs unchanged on one process.

How work is shared (docs/distributed.md):

- Batched work whose result must equal one process's (push, localization, the benchmark)
  is shared as whole batches of the single-process order: process ``r`` of ``W`` takes the
  batches ``r, r + W, r + 2W, ...`` (:func:`my_batches`, :class:`BatchShard`), so every batch
  is computed exactly as one process computes it, and :func:`map_batches` gathers the
  results back into batch order on every process.
- Training uses :func:`training_sampler` (a ``DistributedSampler``) with a per-process
  batch of ``data.batch_size / W`` (:func:`per_process_batch`).
- Only the main process (rank 0) writes files, logs and progress bars; the others compute.

This is torch.distributed's own transport (``all_gather``, ``all_reduce``,
``all_gather_object``, ``broadcast_object_list``); nothing here sends data itself.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler
from tqdm.auto import tqdm

from protoexplain.config_schema import ConfigError

T = TypeVar("T")

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""The environment variables torchrun sets in every process it starts."""

TIMEOUT = timedelta(hours=1)
"""How long a process waits for the others in one collective before it fails. Longer than
torch's defaults (10 minutes with nccl) because rank 0 alone evaluates the test set and draws
the prototype pictures while the others wait; a process that dies is noticed at once anyway,
as torchrun then stops the others."""


class DistributedError(RuntimeError):
    """The processes cannot run together (a bad environment, too few GPUs); the message is
    one line saying what to change."""


def launched_by_torchrun() -> bool:
    """Whether this process was started by torchrun (``RANK`` and ``WORLD_SIZE`` are set)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def launch_rank() -> int:
    """This process's rank as torchrun gave it (``RANK``; 0 when not under torchrun), known
    before the process joins the group."""
    return _environment_int("RANK") if launched_by_torchrun() else 0


def launch_world_size() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``; 1 when not under
    torchrun)."""
    return _environment_int("WORLD_SIZE") if launched_by_torchrun() else 1


def _environment_int(name: str) -> int:
    text = os.environ.get(name, "")
    if not text.isdigit():
        raise DistributedError(f"the environment variable {name} is {text!r}, not a "
                               "non-negative integer (start the processes with torchrun)")
    return int(text)


def backend_for(device: torch.device) -> str:
    """The torch.distributed backend for ``device``: ``nccl`` on CUDA, ``gloo`` otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def join(device: torch.device) -> torch.device:
    """Join torchrun's process group (once per process) and return the device this process
    works on: ``cuda:LOCAL_RANK`` when ``device`` is CUDA, else ``device``.

    Not under torchrun, nothing happens and ``device`` is returned. Raises
    :class:`DistributedError` when the environment is inconsistent or there are fewer GPUs
    on this node than processes.
    """
    if not launched_by_torchrun():
        return device
    rank, world = _environment_int("RANK"), _environment_int("WORLD_SIZE")
    local_rank = _environment_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
    if world < 1 or rank >= world:
        raise DistributedError(f"RANK {rank} and WORLD_SIZE {world} do not fit: need "
                               "0 <= RANK < WORLD_SIZE")
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise DistributedError(f"process LOCAL_RANK {local_rank} has no GPU: this node "
                                   f"has {count}; start at most {count} processes per node "
                                   "(torchrun --nproc_per_node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend_for(device), rank=rank, world_size=world,
                                timeout=TIMEOUT,
                                device_id=device if device.type == "cuda" else None)
    elif dist.get_backend() != backend_for(device):
        raise DistributedError(f"the process group uses {dist.get_backend()}, but device "
                               f"{device} needs {backend_for(device)}")
    return device


def leave() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """Whether this process works in a group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Whether this process writes files, logs and progress bars (rank 0)."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process gets here (nothing to wait for on one process)."""
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over processes (a new tensor; ``tensor`` itself on one
    process)."""
    if not is_distributed():
        return tensor
    total = tensor.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def all_gather_objects(value: T) -> list[T]:
    """Every process's ``value`` (picklable), in rank order, on every process."""
    if not is_distributed():
        return [value]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_from_main(value: T) -> T:
    """The main process's ``value`` on every process."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(work: Callable[[], T]) -> T:
    """Run ``work`` on the main process only and give its result to every process; when it
    raises, every process raises the same exception (so none waits for a process that
    failed)."""
    result: Any = None
    error: BaseException | None = None
    if is_main_process():
        try:
            result = work()
        except Exception as caught:  # passed to every process, raised there
            error = caught if _picklable(caught) else DistributedError(
                f"{type(caught).__name__}: {caught}")
    result, error = broadcast_from_main((result, error))
    if error is not None:
        raise error
    return result


def _picklable(error: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # an exception whose arguments do not rebuild it
        return False
    return True


def per_process_batch(global_batch: int, key: str = "data.batch_size") -> int:
    """The batch of each process when ``global_batch`` is shared among the processes;
    a :class:`ConfigError` naming ``key`` when it does not divide evenly."""
    world = world_size()
    if global_batch % world:
        raise ConfigError(f"'{key}' is {global_batch}, which {world} processes cannot share "
                          f"evenly: choose a multiple of {world} (it is the global batch; "
                          f"each process takes {key} / {world})")
    return global_batch // world


class ShuffledShard(DistributedSampler):
    """A process's part of an epoch shuffled with ``seed``: a ``DistributedSampler`` whose
    permutation is ``torch.randperm(dataset_size, generator=torch.Generator().manual_seed(
    seed + epoch))``, drawn afresh at every iteration, of which process ``rank`` of
    ``num_replicas`` takes positions ``rank, rank + num_replicas, ...``. With one replica it
    is the whole permutation: one process's order. With ``W`` replicas and a per-process batch
    of ``B / W``, step ``s`` of all processes together covers exactly the positions
    ``s B ... (s + 1) B - 1``: one process's global batch. When ``W`` does not divide the
    data set, the first samples of the permutation are repeated at its end so that every
    process has as many (as ``DistributedSampler`` does; the last global batch then differs
    from one process's)."""

    def __init__(self, dataset_size: int, seed: int, *, num_replicas: int = 1,
                 rank: int = 0) -> None:
        super().__init__(range(dataset_size), num_replicas=num_replicas, rank=rank,
                         shuffle=True, seed=seed, drop_last=False)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        padded = (order * -(-self.total_size // max(len(order), 1)))[:self.total_size]
        return iter(padded[self.rank::self.num_replicas])


def training_sampler(dataset_size: int, seed: int, *, shard: bool) -> ShuffledShard:
    """The sampler of an epoch shuffled with ``seed`` (:class:`ShuffledShard`): this
    process's part with ``shard``, else the whole epoch."""
    if shard:
        return ShuffledShard(dataset_size, seed, num_replicas=world_size(), rank=rank())
    return ShuffledShard(dataset_size, seed)


def my_batches(num_batches: int) -> range:
    """The batch numbers this process works on: ``rank, rank + W, ...`` below
    ``num_batches``."""
    return range(rank(), num_batches, world_size())


class BatchShard(Sampler[list[int]]):
    """A batch sampler of this process's batches of the sequential order: the batches
    :func:`my_batches` names, each holding the same indices (``b * batch_size ...``) as
    batch ``b`` of an unshuffled loader with ``batch_size``."""

    def __init__(self, dataset_size: int, batch_size: int) -> None:
        self.dataset_size, self.batch_size = dataset_size, batch_size
        self.batches = my_batches(-(-dataset_size // batch_size))

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            start = batch * self.batch_size
            yield list(range(start, min(start + self.batch_size, self.dataset_size)))

    def __len__(self) -> int:
        return len(self.batches)


def map_batches(num_batches: int, work: Callable[[int], T], *, desc: str | None = None,
                progress: bool = False) -> list[T]:
    """``[work(b) for b in range(num_batches)]``, the batches shared among the processes
    (:func:`my_batches`) and the results gathered, in batch order, on every process. ``work``
    must not itself communicate; its results must be picklable. A tqdm bar (main process
    only) counts this process's batches."""
    mine = my_batches(num_batches)
    bar = tqdm(mine, desc=desc, disable=not progress or not is_main_process())
    done = {batch: work(batch) for batch in bar}
    if not is_distributed():
        return [done[batch] for batch in range(num_batches)]
    merged: dict[int, T] = {}
    for part in all_gather_objects(done):
        merged.update(part)
    return [merged[batch] for batch in range(num_batches)]
