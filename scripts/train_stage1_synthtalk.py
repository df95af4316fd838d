#!/usr/bin/env python
"""The stage-1 proof run: train on many SynthTalk identities, then probe disentanglement on held-out
speakers next to the untrained model (same config and seed).

    python scripts/train_stage1_synthtalk.py --work data/proof              # all phases, resumable
    python scripts/train_stage1_synthtalk.py --work data/proof --phase eval # re-measure only

Phases (each skips what is already done, so a killed run continues where it stopped):

1. data      SynthTalk MEAD tree, 64x64, `--speakers` speakers (a quarter held out as the test
             split: whole speakers never seen in training) + its LMDB frame store;
2. baseline  probe of the untrained model;
3. train     `edtalk train --config configs/train/stage1_synthtalk.yaml` (resumes from the
             latest checkpoint in WORK/run);
4. eval      probe of the trained model (`--checkpoints`: of every kept one), loss curves PNG, and a
             Markdown table, all under WORK/ (copy the small ones into docs/training/).

The probe (`edtalk.eval.probes.stage1_report`): per-frame mouth/pose weights of every test-split frame;
ridge fits on 70 % of those clips, R² on the other 30 %.  "open" and "yaw" are the R² of the one
true factor column; "own" averages all of a group's columns; "excess leak" is the largest R² of
another group's factor above what the true factors themselves explain.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "train" / "stage1_synthtalk.yaml"
SYNTH_ARGS = ["--kind", "mead", "--emotions", "neutral,happy,sad,surprised", "--levels", "1,3", "--frames", "32",
              "--size", "64", "--no-mel", "--seed", "1", "--pose-drift", "2.5", "--quiet"]


def run(cmd):
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=REPO)


def phase_data(work: Path, speakers: int) -> Path:
    root = work / "synth" / "mead"
    if not (root / "test.json").is_file():
        run([sys.executable, "-m", "edtalk.data.synthtalk", "--out", work / "synth", "--speakers", speakers,
             *SYNTH_ARGS, "--overwrite"])
    if not (root / "frames.lmdb").exists():
        run([sys.executable, "-m", "edtalk.data.store", "--root", root, "--quiet"])
    return root


def probe(model, root: Path) -> dict:
    """Held-out probe on the test split: full report + the mouth-opening and yaw columns alone."""
    from edtalk.eval.probes import stage1_report

    return stage1_report(model, root, split="test", batch_size=64)


def load_cfg(root: Path, run_dir: Path, overrides):
    from edtalk.train.config import load_train_config

    return load_train_config(str(CONFIG), [f"data.root={root}", f"run.dir={run_dir}", *overrides])


def phase_baseline(work: Path, root: Path, overrides) -> dict:
    out = work / "baseline.json"
    if out.is_file():
        return json.loads(out.read_text())
    import torch

    from edtalk.train.stage import get_stage
    from edtalk.train.trainer import seed_everything

    cfg = load_cfg(root, work / "run", overrides)
    seed_everything(int(cfg.seed))  # the trainer's step-0 weights
    model = get_stage(cfg.stage)(cfg, torch.device("cpu")).build_models()["gen"]
    result = probe(model, root)
    out.write_text(json.dumps(result, indent=2))
    return result


def phase_train(work: Path, root: Path, steps: int, overrides) -> None:
    run([sys.executable, "-m", "edtalk.cli", "train", "--config", CONFIG, f"data.root={root}",
         f"run.dir={work / 'run'}", f"train.max_steps={steps}", *overrides])


def loss_curves(run_dir: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run_dir / "tb"))
    ea.Reload()
    tags = [t for t in ea.Tags()["scalars"] if t.startswith("loss/") and t != "loss/g_total"]
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=90)
    for tag in tags:
        events = ea.Scalars(tag)
        ax.plot([e.step for e in events], [e.value for e in events], label=tag[5:], lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)


def phase_eval(work: Path, root: Path, baseline: dict, all_checkpoints: bool = False) -> dict:
    from edtalk import EDTalk
    from edtalk.train.trainer import list_checkpoints, load_checkpoint

    run_dir = work / "run"
    trained = probe(EDTalk.from_pretrained(run_dir / "export" / "model"), root)
    per_checkpoint = {}
    for path in list_checkpoints(run_dir) if all_checkpoints else []:
        state = load_checkpoint(path)
        model = EDTalk.from_pretrained(run_dir / "export" / "model")
        model.load_state_dict(state["ema"].get("gen") or state["models"]["gen"])
        r = probe(model, root)
        per_checkpoint[int(state["step"])] = {k: r[k] for k in ("open_r2", "yaw_r2", "mouth_excess_leak",
                                                               "pose_excess_leak")}
    result = {"baseline": baseline, "trained": trained, "checkpoints": per_checkpoint}
    (work / "result.json").write_text(json.dumps(result, indent=2))
    loss_curves(run_dir, work / "loss_curves.png")
    (work / "table.md").write_text(markdown_table(baseline, trained))
    return result


def markdown_table(baseline: dict, trained: dict) -> str:
    rows = [("mouth weights → mouth opening R²", "open_r2", "≥ 0.7"), ("pose weights → yaw R²", "yaw_r2", "≥ 0.7"),
            ("mouth weights → all mouth factors (own)", "mouth_own", ""),
            ("pose weights → all pose factors (own)", "pose_own", ""),
            ("mouth excess leak", "mouth_excess_leak", "≤ 0.15"), ("pose excess leak", "pose_excess_leak", "≤ 0.15"),
            ("score (own mean − excess leak mean)", "score", "")]
    lines = ["| held-out speakers | untrained | trained | target |", "|---|---|---|---|"]
    for label, key, target in rows:
        lines.append(f"| {label} | {baseline[key]:.3f} | {trained[key]:.3f} | {target} |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="data/proof", help="data, run and results folder (default: data/proof)")
    p.add_argument("--speakers", type=int, default=120, help="SynthTalk speakers (a quarter held out; default 120)")
    p.add_argument("--steps", type=int, default=3000, help="training steps (default 3000)")
    p.add_argument("--phase", default="all", choices=["all", "data", "baseline", "train", "eval"])
    p.add_argument("--checkpoints", action="store_true", help="also probe every kept checkpoint (slow)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="extra training-config overrides")
    args = p.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    root = phase_data(work, args.speakers)
    if args.phase in ("all", "baseline", "eval"):
        baseline = phase_baseline(work, root, args.overrides)
        print("untrained:", json.dumps({k: v for k, v in baseline.items() if k != "text"}), flush=True)
    if args.phase in ("all", "train"):
        phase_train(work, root, args.steps, args.overrides)
    if args.phase in ("all", "eval"):
        result = phase_eval(work, root, baseline, args.checkpoints)
        print(result["trained"]["text"])
        print((work / "table.md").read_text())
    print(f"done in {time.time() - t0:.0f} s; results in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
