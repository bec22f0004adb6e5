"""Test-wide settings: nothing is downloaded, nothing phones home."""

import os

# Set before any Hugging Face library is imported by a test module.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["WANDB_DISABLED"] = "true"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# -- test sets ------------------------------------------------------------------------------------
# `pytest -m unit` is the fast set (pure functions, fakes, the CRD and docs checks: well under a
# minute); `-m integration` starts something real: the operator against the API emulator, helm,
# buildah, torchrun, an S3 server, or transformers training a tiny model; `-m slow` is the part
# of it that trains a real (small) model. Every test gets exactly one of unit / integration, by
# where it lives, so a new test file needs no marker to land in the right set.
INTEGRATION_PLACES = ("tests/trainer/", "tests/chart/", "tests/images/", "_integration.py")


def pytest_collection_modifyitems(items: list) -> None:  # type: ignore[type-arg]
    import pytest

    for item in items:
        where = item.path.as_posix()
        integration = item.get_closest_marker("slow") is not None or any(p in where for p in INTEGRATION_PLACES)
        item.add_marker(pytest.mark.integration if integration else pytest.mark.unit)
