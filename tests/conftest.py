import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The samples (research-style user models) are imported as `samples.*` from the repository root.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """The sample checkpoints, built fresh (seeded) for the test session."""
    from samples import make_checkpoints

    out = tmp_path_factory.mktemp("ckpt")
    return {name: make_checkpoints.save(name, out) for name in make_checkpoints.MODELS}


@pytest.fixture
def in_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    return ROOT


def pytest_report_header(config):
    return f"cmc tests from {ROOT} (CI={os.environ.get('CI', '')})"
