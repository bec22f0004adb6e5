"""PyTorch distributed runs of the trainer: who is who, and the one collective it needs.

The container command of a distributed run is built by `kubetune_api.launch_command`
(the operator calls it). What the completion index still decides (in the launcher): the
pod with index 0 hosts the rendezvous store (`is_host`), instead of torch guessing from
hostnames. Node ranks in a c10d round are assigned by sorting the nodes' FQDNs; Indexed
Job pods are `<job>-<index>`, so index 0 sorts first and holds global rank 0, but nothing
depends on that: whichever pod holds global rank 0 writes the artifact and the full Result.

Who writes what (see kubetune_trainer.__main__ and .launch):
* global rank 0 only: progress lines, checkpoints and the final model, merged/,
  kubetune.json, the upload, the success Result;
* under the launcher, every rank leaves its Result in `$KUBETUNE_RANK_RESULTS/rank-N.json`
  and the launcher writes the pod's termination message: rank 0's Result on success (no
  message on other pods), the earliest failed rank's Result on failure, with the exit
  code the worker chose (78 for a bad config or data), because torchrun itself exits 1
  for any worker failure and the Job's podFailurePolicy keys on 78;
* under a plain `torchrun` (no launcher), global rank 0 writes its Result and every
  other node's local rank 0 writes one only when it failed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

# torchrun's environment for each worker (torch.distributed.elastic.agent.server.api).
ENV_RANK = "RANK"
ENV_LOCAL_RANK = "LOCAL_RANK"
ENV_WORLD_SIZE = "WORLD_SIZE"
ENV_LOCAL_WORLD_SIZE = "LOCAL_WORLD_SIZE"
ENV_GROUP_RANK = "GROUP_RANK"  # the node's rank in the rendezvous round
# Set by Kubernetes on every pod of an Indexed Job.
ENV_COMPLETION_INDEX = "JOB_COMPLETION_INDEX"
# Set by the launcher for its workers: a folder for one Result file per global rank.
ENV_RANK_RESULTS = "KUBETUNE_RANK_RESULTS"

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedEnv:
    """This process's place in a torchrun world (a single process: rank 0 of 1)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    node_rank: int = 0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> DistributedEnv:
        """Read torchrun's variables; missing ones mean a single process.

        Raises ValueError for values torchrun never sets (not integers, rank out of range).
        """
        env = os.environ if environ is None else environ

        def number(name: str, default: int) -> int:
            text = env.get(name, "").strip()
            if not text:
                return default
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"{name}={text!r}: not an integer") from None

        world_size = number(ENV_WORLD_SIZE, 1)
        local_world_size = number(ENV_LOCAL_WORLD_SIZE, 1 if world_size == 1 else world_size)
        found = cls(
            rank=number(ENV_RANK, 0),
            local_rank=number(ENV_LOCAL_RANK, 0),
            world_size=world_size,
            local_world_size=local_world_size,
            node_rank=number(ENV_GROUP_RANK, 0),
        )
        if world_size < 1 or not 0 <= found.rank < world_size:
            raise ValueError(f"{ENV_RANK}={found.rank} is not within {ENV_WORLD_SIZE}={world_size}")
        if not 0 <= found.local_rank < max(local_world_size, 1):
            raise ValueError(f"{ENV_LOCAL_RANK}={found.local_rank} is not within {ENV_LOCAL_WORLD_SIZE}")
        return found

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main_process(self) -> bool:
        """Global rank 0: the one process that reports and saves."""
        return self.rank == 0

    @property
    def is_local_main_process(self) -> bool:
        """Local rank 0: one process per node (pod)."""
        return self.local_rank == 0

    def describe(self) -> str:
        """Like 'rank 3 of 4 (node 1, local rank 1)': for messages a user reads in the status."""
        return f"rank {self.rank} of {self.world_size} (node {self.node_rank}, local rank {self.local_rank})"


def is_main_process(environ: Mapping[str, str] | None = None) -> bool:
    """True in a single process and in global rank 0 of a torchrun world."""
    return DistributedEnv.from_environ(environ).is_main_process


def all_gather(value: T) -> list[T]:
    """`value` from every rank, in rank order ([value] outside a distributed run).

    Needs the process group TrainingArguments sets up (the runner builds one before its
    preflight checks); a picklable value; every rank must call it.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def leave_process_group() -> None:
    """Tear the process group down before the interpreter exits.

    Left to interpreter shutdown, gloo's threads can be destroyed while running ("terminate
    called without an active exception"): the rank aborts after reporting success, and the
    launcher counts it as failed.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        # A peer already gone: nothing left to tear down cleanly.
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
