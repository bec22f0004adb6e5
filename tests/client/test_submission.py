"""What submit sends: HFTrainer's keywords mapped to spec fields, what cannot leave this
process refused, local paths refused naming the URIs that work, and `kubetune validate`'s
messages for everything else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubetune_api.finetunejob import FineTuneJobSpec
from kubetune_api.hftrainer_spec import NotForClusterError, hftrainer_spec
from kubetune_api.manifest import ManifestError, parse_manifest
from kubetune_api.submission import generated_prefix, prepare, spec_document
from kubetune_api.validation import ClusterPolicy

CLUSTER_FORMS = ("pvc://", "s3://", "gs://", "az://", "hf://", "https://")


def test_hftrainer_keywords_become_spec_fields() -> None:
    spec = hftrainer_spec(
        "org/base",
        "s3://bucket/train.csv",
        "s3://bucket/validation.csv",
        columns=("sentence", "label"),
        maxlength=256,
        stride=64,
        task="text-classification",
        quantize=True,
        lora={"r": 8},
        output_dir="s3://bucket/models/x",
        learning_rate=3e-5,
        num_train_epochs=5,
    )
    assert spec == {
        "base": {"model": "org/base"},
        "data": {
            "train": "s3://bucket/train.csv",
            "validation": "s3://bucket/validation.csv",
            "columns": ["sentence", "label"],
        },
        "maxLength": 256,
        "stride": 64,
        "task": "text-classification",
        "quantize": True,
        "lora": {"r": 8},
        "output": {"uri": "s3://bucket/models/x"},
        "trainingArgs": {"learning_rate": 3e-5, "num_train_epochs": 5},
    }
    FineTuneJobSpec.model_validate(spec)  # a spec the model takes as it is


def test_attention_becomes_the_spec_field() -> None:
    spec = hftrainer_spec("org/base", "s3://bucket/train.csv", attn_implementation="sdpa", bf16=False)
    assert spec["attnImplementation"] == "sdpa" and spec["trainingArgs"] == {"bf16": False}
    FineTuneJobSpec.model_validate(spec)


def test_prefix_for_sequence_sequence() -> None:
    spec = hftrainer_spec("t5-small", "hf://wmt16?config=de-en", task="sequence-sequence", prefix="translate: ")
    assert spec["prefix"] == "translate: " and spec["task"] == "sequence-sequence"


class DataFrame:
    """Stands in for pandas.DataFrame (the check goes by what the object is not: a URI)."""


@pytest.mark.parametrize(
    ("data", "kind"), [([{"text": "a", "label": 1}], "list"), (DataFrame(), "DataFrame"), ({"text": []}, "dict")]
)
def test_in_memory_data_is_refused_naming_what_works(data: Any, kind: str) -> None:
    with pytest.raises(NotForClusterError) as refused:
        hftrainer_spec("org/base", data)
    message = str(refused.value)
    assert message.startswith(f"train: a {kind} lives in this Python process and cannot be sent to the cluster")
    assert "df.to_csv" in message and all(form in message for form in CLUSTER_FORMS)


@pytest.mark.parametrize(
    ("keywords", "says"),
    [
        ({"base": ("model", "tokenizer")}, "base: a (model, tokenizer) pair lives in this Python process"),
        ({"metrics": len}, "metrics: a function cannot be sent to the cluster"),
        ({"callbacks": [object()]}, "callbacks: TrainerCallbacks cannot be sent"),
        ({"checkpoint": "outputs/checkpoint-10"}, "resumes from the newest checkpoint in its output by itself"),
        ({"lora": DataFrame()}, "lora: a DataFrame object cannot be sent to the cluster; pass True or the LoraConfig"),
        ({"quantize": DataFrame()}, "pass True or the BitsAndBytesConfig arguments as a dict"),
        ({"validation": [{"text": "b"}]}, "validation: a list lives in this Python process"),
    ],
)
def test_what_only_this_process_has_is_refused(keywords: dict[str, Any], says: str) -> None:
    arguments = {"base": "org/base", "train": "s3://b/t.csv", **keywords}
    with pytest.raises(NotForClusterError, match=says.replace("(", r"\(").replace(")", r"\)")):
        hftrainer_spec(**arguments)


def test_tokenizers_and_checkpoint_true_are_for_this_machine_only() -> None:
    with pytest.warns(UserWarning, match="tokenizers is ignored"):
        spec = hftrainer_spec("org/base", "s3://b/t.csv", tokenizers=4, checkpoint=True)
    assert spec == {"base": {"model": "org/base"}, "data": {"train": "s3://b/t.csv"}}


def document(spec: dict[str, Any], name: str | None = "run") -> dict[str, Any]:
    return spec_document(spec, name)


SPEC = {"base": {"model": "org/base"}, "data": {"train": "s3://b/train.csv"}, "output": {"uri": "s3://b/out"}}


@pytest.mark.parametrize("train", ["data/train.csv", "/home/me/train.csv", "file:///home/me/train.csv"])
def test_local_data_is_out_of_the_clusters_reach(train: str) -> None:
    with pytest.raises(NotForClusterError) as refused:
        prepare(document({**SPEC, "data": {"train": train}}), "default")
    message = str(refused.value)
    assert message.startswith(f"spec.data.train: {train!r} is a path on this machine, which the cluster cannot read")
    assert all(form in message for form in CLUSTER_FORMS)


def test_local_validation_data_and_output_too() -> None:
    with pytest.raises(NotForClusterError, match=r"spec\.data\.validation: 'val\.csv' is a path on this machine"):
        prepare(document({**SPEC, "data": {"train": "s3://b/t.csv", "validation": "val.csv"}}), "default")
    with pytest.raises(NotForClusterError) as refused:
        prepare(document({**SPEC, "output": {"uri": "outputs/run"}}), "default")
    assert "spec.output.uri: 'outputs/run' is a path on this machine, which the cluster cannot write to" in str(
        refused.value
    )
    assert "pvc://CLAIM/PATH, s3://, gs://, az://" in str(refused.value)


def test_a_model_folder_here_is_refused_a_hub_id_is_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "base").mkdir(parents=True)  # a folder that looks like the hub id
    with pytest.raises(NotForClusterError, match=r"spec\.base\.model: 'org/base' is a path on this machine"):
        prepare(document(SPEC), "default")
    monkeypatch.chdir(tmp_path / "org")
    assert prepare(document(SPEC), "default").manifest.spec.base.model == "org/base"


def test_mistakes_get_the_validation_paths_messages() -> None:
    bad = {**SPEC, "trainingArgs": {"learning_rat": 1e-4}, "task": "sentiment"}
    with pytest.raises(ManifestError) as submitted:
        prepare(document(bad), "default")
    with pytest.raises(ManifestError) as validated:
        parse_manifest({**document(bad), "metadata": {"name": "run"}}, ClusterPolicy())
    assert str(submitted.value) == str(validated.value)
    assert "spec.task" in str(submitted.value) and "learning_rate" in str(submitted.value)


def test_the_operators_default_output_is_left_to_it() -> None:
    without_output = {key: value for key, value in SPEC.items() if key != "output"}
    submission = prepare(document(without_output), "team-a")
    assert "output" not in submission.body["spec"]  # the operator fills it in
    assert submission.body["metadata"] == {"name": "run", "namespace": "team-a"}


def test_the_objects_namespace_must_agree_with_the_request() -> None:
    body = document(SPEC)
    body["metadata"]["namespace"] = "team-a"
    assert prepare(body, "team-a").body["metadata"]["namespace"] == "team-a"
    with pytest.raises(ManifestError, match="the object says 'team-a', the request 'team-b'"):
        prepare(body, "team-b")


def test_without_a_name_the_api_server_makes_one_from_the_base_model() -> None:
    assert document(SPEC, name=None)["metadata"] == {"generateName": "base-"}
    assert generated_prefix({"base": {"model": "sentence-transformers/all-MiniLM-L6-v2"}}) == "all-minilm-l6-v2-"
    assert generated_prefix({"base": {"model": "s3://b/models/My_Model/"}}) == "my-model-"
    assert generated_prefix({}) == "finetune-"
    prepare(document(SPEC, name=None), "default")  # generateName passes the metadata checks


def test_a_spec_model_is_sent_as_its_non_default_fields() -> None:
    spec = FineTuneJobSpec.model_validate({**SPEC, "trainingArgs": {"num_train_epochs": 2}})
    assert spec_document(spec, "run")["spec"] == {**SPEC, "trainingArgs": {"num_train_epochs": 2}}
