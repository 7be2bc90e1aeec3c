"""Shared fixtures and options of the test suite."""

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
#: Measured reference spectra shipped beside the project (tests and calibration only).
SHARED_NI = REPO.parent / "shared" / "data" / "reference_spectra" / "Ni"


def pytest_addoption(parser):
    parser.addoption("--quick-dir", default=str(REPO / "build" / "notebooks-quick"),
                     help="where the quick-mode notebook runs write executed notebooks and data")


@pytest.fixture
def rng():
    """A fixed-seed generator, new for each test."""
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def shared_ni_dir():
    """Folder of the measured Ni reference spectra; skip when it is absent."""
    if not SHARED_NI.is_dir():
        pytest.skip(f"measured reference spectra not found beside the project ({SHARED_NI.name})")
    return SHARED_NI
