"""The one validation path: `kubetune validate`, `kubetune run` and the operator all call it.

The pydantic model (and the CRD generated from it) already rejects most mistakes at
`kubectl apply`. What is left depends on where the job runs (`ClusterPolicy`: the
operator's settings, or a local run's) or guards against objects created before the CRD
had a rule. Every message names the field the way the user writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from kubetune_api.finetunejob import FineTuneJobSpec
from kubetune_api.launch_command import training_processes
from kubetune_api.sharding import sharded_checkpoint_problem
from kubetune_api.spec_base import describe_validation_error
from kubetune_api.training import OutputSpec
from kubetune_api.uris import (
    OCI_SCHEME,
    PERSISTENT_OUTPUT_SCHEMES,
    PERSISTENT_WORK_SCHEMES,
    PVC_SCHEME,
    check_pvc_uri,
    uri_scheme,
)

NO_OUTPUT_MESSAGE = (
    "spec.output: no output location: set spec.output.uri or the operator's default output "
    "(Helm value defaultOutput, variable KUBETUNE_DEFAULT_OUTPUT)"
)


class InvalidSpecError(ValueError):
    """The FineTuneJob cannot run as written; the message names the field."""


@dataclass(frozen=True)
class ClusterPolicy:
    """What the place a job runs in allows beyond the spec model.

    The operator's settings give one (`OperatorSettings.policy`); `kubetune validate`
    takes the same values as flags; a local `kubetune run` has no GPU limit and accepts
    a local output folder.
    """

    max_gpus_per_node: int | None = 8  # None: no limit
    default_output: str | None = None  # PREFIX: a spec without output writes to PREFIX/NAMESPACE/NAME
    persistent_output: bool = True  # the model must outlive the pod (a cluster run)


LOCAL_POLICY = ClusterPolicy(max_gpus_per_node=None, persistent_output=False)


def validate_spec(
    raw_spec: dict[str, Any] | None, *, namespace: str, name: str, policy: ClusterPolicy
) -> FineTuneJobSpec:
    """The spec ready to run, with the default output filled in; InvalidSpecError if it cannot."""
    try:
        spec = FineTuneJobSpec.model_validate(raw_spec or {})
    except ValidationError as error:
        raise InvalidSpecError(describe_validation_error(error)) from None

    limit = policy.max_gpus_per_node
    if limit is not None and spec.resources.gpus > limit:
        # gpus is per pod, and a pod runs on one node: more GPUs than a node has would stay
        # Pending forever. Spreading them out is what spec.nodes is for.
        raise InvalidSpecError(
            f"spec.resources.gpus: {spec.resources.gpus} GPUs per node do not fit on one node "
            f"(this cluster allows at most {limit} per node); "
            f"use spec.nodes to spread training over several nodes"
        )

    if spec.output is None and policy.default_output is not None:
        spec = spec.model_copy(update={"output": OutputSpec(uri=f"{policy.default_output}/{namespace}/{name}")})
    if policy.persistent_output:
        if spec.output is None:
            raise InvalidSpecError(NO_OUTPUT_MESSAGE)
        check_persistent_output(spec.output.uri, "spec.output.uri", error=InvalidSpecError)
        if uri_scheme(spec.output.uri) == OCI_SCHEME:
            check_checkpoint_location(spec.output.checkpoint_uri)
    if spec.output is not None:
        # Only now is the output known (the default one too): some sharding cannot use it.
        processes = training_processes(spec.resources.gpus, spec.nodes)
        problem = sharded_checkpoint_problem(spec.all_training_args(), spec.output.work_uri, processes)
        if problem is not None:
            raise InvalidSpecError(problem)
    return spec


def check_checkpoint_location(uri: str | None) -> None:
    """A registry output keeps its checkpoints elsewhere, somewhere that outlives the pod."""
    if uri is None:
        raise InvalidSpecError(
            "spec.output.checkpointUri: an oci:// output needs a place for the checkpoints and the run "
            "marker (a registry holds finished artifacts only), so that a preempted or retried pod resumes: "
            "set it to pvc://CLAIM/PATH or an object store (s3://, gs://, az://)"
        )
    check_persistent_output(uri, "spec.output.checkpointUri", error=InvalidSpecError, allowed=PERSISTENT_WORK_SCHEMES)


def check_persistent_output(
    uri: str,
    where: str,
    error: type[ValueError] = ValueError,
    allowed: frozenset[str] = PERSISTENT_OUTPUT_SCHEMES,
) -> None:
    """Reject an output location that would not survive the pod (where: the field or variable)."""
    scheme = uri_scheme(uri)
    if scheme == PVC_SCHEME:
        try:
            check_pvc_uri(uri)
        except ValueError as problem:
            raise error(f"{where}={uri!r}: {problem}") from None
        return
    if scheme not in allowed:
        shown = ", ".join(sorted(f"{s}://" for s in allowed))
        raise error(f"{where}={uri!r}: the model must outlive the pod; use pvc://CLAIM/PATH or one of {shown}")
