"""Checkpoint on SIGTERM: a stopped pod (preemption, eviction, node drain, suspend, delete) saves
at the next step boundary and exits before its grace period (spec.terminationGracePeriodSeconds) ends.

Why not transformers' own `enable_jit_checkpoint` (5.x): it saves through
`Trainer._save_checkpoint` without the `on_save` callbacks, so kubetune's CheckpointUploader
never uploads that checkpoint to an object store; each rank decides on its own when to
save, so ranks of a DDP run can stop at different steps and hang in the next collective;
and `train()` then returns as if training had finished, so the half-trained model would be
published as a success. kubetune owns that argument (trainingArgs refuses it) and does this:

* `SignalWatch` (one per run, `with SignalWatch():`) catches SIGTERM. Before training
  starts it raises `StopRequested` at once: there is no step to finish and nothing worth
  saving. While training runs it only notes the request (the step boundary acts on it).
  After training it only notes it too: what is left (evaluation, the final save, the
  upload or push) is the run's end, worth finishing within the grace period; a SIGKILL
  there costs no more than the resume from the last checkpoint. (The trainer is often
  PID 1 of its container, where a signal without a handler is ignored: without this the
  pod would sit out its grace period and be killed.)
* `StopAtStepBoundary` (a TrainerCallback) looks at every optimizer step's end. Under
  torchrun every rank asks the others (a MAX all-reduce of one integer over a gloo group,
  so no GPU sync); the launcher forwards SIGTERM to every worker of its pod, but one
  preempted pod of a multi-node run must stop them all, and all at the same step. Then it
  asks the Trainer for a save and a stop: the checkpoint is written collectively, as any
  periodic one (DeepSpeed/FSDP shards included), CheckpointUploader uploads it and marks it
  complete, and only then does `on_save` raise `StopRequested`, which the runner reports
  as a failed Result with reason Interrupted (exit 1: the Job retries, and the next pod
  resumes from that step).
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Any, Literal

from transformers import TrainerCallback, TrainerControl, TrainerState
from transformers import TrainingArguments as Args

STOP_SIGNAL = signal.SIGTERM
# Where a run is: before the first step, training, or after the last (see SignalWatch).
Stage = Literal["preparing", "training", "finishing"]


class StopRequested(BaseException):
    """The process was told to stop; `step` is the checkpoint saved first (None: stopped before training).

    A BaseException, like KeyboardInterrupt: no library's `except Exception` swallows it on its way out.
    """

    def __init__(self, step: int | None = None) -> None:
        super().__init__(f"stopped by {STOP_SIGNAL.name}" + (f" after saving checkpoint-{step}" if step else ""))
        self.step = step

    def describe(self, where: str) -> str:
        """The Interrupted Result's message: the step saved, and where (`where`) the next attempt finds it."""
        if self.step is None:
            return f"stopped by {STOP_SIGNAL.name} before training began; nothing to save, the next attempt starts over"
        return (
            f"stopped by {STOP_SIGNAL.name} at step {self.step}: checkpoint-{self.step} saved to {where}; "
            "the next attempt resumes from it"
        )


class SignalWatch:
    """SIGTERM's handler for one run: raise outside training, note the request during it."""

    def __init__(self) -> None:
        self.requested_at: float | None = None
        self.stage: Stage = "preparing"
        self._previous: Any = None
        self._installed = False

    @property
    def requested(self) -> bool:
        return self.requested_at is not None

    def __enter__(self) -> SignalWatch:
        # signal.signal only works in the main thread (a notebook's HFTrainer in a worker
        # thread, some tests): there the run simply keeps the process's own handling.
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(STOP_SIGNAL, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(STOP_SIGNAL, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested_at is None:
            self.requested_at = time.monotonic()
        if self.stage == "preparing":
            raise StopRequested()


class StopAtStepBoundary(TrainerCallback):
    """Save and stop at the first optimizer step's end after a stop was requested (see the module docstring)."""

    def __init__(self, watch: SignalWatch) -> None:
        self.watch = watch
        self.stopping_at: int | None = None
        self._group: Any = None
        self._distributed = False

    def on_train_begin(self, args: Args, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        import torch.distributed as dist

        self._distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if self._distributed and "gloo" not in str(dist.get_backend()):
            # A CPU group beside NCCL; every rank creates it here, together (new_group is a collective).
            self._group = dist.new_group(backend="gloo")
        self.watch.stage = "training"

    def on_step_end(self, args: Args, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self._agreed():
            self.stopping_at = state.global_step
            control.should_save = True
            control.should_training_stop = True

    def on_save(self, args: Args, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        # Runs after CheckpointUploader (it comes first in the callback list): the checkpoint
        # is complete, and uploaded for an object-store output.
        if self.stopping_at is not None and state.global_step == self.stopping_at:
            raise StopRequested(self.stopping_at)

    def on_train_end(self, args: Args, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.watch.stage = "finishing"

    def _agreed(self) -> bool:
        """Whether any rank was asked to stop (every rank calls this at the same step)."""
        if not self._distributed:
            return self.watch.requested
        import torch
        import torch.distributed as dist

        flag = torch.tensor([1 if self.watch.requested else 0], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        return bool(flag.item())
