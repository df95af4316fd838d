#!/usr/bin/env python
"""edtalk benchmarks: prints numbers (never a pass/fail; wall-clock time depends on the machine).

Suites:
  train   aten calls per step, ms per step, steps/s and the data-wait fraction of a training
          config, measured on `edtalk train` itself (Trainer.train: the loop users run).

    python scripts/bench.py train --config configs/train/stage1_synthtalk.yaml
    python scripts/bench.py train --config configs/train/stage1_synthtalk.yaml --preset narrow
    python scripts/bench.py train --config ... --ref /tmp/edtalk_base   # same run, another checkout
    python scripts/bench.py train --config ... data.num_workers=0 train.device=cuda   # any override

`--ref DIR` measures the same config with the edtalk package of DIR (e.g. `git worktree add
/tmp/edtalk_base HEAD~3`) in the same run, alternating, and prints the ratios: how a change is
judged.  Without `--data` a SynthTalk MEAD tree (64², `--speakers` speakers) is made in a
temporary folder.

How it counts: aten calls are profiler events named aten::* (nested ones included) in the
training process; per step = (calls of a run of 2k steps − calls of a run of k steps) / k, so
set-up, samples, checkpoints and the export cancel out.  Time: a run of 2·`--steps` steps
with log_every = `--steps`; its last log window (the second half) gives ms/step and the data
wait (time spent waiting for the next batch / step time), as logged in TensorBoard.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NARROW = ["model.channels={4: 4, 8: 4, 16: 4, 32: 4, 64: 4}", "train.batch_size=2"]


# ----------------------------------------------------------------------------- worker (one checkout)


def _run(config: str, overrides, steps: int, log_every: int, run_dir: str, profile: bool = False):
    from edtalk.train.config import load_train_config
    from edtalk.train.trainer import Trainer

    cfg = load_train_config(config, list(overrides) + [
        f"run.dir={run_dir}", "run.resume=none", "run.progress=false", "run.sample_every=0",
        "run.checkpoint_every=0", "run.export=false", f"run.log_every={log_every}", f"train.max_steps={steps}"])
    trainer = Trainer(cfg)
    if not profile:
        return trainer.train().last_logs, 0
    from torch.profiler import ProfilerActivity, profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.train()
    return {}, sum(1 for e in prof.events() if e.name.startswith("aten::"))


def worker(args) -> dict:
    """Measure with whatever edtalk is importable (the caller sets PYTHONPATH)."""
    import edtalk
    import torch

    out = {"edtalk": str(Path(edtalk.__file__).resolve().parents[1]), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        k = args.count_steps
        _, short = _run(args.config, args.overrides, k, k, f"{tmp}/a", profile=True)
        _, long = _run(args.config, args.overrides, 2 * k, k, f"{tmp}/b", profile=True)
        out["aten_calls_per_step"] = (long - short) / k
        logs, _ = _run(args.config, args.overrides, 2 * args.steps, args.steps, f"{tmp}/c")
    out["ms_per_step"] = 1000.0 * logs["time/step_s"]
    out["data_wait_frac"] = logs["time/data_wait_frac"]
    return out


# ----------------------------------------------------------------------------- driver


def synth_tree(folder: Path, speakers: int) -> Path:
    root = folder / "mead"
    if not (root / "frames.lmdb").exists():
        subprocess.run([sys.executable, "-m", "edtalk.data.synthtalk", "--out", str(folder), "--speakers", str(speakers),
                        "--kind", "mead", "--emotions", "neutral,happy", "--levels", "3", "--frames", "32",
                        "--size", "64", "--no-mel", "--seed", "1", "--quiet", "--overwrite"], check=True)
        subprocess.run([sys.executable, "-m", "edtalk.data.store", "--root", str(root), "--quiet"], check=True)
    return root


def measure(code_root: Path, args, overrides) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code_root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, str(Path(__file__).resolve()), "train", "--worker", "--config", args.config,
           "--steps", str(args.steps), "--count-steps", str(args.count_steps), *overrides]
    done = subprocess.run(cmd, env=env, cwd=str(code_root), capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench: the run with {code_root} failed:\n{done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def train_suite(args) -> None:
    overrides = list(args.overrides) + (NARROW if args.preset == "narrow" else [])
    with tempfile.TemporaryDirectory() as tmp:
        if not any(o.startswith("data.root=") for o in overrides):
            root = Path(args.data) if args.data else synth_tree(Path(tmp) / "synth", args.speakers)
            overrides.append(f"data.root={Path(root).resolve()}")
        codes = [("this checkout", REPO)] + ([("ref", Path(args.ref).resolve())] if args.ref else [])
        results = {name: [] for name, _ in codes}
        for _ in range(args.repeats):  # alternate, so a load change on the machine hits both
            for name, root in codes:
                results[name].append(measure(root, args, overrides))
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; config {args.config}"
          f"{' (narrow: ' + ' '.join(NARROW) + ')' if args.preset == 'narrow' else ''}; "
          f"overrides: {' '.join(args.overrides) or 'none'}; best of {args.repeats}")
    print("| code | aten calls/step | ms/step | steps/s | data wait |\n|---|---:|---:|---:|---:|")
    best = {}
    for name, runs in results.items():
        b = min(runs, key=lambda r: r["ms_per_step"])
        best[name] = b
        print(f"| {name} ({b['edtalk']}) | {b['aten_calls_per_step']:.0f} | {b['ms_per_step']:.1f} | "
              f"{1000 / b['ms_per_step']:.2f} | {100 * b['data_wait_frac']:.1f}% |")
    if args.ref:
        new, ref = best["this checkout"], best["ref"]
        print(f"\naten calls: {new['aten_calls_per_step'] / ref['aten_calls_per_step']:.3f}x the ref; "
              f"steps/s: {ref['ms_per_step'] / new['ms_per_step']:.3f}x the ref")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="suite", required=True)
    t = sub.add_parser("train", help="training step cost of a config")
    t.add_argument("--config", required=True)
    t.add_argument("--data", help="a training tree (default: a SynthTalk tree made for the run)")
    t.add_argument("--speakers", type=int, default=24, help="speakers of the made SynthTalk tree")
    t.add_argument("--preset", choices=["none", "narrow"], default="none",
                   help="narrow: channels 4, batch 2 (launch-bound: op count decides)")
    t.add_argument("--steps", type=int, default=20, help="timed steps (after as many warm-up steps)")
    t.add_argument("--count-steps", type=int, default=2, help="k of the aten-call count")
    t.add_argument("--repeats", type=int, default=1, help="runs per checkout; the fastest is shown")
    t.add_argument("--ref", help="another checkout's root, measured in the same run")
    t.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    t.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    train_suite(args)


if __name__ == "__main__":
    main()
