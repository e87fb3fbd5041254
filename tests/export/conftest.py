"""The export tests use the session's shared tiny FLUID run (tests/conftest.py)."""

import pytest


@pytest.fixture(scope="session")
def export_run_dir(trained_run_dir):
    return trained_run_dir
