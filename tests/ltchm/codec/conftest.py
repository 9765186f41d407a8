"""Fixtures of the codec tests (the trained checkpoints live in tests/conftest.py)."""

from __future__ import annotations

import pytest

from ltchm.codec import load_checkpoint


@pytest.fixture(params=["autoregressive", "checkerboard"])
def model(request, checkpoints):
    return load_checkpoint(checkpoints[request.param])
