"""Shared fixtures for the test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared_data import rsna_dir


@pytest.fixture(scope="session")
def fullres_dir() -> Path:
    return rsna_dir("fullres")
