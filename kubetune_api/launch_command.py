"""The container command of a distributed FineTuneJob run (the operator builds it, the
trainer's launcher runs it).

A FineTuneJob with `resources.gpus` > 1 or `nodes` > 1 runs its trainer under
torchrun's elastic agent, wrapped by `python -m kubetune_trainer.launch` (one launcher
per pod). Rendezvous (multi-node): c10d, at pod index 0 through the headless Service's
DNS name, port `RDZV_PORT`. Why c10d and not the static `--node-rank=$JOB_COMPLETION_INDEX`
form: the pod template of an Indexed Job is the same for every index, so a static node
rank needs shell expansion in the command; c10d needs no per-pod argument, waits for
late pods (image pulls on other nodes) up to `RDZV_JOIN_TIMEOUT_S`, and lets the agents
restart their workers together when a replaced pod rejoins.
"""

from __future__ import annotations

RDZV_PORT = 29400  # torch's default c10d rendezvous port; the headless Service exposes it
# Pods of one job can start minutes apart (multi-GB image pulls on fresh nodes); torch's
# default join timeout is 600 s.
RDZV_JOIN_TIMEOUT_S = 1800
PYTHON = "python"  # the trainer image's interpreter (its ENTRYPOINT is `python -m kubetune_trainer`)


def rendezvous_endpoint(host: str, port: int = RDZV_PORT) -> str:
    """HOST:PORT for `--rdzv-endpoint`, e.g. from the index-0 pod's DNS name."""
    return f"{host}:{port}"


def training_processes(gpus_per_node: int, nodes: int) -> int:
    """How many training processes a run has in all: one per GPU (one on a CPU-only pod) per node."""
    return max(gpus_per_node, 1) * nodes


def torchrun_command(gpus_per_node: int, nodes: int, rendezvous_endpoint: str | None, job_id: str) -> list[str]:
    """The trainer container's command for `gpus_per_node` processes on each of `nodes` pods.

    * one process (gpus <= 1, one node): `python -m kubetune_trainer`;
    * one node, several GPUs: the launcher in torchrun's --standalone mode (a c10d store
      on localhost with a free port; nothing to expose);
    * several nodes: the launcher with c10d rendezvous at `rendezvous_endpoint`
      (HOST or HOST:PORT, default port RDZV_PORT; HOST is the index-0 pod's name through
      the headless Service, `<job>-0.<service>`), run id `job_id` (unique per
      FineTuneJob, e.g. its uid; [A-Za-z0-9_.-] only). Every pod needs
      JOB_COMPLETION_INDEX (an Indexed Job sets it).

    The trainer's input (KUBETUNE_JOB etc.) stays in the environment, as for one process.
    """
    if gpus_per_node < 0 or nodes < 1:
        raise ValueError(f"gpus_per_node must be >= 0 and nodes >= 1 (got {gpus_per_node}, {nodes})")
    procs = training_processes(gpus_per_node, 1)
    if nodes == 1 and procs == 1:
        return [PYTHON, "-m", "kubetune_trainer"]
    launcher = [PYTHON, "-m", "kubetune_trainer.launch"]
    if nodes == 1:
        return [*launcher, "--standalone", "--nnodes=1", f"--nproc-per-node={procs}"]
    if not rendezvous_endpoint:
        raise ValueError("nodes > 1 needs a rendezvous endpoint (the index-0 pod's DNS name)")
    if not job_id or any(not (c.isalnum() or c in "_.-") for c in job_id):
        raise ValueError(f"job_id {job_id!r}: use letters, digits, '_', '.', '-' only")
    endpoint = rendezvous_endpoint if ":" in rendezvous_endpoint else f"{rendezvous_endpoint}:{RDZV_PORT}"
    return [
        *launcher,
        f"--nnodes={nodes}",
        f"--nproc-per-node={procs}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={endpoint}",
        f"--rdzv-id={job_id}",
        f"--rdzv-conf=join_timeout={RDZV_JOIN_TIMEOUT_S}",
        "--max-restarts=0",  # the Job controller retries pods; an in-pod restart would hide failures
    ]
