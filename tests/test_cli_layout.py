"""Issue 20: command lines are parsed in edtalk/cli.py only; library modules keep plain functions, and the
old `python -m edtalk.<module>` entry points name the `edtalk` subcommand that replaced them."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edtalk"
PARSING = re.compile(r"\bArgumentParser\(|\.add_argument\(|\.add_parser\(|\.parse_args\(|\.parse_known_args\(")
# argparse.Namespace without a parser: the official checkpoints store their options as one ('args'), and
# `edtalk batch` checks each job's values against generate's flags, which cli.py hands it.
NAMESPACE_ONLY = {"checkpoints.py", "testing.py", "train/stages/common.py", "pipelines/batch.py"}


def modules():
    return {str(path.relative_to(PACKAGE)): path.read_text() for path in sorted(PACKAGE.rglob("*.py"))}


def test_only_cli_parses_command_lines():
    parsing = sorted(name for name, text in modules().items() if PARSING.search(text))
    assert parsing == ["cli.py"]


def test_only_cli_imports_argparse_for_parsing():
    importing = {name for name, text in modules().items() if re.search(r"^\s*(import|from) argparse\b", text, re.M)}
    assert importing - NAMESPACE_ONLY == {"cli.py"}


@pytest.mark.parametrize("module,command", [("edtalk.data.synthtalk", "synthtalk"),
                                            ("edtalk.data.store", "store"),
                                            ("edtalk.data.preprocess_real", "prepare-data")])
def test_an_old_entry_point_names_its_command_and_exits_2(tmp_path, module, command):
    result = subprocess.run([sys.executable, "-m", module, "--out", str(tmp_path / "out")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and f"`edtalk {command} ...`" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_data_preprocess_script_runs_prepare_data(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "data_preprocess" / "prepare.py"), "--dataset", "mead",
                             "--raw", str(tmp_path / "none"), "--out", str(tmp_path / "o")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"edtalk: error: raw folder does not exist: {tmp_path / 'none'}"]
