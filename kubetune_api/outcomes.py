"""How a run can end up: the status phases, the reasons the status and Events give, and the
trainer's exit codes. One vocabulary, read by the operator (status, Events, metrics), the
trainer (Result reasons, exit codes), the CRD schema and the docs' troubleshooting table.
"""

from __future__ import annotations

from typing import Literal, get_args

# -- phases (status.phase, derived from the conditions) ------------------------------------------
Phase = Literal["Pending", "Running", "Succeeded", "Failed", "Suspended"]
PHASES: tuple[Phase, ...] = ("Pending", "Running", "Succeeded", "Failed", "Suspended")
# Final for a FineTuneJob: no Job is created for it again, and its status no longer changes.
TERMINAL_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed"})

# -- the trainer's exit codes (the Job's podFailurePolicy keys on them) --------------------------
EXIT_SUCCEEDED = 0
EXIT_FAILED = 1  # anything that may succeed on a retry (I/O, hub outage, node trouble)
EXIT_INVALID_CONFIG = 78  # sysexits EX_CONFIG: the spec or the data is wrong; do not retry

# -- reasons the trainer gives in its Result ------------------------------------------------------
# OutputInUse: spec.output holds another run's files (kubetune never trains on top of them).
# Interrupted: the pod was told to stop (SIGTERM); the trainer saved a checkpoint first. A
# retryable failure (exit EXIT_FAILED), never a success: the model is not finished.
FailureReason = Literal["InvalidConfig", "InvalidData", "OutputInUse", "OutOfMemory", "TrainingError", "Interrupted"]
# Reasons that mean the job itself is wrong: exit EXIT_INVALID_CONFIG, never retried.
CONFIG_FAILURES: frozenset[str] = frozenset({"InvalidConfig", "InvalidData", "OutputInUse"})
TRAINING_ERROR = "TrainingError"
INTERRUPTED = "Interrupted"


class Reason:
    """CamelCase reasons of status conditions, status.reason and the Events the operator posts."""

    # progress
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    SUSPENDED = "Suspended"
    RESUMING = "Resuming"
    WAITING_FOR_ADMISSION = "WaitingForAdmission"
    RETRYING = "Retrying"
    JOB_CREATED = "JobCreated"
    # a pod that cannot start
    UNSCHEDULABLE = "Unschedulable"
    IMAGE_PULL_ERROR = "ImagePullError"
    CONTAINER_CONFIG_ERRORS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
    # the spec or the cluster refuses the run
    INVALID_SPEC = "InvalidSpec"
    JOB_CREATE_FAILED = "JobCreateFailed"
    NAME_CONFLICT = "NameConflict"
    SPEC_CHANGE_IGNORED = "SpecChangeIgnored"
    SHARED_OUTPUT_REQUIRED = "SharedOutputRequired"
    GPU_MEMORY_TOO_SMALL = "GPUMemoryTooSmall"  # a warning: the Job is still created
    # how an attempt or the run failed
    OOM_KILLED = "OOMKilled"
    DISRUPTED = "Disrupted"
    TOO_MANY_DISRUPTIONS = "TooManyDisruptions"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    INVALID_CONFIG = "InvalidConfig"
    TRAINING_ERROR = TRAINING_ERROR
    INTERRUPTED = INTERRUPTED


# Reasons that mean something is wrong (each has a row in docs/troubleshooting.md).
PROBLEM_REASONS: frozenset[str] = frozenset(
    {
        Reason.UNSCHEDULABLE,
        Reason.IMAGE_PULL_ERROR,
        *Reason.CONTAINER_CONFIG_ERRORS,
        Reason.INVALID_SPEC,
        Reason.JOB_CREATE_FAILED,
        Reason.NAME_CONFLICT,
        Reason.SPEC_CHANGE_IGNORED,
        Reason.SHARED_OUTPUT_REQUIRED,
        Reason.GPU_MEMORY_TOO_SMALL,
        Reason.OOM_KILLED,
        Reason.DISRUPTED,
        Reason.TOO_MANY_DISRUPTIONS,
        Reason.DEADLINE_EXCEEDED,
        Reason.BACKOFF_LIMIT_EXCEEDED,
        Reason.RETRYING,
        Reason.WAITING_FOR_ADMISSION,
        *get_args(FailureReason),
    }
)

# Outcomes that say the FineTuneJob itself is wrong (its spec, its data, or a Job the API
# server refuses): rerunning it as written cannot help, so `kubetune wait` exits
# EXIT_INVALID_CONFIG for them, as the trainer does for a bad config.
INVALID_RUN_REASONS: frozenset[str] = frozenset({Reason.INVALID_SPEC, Reason.JOB_CREATE_FAILED, *CONFIG_FAILURES})


def outcome_exit_code(phase: str | None, reason: str | None) -> int | None:
    """The exit code of a finished run's outcome; None while the run is not finished."""
    if phase not in TERMINAL_PHASES:
        return None
    if phase == "Succeeded":
        return EXIT_SUCCEEDED
    return EXIT_INVALID_CONFIG if reason in INVALID_RUN_REASONS else EXIT_FAILED
