"""scripts/bench.py: every suite is there, the shared timer counts calls as documented, and a
suite prints its table (values are not checked against times: benchmarks never pass or fail)."""
import re

import pytest

from edtalk.pipelines.benchmark import time_call

SUITES = {"inference", "memory", "paste", "loader", "train", "precision", "synthtalk", "evaluate", "e2e", "onnx"}


def test_every_suite_is_a_subcommand(bench):
    sub = next(a for a in bench.parser()._actions if a.dest == "suite")
    assert set(sub.choices) == SUITES


def test_the_timer_warms_up_once_then_keeps_the_best_of_the_repeats():
    calls = []
    assert time_call(lambda: calls.append(1), repeats=3) >= 0
    assert len(calls) == 4
    calls.clear()
    time_call(lambda: calls.append(1), repeats=2, warmup=False)
    assert len(calls) == 2


def test_synthtalk_suite_prints_a_row_per_size(bench, capsys):
    assert bench.main(["synthtalk", "--sizes", "16", "24", "--frames", "2", "--repeats", "1"]) == 0
    rows = re.findall(r"^\| (\d+) \| (\d+) \|$", capsys.readouterr().out, re.M)
    assert [size for size, _ in rows] == ["16", "24"]
    assert all(int(fps) > 0 for _, fps in rows)


def test_unknown_inference_mode_is_one_error_line(bench):
    with pytest.raises(SystemExit, match="unknown mode NOPE"):
        bench.main(["inference", "--tiny", "--frames", "1", "--modes", "NOPE"])
