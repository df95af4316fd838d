"""The package's import contracts (.importlinter): layers, and no import circles (lazy imports count)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is part of the test extras (pip install -e .[test])")

ROOT = Path(__file__).resolve().parents[1]
LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='.importlinter', no_cache=True, no_logo=True))")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LINT], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_package_keeps_its_import_contracts():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def _copy_of_the_package(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "edtalk", tmp_path / "edtalk", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


@pytest.mark.parametrize("module,lazy_import,contract", [
    # A network reaching up into generation: breaks the layers (and makes a circle).
    ("networks/motion.py", "from ..pipelines import generate", "The model stack"),
    # The format module importing a model class: the circle issue 20 removed.
    ("checkpoints.py", "from .model import EDTalk", "No import circles"),
    # A dataset reading the motion cache through training code.
    ("data/audio_datasets.py", "from edtalk.train import motion", "Training over evaluation over data"),
])
def test_an_import_inside_a_function_breaks_them(tmp_path, module, lazy_import, contract):
    root = _copy_of_the_package(tmp_path)
    with open(root / "edtalk" / module, "a") as fh:
        fh.write(f"\n\ndef _reach_across():\n    {lazy_import}\n")
    result = lint_imports(root)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts")[-1]
    assert contract in broken, result.stdout[-3000:]
