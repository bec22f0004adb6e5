"""Every mistake a user makes is refused at the earliest layer that can tell, with a message
that names the field: the API server at `kubectl apply` (strict fields, metadata, the CRD's
schema and CEL), else the one validation path (`kubetune validate` and the operator, before
any Job exists). The table is the closing note's table; a row that moves layer fails here."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from admission import admit

from kubetune_api.manifest import ManifestError, parse_manifest
from kubetune_api.validation import ClusterPolicy, InvalidSpecError, validate_spec

SPEC: dict[str, Any] = {
    "task": "text-classification",
    "base": {"model": "org/base"},
    "data": {"train": "s3://bucket/train.csv"},
    "output": {"uri": "s3://bucket/out"},
    "resources": {"gpus": 1},
}
POLICY = ClusterPolicy(max_gpus_per_node=8)  # the operator's default settings
ADMISSION, OPERATOR = "kubectl apply", "validate + operator"

# (mistake, fields merged into the spec (or metadata), layer, what the message says)
MISTAKES: list[tuple[str, dict[str, Any], str, str]] = [
    ("lora r 0", {"lora": {"r": 0}}, ADMISSION, "spec.lora.r"),
    ("lora r -4", {"lora": {"r": -4}}, ADMISSION, "spec.lora.r"),
    ("lora dropout 1.5", {"lora": {"lora_dropout": 1.5}}, ADMISSION, "spec.lora.lora_dropout"),
    ("lora bias not a choice", {"lora": {"bias": "some"}}, ADMISSION, "spec.lora.bias"),
    ("lora 'yes'", {"lora": "yes"}, OPERATOR, "spec.lora: expected true, false or an object"),
    ("lora unknown key", {"lora": {"rank": 8}}, OPERATOR, "spec.lora.rank: unknown"),
    (
        "quantize 4-bit and 8-bit",
        {"quantize": {"load_in_4bit": True, "load_in_8bit": True}, "lora": True},
        OPERATOR,
        "mutually exclusive",
    ),
    ("quantize bad quant type", {"quantize": {"bnb_4bit_quant_type": "nf5"}, "lora": True}, ADMISSION, "spec.quantize"),
    (
        "quantize unknown key",
        {"quantize": {"load_in_3bit": True}, "lora": True},
        OPERATOR,
        "spec.quantize.load_in_3bit",
    ),
    ("quantize without lora", {"quantize": True}, OPERATOR, "quantize needs lora"),
    (
        "misspelt training argument",
        {"trainingArgs": {"learning_rat": 1e-4}},
        ADMISSION,
        "spec.trainingArgs.learning_rat",
    ),
    (
        "training argument of the wrong type",
        {"trainingArgs": {"num_train_epochs": "three"}},
        ADMISSION,
        "num_train_epochs",
    ),
    ("fp16 with bf16", {"trainingArgs": {"fp16": True, "bf16": True}}, ADMISSION, "fp16"),
    ("output_dir in trainingArgs", {"trainingArgs": {"output_dir": "/x"}}, ADMISSION, "spec.trainingArgs.output_dir"),
    ("more GPUs than a node has", {"resources": {"gpus": 16}}, OPERATOR, "spec.resources.gpus"),
    ("an output that dies with the pod", {"output": {"uri": "/tmp/out"}}, ADMISSION, "spec.output.uri"),
    ("pvc output leaving its claim", {"output": {"uri": "pvc://models/../../cache/x"}}, ADMISSION, "pvc://CLAIM/PATH"),
    ("pvc without a claim", {"data": {"train": "pvc:///x"}}, ADMISSION, "pvc://CLAIM/PATH"),
    ("credential inline in env", {"env": [{"name": "HF_TOKEN", "value": "hf_x"}]}, ADMISSION, "secretKeyRef"),
    ("bad pod label key", {"podLabels": {"team name": "a"}}, ADMISSION, "spec.podLabels"),
    ("bad node selector value", {"nodeSelector": {"gpu": "a b"}}, ADMISSION, "nodeSelector"),
    ("negative maxDisruptions", {"maxDisruptions": -1}, ADMISSION, "maxDisruptions"),
    ("unknown affinity kind", {"affinity": {"nodeAfinity": {}}}, OPERATOR, "spec.affinity"),
    ("prefix for another task", {"prefix": "x: "}, ADMISSION, "spec.prefix"),
    ("bad name", {"metadata": {"name": "Bad_Name"}}, ADMISSION, "metadata.name"),
    ("hub token inline", {"trainingArgs": {"hub_token": "hf_abc"}}, ADMISSION, "spec.trainingArgs.hub_token"),
    ("a token through the hatch", {"uncheckedTrainingArgs": {"wandb_api_key": "x"}}, OPERATOR, "wandb_api_key"),
    ("an API key in lora", {"lora": {"api_key": "x"}}, OPERATOR, "spec.lora.api_key: looks like a credential"),
    (
        "ZeRO-3 to an object store without a gathered model",
        {
            "resources": {"gpus": 4},
            "trainingArgs": {"deepspeed": {"zero_optimization": {"stage": 3}}},
        },
        OPERATOR,
        "spec.trainingArgs.deepspeed",
    ),
]


def _document(fields: dict[str, Any]) -> dict[str, Any]:
    metadata = {"name": "ok-name", "namespace": "ml", **fields.get("metadata", {})}
    spec = {**SPEC, **{k: v for k, v in fields.items() if k != "metadata"}}
    return {"apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob", "metadata": metadata, "spec": spec}


@functools.cache
def _baseline() -> list[str]:
    return admit(_document({}))


def operator_verdict(document: dict[str, Any]) -> str | None:
    """The one validation path's refusal (`kubetune validate`), checked to equal the operator's."""
    try:
        parse_manifest(document, POLICY)
        validated = None
    except ManifestError as error:
        validated = str(error)
    if validated is not None and validated.startswith("metadata."):
        return validated  # the operator never sees an object the API server did not store
    try:
        validate_spec(document["spec"], namespace="ml", name="x", policy=POLICY)
        operator = None
    except InvalidSpecError as error:
        operator = str(error)
    assert validated == operator, "kubetune validate and the operator must give the same verdict"
    return validated


def test_a_valid_spec_passes_both_layers() -> None:
    assert _baseline() == [] and operator_verdict(_document({})) is None


@pytest.mark.parametrize(("mistake", "fields", "layer", "says"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_mistake_is_refused_at_its_layer(mistake: str, fields: dict[str, Any], layer: str, says: str) -> None:
    document = _document(fields)
    refused = admit(document)
    if layer == ADMISSION:
        assert refused, f"{mistake}: the API server would admit it"
        assert any(says in message for message in refused), refused
    else:
        assert refused == [], f"{mistake}: the API server refuses it already: move the row to {ADMISSION}"
    # Whatever admission says, the one validation path refuses it too (a client that skips
    # strict validation, an object from before the CRD had the rule), naming the field.
    verdict = operator_verdict(document)
    assert verdict is not None and says.split(":")[0].split(".")[-1] in verdict, verdict


def table() -> str:
    """The closing note's table: mistake, layer, the message users see first."""
    rows = ["| mistake | refused by | message |", "|---|---|---|"]
    for mistake, fields, layer, _ in MISTAKES:
        document = _document(fields)
        message = (admit(document) or [operator_verdict(document) or ""])[0]
        rows.append(f"| {mistake} | {layer} | {message[:160]} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
