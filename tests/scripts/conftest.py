"""The scripts under scripts/, loaded as modules (they are files, not a package)."""
import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load_script("bench")


@pytest.fixture(scope="module")
def bench_e2e():
    return load_script("bench_e2e")


@pytest.fixture(scope="module")
def render_ceiling_script():
    return load_script("render_ceiling")


@pytest.fixture(scope="module")
def recipe_script():
    return load_script("train_synthtalk_model")
