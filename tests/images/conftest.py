"""Markers for the image tests."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "image_build: builds the operator image with buildah (needs root; about 1.5-3 minutes); "
        "deselect with -m 'not image_build'",
    )
