"""Shared fixtures: paths to real data and the project's settings.

Real models are used throughout (bundled Whisper tiny.en/base, SmolLM2, piper);
they are cached in CASCADE_HOME (~/.cache/cascade) across runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cascade.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"../shared/data is expected beside the project ({SHARED_DATA})"
    return SHARED_DATA


@pytest.fixture(scope="session")
def test_data() -> Path:
    return TEST_DATA


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def jfk_path(shared_data: Path) -> Path:
    return next((shared_data / "real").glob("*jfk*"))
