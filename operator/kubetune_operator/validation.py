"""Checks the operator makes beyond the spec model: its settings and the cluster's rules.

The pydantic model (and the CRD generated from it) already rejects most mistakes at
`kubectl apply`. What is left needs the operator's settings (default output, GPUs per
node) or guards against objects created before the CRD had a rule. Every message
names the field the way the user writes it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from kubetune_operator.settings import ENV_DEFAULT_OUTPUT, OperatorSettings, check_persistent_output
from kubetune_operator.spec import FineTuneJobSpec
from kubetune_trainer.spec import OutputSpec, describe_validation_error

NO_OUTPUT_MESSAGE = (
    "spec.output: no output location: set spec.output.uri or the operator's "
    f"{ENV_DEFAULT_OUTPUT} (Helm value defaultOutput)"
)


class InvalidSpecError(ValueError):
    """The FineTuneJob cannot run as written; the message names the field."""


def validate_spec(
    raw_spec: dict[str, Any] | None, *, namespace: str, name: str, settings: OperatorSettings
) -> FineTuneJobSpec:
    """The spec ready to build a Job from, with the default output filled in."""
    try:
        spec = FineTuneJobSpec.model_validate(raw_spec or {})
    except ValidationError as error:
        raise InvalidSpecError(describe_validation_error(error)) from None

    if spec.resources.gpus > settings.max_gpus_per_node:
        # gpus is per pod, and a pod runs on one node: more GPUs than a node has would stay
        # Pending forever. Spreading them out is what spec.nodes is for.
        raise InvalidSpecError(
            f"spec.resources.gpus: {spec.resources.gpus} GPUs per node do not fit on one node "
            f"(this cluster allows at most {settings.max_gpus_per_node} per node); "
            f"use spec.nodes to spread training over several nodes"
        )

    if spec.output is None:
        if settings.default_output is None:
            raise InvalidSpecError(NO_OUTPUT_MESSAGE)
        spec = spec.model_copy(update={"output": OutputSpec(uri=f"{settings.default_output}/{namespace}/{name}")})
    assert spec.output is not None  # for type checkers: set just above
    check_persistent_output(spec.output.uri, "spec.output.uri", error=InvalidSpecError)
    return spec
