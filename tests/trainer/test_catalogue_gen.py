"""The checked-in argument catalogue is what the installed libraries say, and its claims are proved."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Literal

import pytest
import torch
from transformers import BitsAndBytesConfig
from transformers.trainer_utils import IntervalStrategy

from kubetune_api.argument_catalogue import ANY, CATALOGUE_FILE, KINDS, REGENERATE_COMMAND, Catalogue, Shape
from kubetune_trainer import catalogue_gen, library_rules
from kubetune_trainer.library_types import UnmappedTypeError, docstring_arguments, shape_of


@pytest.fixture(scope="module")
def installed() -> Catalogue:
    return catalogue_gen.build_catalogue()


def test_the_checked_in_catalogue_matches_the_installed_libraries(installed: Catalogue) -> None:
    checked_in = Catalogue.from_json(CATALOGUE_FILE.read_text(encoding="utf-8"))
    changed = {
        kind: sorted(
            name
            for name in {*installed[kind].arguments, *checked_in[kind].arguments}
            if installed[kind].arguments.get(name) != checked_in[kind].arguments.get(name)
        )
        for kind in KINDS
    }
    assert installed.to_json() == CATALOGUE_FILE.read_text(encoding="utf-8"), (
        f"{CATALOGUE_FILE.name} drifted from the installed libraries {installed.libraries} "
        f"(checked in: {checked_in.libraries}; arguments that differ: {changed}); run: {REGENERATE_COMMAND}"
    )


def test_check_mode_reports_a_stale_file(
    installed: Catalogue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "argument_catalogue.json"
    stale.write_text("{}\n")
    monkeypatch.setattr(catalogue_gen, "CATALOGUE_FILE", stale)
    monkeypatch.setattr(catalogue_gen, "build_catalogue", lambda: installed)
    assert catalogue_gen.main(["--check"]) == 1
    assert REGENERATE_COMMAND in capsys.readouterr().err
    assert catalogue_gen.main([]) == 0 and catalogue_gen.main(["--check"]) == 0
    assert stale.read_text() == installed.to_json()


def test_every_bound_and_rule_is_in_the_catalogue(installed: Catalogue) -> None:
    for proved in library_rules.BOUNDS:
        assert proved.bound in installed[proved.kind].arguments[proved.argument].bounds
        # A library bound is proved by a refused value, a kubetune one by a value the library takes.
        assert proved.refused if proved.bound.enforced_by == "library" else proved.taken, proved.argument
    for proved_rule in library_rules.RULES:
        assert proved_rule.rule in installed[proved_rule.kind].rules
        assert proved_rule.refused or proved_rule.rule.enforced_by == "kubetune", proved_rule.rule.id


def _with(attribute: str, extra: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(library_rules, attribute, (*getattr(library_rules, attribute), extra))


def test_a_bound_the_library_does_not_enforce_fails_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = library_rules.ProvedBound("lora", "lora_alpha", library_rules._lib("minimum", 1, "made up"), refused=(0,))
    _with("BOUNDS", wrong, monkeypatch)
    with pytest.raises(catalogue_gen.CatalogueProofError, match=r"lora\.lora_alpha: the installed libraries take 0"):
        catalogue_gen.build_catalogue()


def test_a_kubetune_bound_the_library_enforces_fails_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = library_rules.ProvedBound("lora", "r", library_rules._ours("minimum", 1, "made up"), taken=(0,))
    _with("BOUNDS", wrong, monkeypatch)
    with pytest.raises(catalogue_gen.CatalogueProofError, match=r"lora\.r: the installed libraries refuse 0"):
        catalogue_gen.build_catalogue()


def test_a_rule_the_library_does_not_enforce_fails_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    rule = dataclasses.replace(library_rules.RULES[0].rule, id="made-up")
    _with("RULES", library_rules.ProvedRule("trainingArgs", rule, refused=({"fp16": True},)), monkeypatch)
    with pytest.raises(catalogue_gen.CatalogueProofError, match="rule made-up: the installed libraries take"):
        catalogue_gen.build_catalogue()


@pytest.mark.parametrize(
    ("annotation", "shape"),
    [
        (IntervalStrategy | str, Shape("string", enum=("no", "steps", "epoch"))),
        (dict | str | None, Shape(ANY, accepts=("object", "string"), nullable=True)),
        (typing.Optional[typing.Union[list[str], str]], Shape(ANY, accepts=("array", "string"), nullable=True)),  # noqa: UP007, UP045 (peft writes it so)
        (Literal["none", "all"], Shape("string", enum=("none", "all"))),
        (str | Literal["none", "all"], Shape("string")),  # nothing converts: any string passes
        (list[tuple[int, int]], Shape("array", items=Shape("array", items=Shape("integer")))),
        (dict[str, bool], Shape("object", values=Shape("boolean"))),
        (float | None, Shape("number", nullable=True)),
    ],
)
def test_annotations_map_faithfully(annotation: Any, shape: Shape) -> None:
    assert shape_of(annotation, "x") == shape


def test_torch_dtypes_are_their_names() -> None:
    assert {"bfloat16", "float16", "float32"} <= set(shape_of(torch.dtype, "x").enum)


def test_an_unknown_annotation_is_an_error_not_any() -> None:
    with pytest.raises(UnmappedTypeError, match="x: no JSON form"):
        shape_of(complex, "x")


def test_bits_and_bytes_docstring_documents_every_argument() -> None:
    documented = docstring_arguments(BitsAndBytesConfig.__doc__ or "")
    assert documented["bnb_4bit_quant_type"][0].startswith("`str`")
    assert documented["load_in_4bit"][1].startswith("This flag is used to enable 4-bit quantization")
    assert "kwargs" in documented  # the section runs to its end
