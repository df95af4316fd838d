import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edtalk.testing import PARITY_ENV, find_parity_dir, skip_unless_required

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

TESTS = Path(__file__).resolve().parent
# Marked `slow` here, by place, so the files themselves stay with their owners' layers.
SLOW_FILES = {"webui/test_browser.py", "model/test_parity.py"}  # a real browser; full-size official models
SLOW_FIXTURES = {"tiny_synthtalk_model"}  # the whole training chain, once per session


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.fspath)).resolve()
        in_slow_file = path.is_relative_to(TESTS) and path.relative_to(TESTS).as_posix() in SLOW_FILES
        if in_slow_file or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def parity_dir():
    """The official-parity reference set; a clear skip where it is absent (CI requires it)."""
    path = find_parity_dir()
    if path is None:
        skip_unless_required(f"official parity set not found (looked at ${PARITY_ENV} and "
                             "../shared/reference/official_parity)")
    return path


@pytest.fixture(scope="session")
def reference(parity_dir):
    return torch.load(parity_dir / "reference.pt", weights_only=True)


@pytest.fixture(scope="session")
def tiny_synthtalk_model(tmp_path_factory):
    """scripts/train_synthtalk_model.py --preset tiny, run once per session (one to two minutes):
    {"work", "out" (a folder in the bundled model's layout), "tree", "stdout"}."""
    repo = Path(__file__).resolve().parents[1]
    base = tmp_path_factory.mktemp("synthtalk_model")
    work, out = base / "work", base / "model"
    cmd = [sys.executable, str(repo / "scripts" / "train_synthtalk_model.py"), "--preset", "tiny", "--work", str(work),
           "--out", str(out), "--device", "cpu", "--threads", "1"]
    result = subprocess.run(cmd, cwd=repo, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return {"work": work, "out": out, "tree": work / "synth" / "mead", "stdout": result.stdout}
