"""`edtalk batch JOBS.jsonl`: one JSON job a line, models loaded once, a rerun resumes, a bad job is one
line and never stops the list, and torchrun shards the jobs so that each runs exactly once."""
import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edtalk.cli import _add_generate_args, generate_options, main
from edtalk.errors import InputError
from edtalk.pipelines.batch import Rank, job_namespace, read_jobs, run_jobs
from edtalk.pipelines.model_cache import ModelCache
from edtalk.testing import write_tiny_checkpoints

REPO = Path(__file__).resolve().parents[2]
FACE = REPO / "examples" / "source.png"
WROTE = re.compile(r"^(?:\[rank (\d)/2\] )?line (\d+): wrote ")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> Path:
    return write_tiny_checkpoints(tmp_path_factory.mktemp("batch-ckpt"))["EDTalk.pt"].parent


@pytest.fixture
def inputs(tmp_path) -> Path:
    """A jobs folder: a face, two short speeches (0.48 s = 12 frames, 0.32 s = 8 frames)."""
    folder = tmp_path / "jobs"
    (folder / "speech").mkdir(parents=True)
    (folder / "face.png").write_bytes(FACE.read_bytes())
    sr = 16000
    for name, seconds in (("a.wav", 0.48), ("b.wav", 0.32)):
        t = np.arange(int(sr * seconds)) / sr
        sf.write(folder / "speech" / name, (0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(8 * t))), sr)
    return folder


def write_jobs(folder: Path, lines) -> Path:
    path = folder / "jobs.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def job_flags():
    parser = argparse.ArgumentParser(add_help=False)
    _add_generate_args(parser, batch=True)
    defaults = parser.parse_args([])
    return parser._actions, defaults


def test_a_job_takes_generates_option_names_and_paths_relative_to_its_file(tmp_path):
    flags, defaults = job_flags()
    ns = job_namespace({"source": "faces/ann.png", "audio": "/abs/a.wav", "exp": "happy", "exp-intensity": "1.5",
                        "pose": "audio", "no_crop": True, "batch_size": 2, "out": "out/ann.mp4"},
                       defaults, flags, tmp_path)
    assert ns.source == str(tmp_path / "faces/ann.png") and ns.audio == "/abs/a.wav" and ns.out == str(
        tmp_path / "out/ann.mp4")
    assert (ns.exp, ns.exp_intensity, ns.pose, ns.crop, ns.batch_size) == ("happy", 1.5, "audio", False, 2)
    assert ns.checkpoint_dir == "checkpoints"  # a default: relative to the working folder, as on the CLI
    other = job_namespace({"source": "f.png", "lip": "l.mp4", "pose": "p.mp4", "exp": "e/exp.npy", "crop": True,
                           "out": "o.mp4"}, defaults, flags, tmp_path)
    assert (other.pose, other.exp, other.crop) == (str(tmp_path / "p.mp4"), str(tmp_path / "e/exp.npy"), True)
    for job, message in (({"source": "f.png", "out": "o.mp4", "bogus": 1}, "unknown option"),
                         ({"source": "f.png", "out": "o.mp4", "batch_size": 2.5}, "whole number"),
                         ({"source": "f.png", "out": "o.mp4", "dtype": "fp8"}, "must be one of fp32, fp16, bf16"),
                         ({"source": "f.png", "out": "o.mp4", "no_crop": "yes"}, "true or false"),
                         ({"source": "f.png"}, 'no "out"'), ({"out": "o.mp4"}, 'no "source"'), ([1, 2], "JSON object")):
        with pytest.raises(InputError, match=message):
            job_namespace(job, defaults, flags, tmp_path)


def test_jobs_run_once_each_a_failure_is_one_line_and_a_rerun_resumes(ckpts, inputs, capsys):
    jobs = write_jobs(inputs, [
        {"source": "face.png", "audio": "speech/a.wav", "exp": "happy", "out": "out/a.mp4"},
        {"source": "face.png", "audio": "speech/missing.wav", "out": "out/missing.mp4"},  # fails in the middle
        "{not json",
        "",
        {"source": "face.png", "audio": "speech/b.wav", "exp_intensity": 0.5, "out": "out/b.mp4"},
        {"source": "face.png", "audio": "speech/b.wav", "out": "out/a.mp4"},  # the same output as line 1
    ])
    argv = ["batch", str(jobs), "--checkpoint-dir", str(ckpts), "--no-crop", "--device", "cpu", "--exp", "sad"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"edtalk: batch: line 2 failed: audio file not found: {inputs / 'speech' / 'missing.wav'}",
        "edtalk: batch: line 3 failed: not valid JSON (Expecting property name enclosed in double quotes at column 2)",
        f"edtalk: batch: line 6 failed: same out as line 1 ({inputs / 'out' / 'a.mp4'})"]
    assert [WROTE.match(line).group(2) for line in out.splitlines() if WROTE.match(line)] == ["1", "5"]
    assert out.splitlines()[-1] == "batch: 5 jobs: 2 written, 0 skipped (output exists), 3 failed (lines 2, 3, 6)"
    from edtalk.video import probe_video

    assert probe_video(inputs / "out" / "a.mp4")["frames"] == 12 and probe_video(inputs / "out" / "b.mp4")["frames"] == 8
    assert not (inputs / "out" / "missing.mp4").exists()
    stamp = (inputs / "out" / "a.mp4").stat().st_mtime_ns
    assert main(argv) == 1  # a rerun: the written ones are skipped, the failures fail again
    out, _ = capsys.readouterr()
    assert "line 1: skipped, " in out and (inputs / "out" / "a.mp4").stat().st_mtime_ns == stamp
    assert out.splitlines()[-1] == "batch: 5 jobs: 0 written, 2 skipped (output exists), 3 failed (lines 2, 3, 6)"


def test_the_job_defaults_and_its_own_values(ckpts, inputs, capsys):
    """Flags after the file are defaults; a job's own value wins; models load once for every job."""
    jobs = write_jobs(inputs, [{"source": "face.png", "audio": "speech/a.wav", "out": f"out/{n}.mp4", "exp": exp}
                               for n, exp in enumerate(["happy", "sad", "none", "happy:0.5+sad:0.5"])])
    flags, defaults = job_flags()
    defaults.checkpoint_dir, defaults.crop, defaults.device = str(ckpts), False, "cpu"
    read = read_jobs(jobs, defaults, flags, generate_options)
    assert [j.options.exp for j in read] == ["happy", "sad", "none", "happy:0.5+sad:0.5"]
    models = ModelCache()
    tally = run_jobs(read, Rank(), models)
    assert (tally.written, tally.failed) == (4, [])
    assert models.loads == {"EDTalk": 1, "EDTalk_lip_pose": 1, "Audio2Lip": 1}  # each file once


def test_a_missing_or_empty_jobs_file_is_a_usage_error(tmp_path, capsys):
    assert main(["batch", str(tmp_path / "none.jsonl")]) == 2
    (tmp_path / "empty.jsonl").write_text("\n\n")
    assert main(["batch", str(tmp_path / "empty.jsonl")]) == 2
    assert main(["batch", str(tmp_path / "empty.jsonl"), "--batch-size", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"edtalk: error: jobs file not found: {tmp_path / 'none.jsonl'}",
                   f"edtalk: error: no jobs in {tmp_path / 'empty.jsonl'} (one JSON object a line)",
                   "edtalk: error: --batch-size must be at least 1"]


def test_torchrun_two_processes_run_each_job_exactly_once(ckpts, inputs):
    """`torchrun --nproc_per_node 2 -m edtalk batch`: job i on rank i mod 2, a failing job in the middle
    stops nothing, one total at the end, exit code 1; a rerun skips what exists."""
    lines = [{"source": "face.png", "audio": f"speech/{'ab'[n % 2]}.wav", "exp": "happy", "out": f"out/{n}.mp4"}
             for n in range(5)]
    lines[2]["audio"] = "speech/missing.wav"
    jobs = write_jobs(inputs, lines)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "edtalk", "batch", str(jobs), "--checkpoint-dir", str(ckpts), "--no-crop", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert run.returncode == 1, run.stdout + run.stderr
    wrote = [WROTE.match(line).groups() for line in run.stdout.splitlines() if WROTE.match(line)]
    assert sorted(int(line) for _, line in wrote) == [1, 2, 4, 5]  # every good job once
    assert all(int(rank) == (int(line) - 1) % 2 for rank, line in wrote)  # job i on rank i mod 2
    failed = [line for line in run.stderr.splitlines() if line.startswith("edtalk: batch:")]
    assert failed == [f"edtalk: batch: [rank 0/2] line 3 failed: audio file not found: "
                      f"{inputs / 'speech' / 'missing.wav'}"]
    assert "batch: 5 jobs on 2 processes: 4 written, 0 skipped (output exists), 1 failed (line 3)" in run.stdout
    assert sorted(p.name for p in (inputs / "out").iterdir()) == ["0.mp4", "1.mp4", "3.mp4", "4.mp4"]
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert "batch: 5 jobs on 2 processes: 0 written, 4 skipped (output exists), 1 failed (line 3)" in again.stdout
