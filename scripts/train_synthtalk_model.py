#!/usr/bin/env python
"""Train the project's own EDTalk model on SynthTalk, every stage in order, in one resumable command.

    python scripts/train_synthtalk_model.py --out models/synthtalk                 # full: ~2 CPU hours
    python scripts/train_synthtalk_model.py --preset tiny --work /tmp/w --out /tmp/m   # minutes: the chain only
    edtalk generate --checkpoint-dir models/synthtalk --presets models/synthtalk/presets --no-crop \\
        --source face.png --audio speech.wav --pose audio --exp audio        # or --exp happy

Phases (each skips when its export exists, so a killed run continues where it stopped; a training run
resumes from the latest checkpoint in its run folder):

  data       SynthTalk MEAD tree at 64x64: all 8 emotions, levels 1 and 3, emotional voices, audio + mel, a quarter
             of the speakers held out (the test split) + its LMDB frame store       WORK/synth/mead
  stage1     lip-pose generator                 configs/train/stage1_synthtalk[_tiny].yaml   WORK/runs/stage1
  stage2     expression branch on stage 1       stage2_synthtalk[_tiny].yaml                 WORK/runs/stage2
  syncnet    SyncNet expert                     syncnet_synthtalk[_tiny].yaml                WORK/runs/syncnet
  motion     α_m, α_p of the stage-1 model and α_e of the stage-2 model, every clip (edtalk extract-motion)
  audio2lip  audio-to-lip on the stage-1 generator, the expert in the sync loss      WORK/runs/audio2lip
  pose_flow  audio-to-pose flow on the frozen audio2lip encoder                     WORK/runs/pose_flow
  audio2exp  audio/text-to-expression (synthetic transcripts)                        WORK/runs/audio2exp
  presets    mean α_e per emotion of the train split (edtalk make-presets)          WORK/presets
  collect    OUT/ in the layout `edtalk generate --checkpoint-dir OUT` reads (below)
  probe      held-out numbers of each stage from the proof scripts' probes           OUT/probe.json

OUT/:  EDTalk/ (stage 2, full model)   EDTalk_lip_pose/ (stage 1)   Audio2Lip/   pose_flow/   audio2exp/
       (saved model folders: model.safetensors + config.json; --checkpoint-dir reads them like the .pt files)
       presets/ (<emotion>.npy, presets.json: for --presets)   syncnet/ (for edtalk evaluate --syncnet)
       training.json (what made it)   probe.json

To train a stage longer, delete its run's export/ folder and every later phase's output, then rerun
with more steps: the run continues from its last checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proof_audio_drivers  # noqa: E402  (scripts/: the pose-flow and audio2exp probes)
import train_stage1_synthtalk as stage1_proof  # noqa: E402  (SynthTalk arguments, run(), the stage-1 probe)

from edtalk.errors import EDTalkError, exit_code_of  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs" / "train"
TRAINED_STAGES = ("stage1", "stage2", "syncnet", "audio2lip", "pose_flow", "audio2exp")
MOTION_PARTS = ("mouth", "pose", "exp")


@dataclass(frozen=True)
class Preset:
    config_suffix: str  # "" (the *_synthtalk.yaml configs) or "_tiny"
    speakers: int
    frames: str
    steps: Dict[str, int]


PRESETS = {
    "tiny": Preset("_tiny", speakers=2, frames="16",
                   steps={"stage1": 12, "stage2": 8, "syncnet": 12, "audio2lip": 6, "pose_flow": 10, "audio2exp": 10}),
    # Seconds per step measured on the 2-core AMD EPYC CPU, one thread, shared with one other training run:
    # stage1 0.83, stage2 0.12, syncnet 0.57, audio2lip 0.54, pose_flow 0.10, audio2exp 0.004; so about
    # 55 + 6 + 28 + 18 + 1 + 0 min of training, plus ~10 min of data, motion cache and probes.  The pose
    # flow's held-out NLL is lowest after ~600 steps on this tree (6000 overfit the audio: README).
    "full": Preset("", speakers=64, frames="32",
                   steps={"stage1": 4000, "stage2": 3000, "syncnet": 3000, "audio2lip": 2000, "pose_flow": 600,
                          "audio2exp": 4000}),
}


# ----------------------------------------------------------------------------- settings and paths


@dataclass
class Chain:
    """Where every phase reads and writes, and how each training run is called."""

    preset: str
    work: Path
    out: Path
    speakers: int
    frames: str
    steps: Dict[str, int]
    device: str
    threads: int
    overrides: Dict[str, List[str]]
    probe: bool = True

    @property
    def tree(self) -> Path:
        return self.work / "synth" / "mead"

    @property
    def presets_dir(self) -> Path:
        return self.work / "presets"

    def run_dir(self, stage: str) -> Path:
        return self.work / "runs" / stage

    def config(self, stage: str) -> Path:
        return CONFIG_DIR / f"{stage}_synthtalk{PRESETS[self.preset].config_suffix}.yaml"

    def export(self, stage: str) -> Path:
        return self.run_dir(stage) / "export"


def latest_export_checkpoint(chain: Chain, stage: str) -> Optional[Path]:
    """The official-format .pt a generator stage (stage1/stage2) writes last, when it has finished."""
    found = sorted(chain.export(stage).glob("*.pt"))
    return found[-1] if found else None


def stage_export(chain: Chain, stage: str) -> Optional[Path]:
    """The file each stage's export writes last (its run is complete once it exists), else None."""
    if stage in ("stage1", "stage2"):
        return latest_export_checkpoint(chain, stage)
    last_written = {"syncnet": "model/config.json", "audio2lip": "Audio2Lip.pt",
                    "pose_flow": "pose_flow/config.json", "audio2exp": "audio2exp/config.json"}[stage]
    path = chain.export(stage) / last_written
    return path if path.is_file() else None


def model_files(chain: Chain) -> Dict[str, Path]:
    """OUT name → its source: exactly what `edtalk generate --checkpoint-dir OUT` looks for, plus
    the presets folder (--presets) and the SyncNet expert (edtalk evaluate --syncnet)."""
    return {
        "EDTalk_lip_pose": chain.export("stage1") / "model",
        "EDTalk": chain.export("stage2") / "model",
        "Audio2Lip": chain.export("audio2lip") / "model",
        "pose_flow": chain.export("pose_flow") / "pose_flow",
        "audio2exp": chain.export("audio2exp") / "audio2exp",
        "presets": chain.presets_dir,
        "syncnet": chain.export("syncnet") / "model",
    }


# ----------------------------------------------------------------------------- phases


def run_phase(name: str, finished: Callable[[], Optional[Path]], action: Callable[[], None], detail: str = "") -> None:
    """One progress line at the start and the end (with wall time); skipped when already finished."""
    done = finished()
    if done is not None:
        print(f"[{name}] skip: {done} exists", flush=True)
        return
    print(f"[{name}] start{': ' + detail if detail else ''}", flush=True)
    t0 = time.time()
    action()
    done = finished()
    if done is None:
        raise EDTalkError(f"phase {name} ended without writing its output")
    print(f"[{name}] done in {time.time() - t0:.1f} s: {done}", flush=True)


def run_command(phase: str, cmd: list) -> None:
    """A phase's command (printed first); a failure is one error line naming the phase."""
    import subprocess

    try:
        stage1_proof.run(cmd)
    except subprocess.CalledProcessError as exc:
        raise EDTalkError(f"phase {phase} failed: its command (printed above) exited with {exc.returncode}; "
                          "rerun to continue from where it stopped") from None


def synthtalk_args(chain: Chain) -> list:
    """The stage-1 proof's SynthTalk arguments, with audio + mel features, all 8 emotions and emotional
    voices (audio2exp and the presets need every emotion, the audio stages the mel features, and
    audio2exp can only read the emotion from voices that carry it; the shipped model predates this)."""
    args = [a for a in stage1_proof.SYNTH_ARGS if a != "--no-mel"] + ["--emotional-voice"]
    for option, value in (("--emotions", "all"), ("--frames", chain.frames)):
        if option in args:
            args[args.index(option) + 1] = value
        else:
            args += [option, value]
    return ["--speakers", chain.speakers, *args]


def tree_ready(chain: Chain) -> Optional[Path]:
    store = chain.tree / "frames.lmdb"
    return store if (chain.tree / "test.json").is_file() and store.exists() else None


def make_tree(chain: Chain) -> None:
    if not (chain.tree / "test.json").is_file():
        run_command("data", [sys.executable, "-m", "edtalk.data.synthtalk", "--out", chain.work / "synth",
                             *synthtalk_args(chain), "--overwrite"])
    run_command("data", [sys.executable, "-m", "edtalk.data.store", "--root", chain.tree, "--quiet"])


def stage_inputs(chain: Chain, stage: str) -> List[str]:
    """The overrides that chain a stage to the exports before it."""
    audio2lip = chain.export("audio2lip") / "Audio2Lip.pt"
    return {
        "stage1": [],
        "stage2": [f"model.init_path={chain.run_dir('stage1')}"],
        "syncnet": [],
        "audio2lip": [f"model.generator={chain.run_dir('stage1')}", f"model.syncnet={chain.export('syncnet') / 'model'}"],
        "pose_flow": [f"model.audio2lip={audio2lip}"],
        "audio2exp": [f"model.audio2lip={audio2lip}"],
    }[stage]


def train_stage(chain: Chain, stage: str) -> None:
    run_command(stage, [sys.executable, "-m", "edtalk.cli", "train", "--config", chain.config(stage),
                        f"data.root={chain.tree}", f"run.dir={chain.run_dir(stage)}",
                        f"train.max_steps={chain.steps[stage]}", f"train.threads={chain.threads}",
                        f"train.device={chain.device}", "run.progress=false",
                        *stage_inputs(chain, stage), *chain.overrides.get(stage, [])])


def motion_cached(chain: Chain) -> Optional[Path]:
    from edtalk.data import layout
    from edtalk.train.motion import motion_path

    names = layout.list_clips(chain.tree)
    complete = all(motion_path(chain.tree, n, p).is_file() for n in names for p in MOTION_PARTS)
    return motion_path(chain.tree, names[-1], "exp").parent if complete and names else None


def extract_motion(chain: Chain) -> None:
    """α_m/α_p from the lip-pose model (the audio2lip targets, the pose-flow data), α_e from the full one."""
    for stage, parts in (("stage1", "mouth,pose"), ("stage2", "exp")):
        run_command("motion", [sys.executable, "-m", "edtalk.cli", "extract-motion",
                               "--checkpoint", latest_export_checkpoint(chain, stage), "--data", chain.tree,
                               "--parts", parts, "--device", chain.device, "--quiet"])


def presets_written(chain: Chain) -> Optional[Path]:
    from edtalk.train.motion import PRESETS_JSON

    path = chain.presets_dir / PRESETS_JSON
    return path if path.is_file() else None


def make_presets(chain: Chain) -> None:
    run_command("presets", [sys.executable, "-m", "edtalk.cli", "make-presets",
                            "--checkpoint", latest_export_checkpoint(chain, "stage2"), "--data", chain.tree,
                            "--out", chain.presets_dir, "--device", chain.device, "--quiet"])


def copy_atomic(src: Path, dst: Path) -> None:
    """File or folder `src` at `dst`, replacing it; a kill mid-copy leaves only a hidden temporary."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    remove(tmp)
    if src.is_dir():
        shutil.copytree(src, tmp)
    else:
        shutil.copy2(src, tmp)
    if dst.is_dir():
        shutil.rmtree(dst)
    os.replace(tmp, dst)


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def recipe(chain: Chain) -> dict:
    return {"preset": chain.preset, "speakers": chain.speakers, "frames": chain.frames,
            "synthtalk_args": [str(a) for a in synthtalk_args(chain)],
            "configs": {s: str(chain.config(s).relative_to(REPO)) for s in TRAINED_STAGES},
            "steps": chain.steps, "overrides": chain.overrides, "device": chain.device, "work": str(chain.work)}


def collected(chain: Chain) -> Optional[Path]:
    """OUT/training.json is written last, so its presence means every model file is in place."""
    path = chain.out / "training.json"
    return path if path.is_file() and all((chain.out / name).exists() for name in model_files(chain)) else None


def collect(chain: Chain) -> None:
    chain.out.mkdir(parents=True, exist_ok=True)
    for name, src in model_files(chain).items():
        copy_atomic(src, chain.out / name)
    write_json_atomic(chain.out / "training.json", recipe(chain))


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- held-out probes


def probe_stage1(chain: Chain) -> dict:
    from edtalk import EDTalk

    found = stage1_proof.probe(EDTalk.from_pretrained(chain.export("stage1") / "model"), chain.tree)
    return {k: found[k] for k in ("open_r2", "yaw_r2", "mouth_excess_leak", "pose_excess_leak")}


def probe_stage2(chain: Chain) -> dict:
    from edtalk import EDTalk
    from edtalk.eval.model_probe import evaluate_model

    report = evaluate_model(EDTalk.from_pretrained(chain.export("stage2") / "model"), chain.tree, split="test",
                            progress=False)
    return {f"{group}_own_r2": report["own"].get(group) for group in ("mouth", "pose", "expression")}


def probe_syncnet(chain: Chain) -> dict:
    from edtalk.data.audio_datasets import SyncNetPairs
    from edtalk.networks.syncnet import load_syncnet
    from edtalk.train.stages.syncnet import sync_preference

    return sync_preference(load_syncnet(chain.export("syncnet") / "model"), SyncNetPairs(chain.tree, split="test"))


def probe_pose_flow(chain: Chain) -> dict:
    found = proof_audio_drivers.pose_flow(str(chain.tree), str(chain.run_dir("pose_flow")),
                                          str(chain.config("pose_flow")), str(chain.work))
    return {k: found[k] for k in ("nll_untrained", "nll_trained", "std_ratio_trained", "within_20pct_trained")}


def probe_audio2exp(chain: Chain) -> dict:
    found = proof_audio_drivers.audio2exp(str(chain.tree), str(chain.run_dir("audio2exp")),
                                          str(chain.config("audio2exp")), str(chain.work))
    return {k: found[k] for k in ("acc_audio_trained", "acc_text_trained", "acc_both_trained", "chance")}


PROBES = {"stage1": probe_stage1, "stage2": probe_stage2, "syncnet": probe_syncnet, "pose_flow": probe_pose_flow,
          "audio2exp": probe_audio2exp}


def probed(chain: Chain) -> Optional[Path]:
    path = chain.out / "probe.json"
    return path if path.is_file() else None


def run_probes(chain: Chain) -> None:
    """Each stage's held-out probe; a probe that fails is reported, not fatal (the model is collected)."""
    import torch

    torch.set_num_threads(chain.threads)
    numbers = {}
    for stage, probe in PROBES.items():
        try:
            numbers[stage] = probe(chain)
        except Exception as exc:  # a diagnostic only: keep the other numbers
            numbers[stage] = {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"}
            print(f"[probe] {stage}: failed ({numbers[stage]['error']})", flush=True)
    write_json_atomic(chain.out / "probe.json", {"split": "test (held-out speakers)", "stages": numbers})


def print_summary(chain: Chain) -> None:
    path = probed(chain)
    if path is None:
        return
    print("held-out probes (OUT/probe.json; no probe for audio2lip):")
    for stage, numbers in json.loads(path.read_text())["stages"].items():
        print(f"  {stage:<10}" + ", ".join(f"{k} {short_number(v)}" for k, v in numbers.items()))


def short_number(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return "[" + " ".join(short_number(v) for v in value) + "]"
    return str(value)


# ----------------------------------------------------------------------------- command line


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="data/synthtalk_model", help="data and run folders (default: data/synthtalk_model)")
    p.add_argument("--out", default=None, help="the final model folder (default: WORK/model)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="full",
                   help="full: *_synthtalk.yaml configs, about 2 CPU hours (default); tiny: *_tiny configs, minutes")
    p.add_argument("--speakers", type=int, default=None, help="SynthTalk speakers, a quarter held out "
                   f"(default: full {PRESETS['full'].speakers}, tiny {PRESETS['tiny'].speakers})")
    p.add_argument("--frames", default=None, help="clip length: N or LO-HI frames (default: full "
                   f"{PRESETS['full'].frames}, tiny {PRESETS['tiny'].frames})")
    for stage in TRAINED_STAGES:
        p.add_argument(f"--{stage.replace('_', '-')}-steps", type=int, default=None, dest=f"{stage}_steps",
                       help=f"training steps (default: full {PRESETS['full'].steps[stage]}, "
                            f"tiny {PRESETS['tiny'].steps[stage]})")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="train.device of every run, and extract-motion/make-presets (default auto)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process: train.threads (default 1)")
    p.add_argument("--set", action="append", default=[], metavar="STAGE:key=value",
                   help=f"an extra config override of one stage ({', '.join(TRAINED_STAGES)}); repeatable")
    p.add_argument("--no-probe", action="store_true", help="skip the held-out probes at the end")
    return p.parse_args(argv)


def stage_overrides(items: List[str]) -> Dict[str, List[str]]:
    overrides: Dict[str, List[str]] = {}
    for item in items:
        stage, _, setting = item.partition(":")
        if stage not in TRAINED_STAGES or "=" not in setting:
            raise EDTalkError(f"--set {item!r}: expected STAGE:key=value with STAGE one of {', '.join(TRAINED_STAGES)}")
        overrides.setdefault(stage, []).append(setting)
    return overrides


def chain_from_args(args: argparse.Namespace) -> Chain:
    preset = PRESETS[args.preset]
    steps = {s: getattr(args, f"{s}_steps") or preset.steps[s] for s in TRAINED_STAGES}
    bad = [f"--{s.replace('_', '-')}-steps" for s in TRAINED_STAGES if getattr(args, f"{s}_steps") is not None
           and getattr(args, f"{s}_steps") < 1]
    if bad:
        raise EDTalkError(f"{bad[0]} must be at least 1")
    speakers = args.speakers if args.speakers is not None else preset.speakers
    if speakers < 2:
        raise EDTalkError("--speakers must be at least 2 (one to train on, one held out)")
    if args.threads < 1:
        raise EDTalkError("--threads must be at least 1")
    if args.device == "cuda" and not cuda_available():
        raise EDTalkError("--device cuda: no CUDA device is available (use --device cpu)")
    work = Path(args.work).resolve()
    out = Path(args.out).resolve() if args.out else work / "model"
    for flag, path in (("--work", work), ("--out", out)):
        if path.exists() and not path.is_dir():
            raise EDTalkError(f"{flag} {path} exists and is not a folder")
    return Chain(args.preset, work, out, speakers, str(args.frames or preset.frames), steps, args.device,
                 args.threads, stage_overrides(args.set), probe=not args.no_probe)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def check_overrides(chain: Chain) -> None:
    """Resolve each stage's config with the --set overrides now: a typo fails before hours of training."""
    from edtalk.train.config import load_train_config

    for stage, settings in chain.overrides.items():
        try:
            load_train_config(str(chain.config(stage)), [f"data.root={chain.tree}", *settings])
        except EDTalkError as exc:
            raise EDTalkError(f"--set {stage}: {exc}") from None


def check_work_matches(chain: Chain) -> None:
    """A work folder holds one SynthTalk tree: refuse to mix another preset's or size's tree into it."""
    marker = chain.work / "chain.json"
    settings = {"preset": chain.preset, "speakers": chain.speakers, "frames": chain.frames}
    if marker.is_file():
        before = json.loads(marker.read_text())
        if before != settings:
            raise EDTalkError(f"{chain.work} was made with {before}, not {settings}: use another --work "
                              "(or the same settings)")
        return
    chain.work.mkdir(parents=True, exist_ok=True)
    write_json_atomic(marker, settings)


def training_phase(chain: Chain, stage: str) -> None:
    run_phase(stage, lambda: stage_export(chain, stage), lambda: train_stage(chain, stage),
              f"{chain.config(stage).name}, {chain.steps[stage]} steps")


def train_chain(chain: Chain) -> None:
    t0 = time.time()
    check_overrides(chain)
    check_work_matches(chain)
    run_phase("data", lambda: tree_ready(chain), lambda: make_tree(chain),
              f"{chain.speakers} speakers, {chain.frames} frames per clip")
    for stage in ("stage1", "stage2", "syncnet"):
        training_phase(chain, stage)
    run_phase("motion", lambda: motion_cached(chain), lambda: extract_motion(chain))
    for stage in ("audio2lip", "pose_flow", "audio2exp"):
        training_phase(chain, stage)
    run_phase("presets", lambda: presets_written(chain), lambda: make_presets(chain))
    run_phase("collect", lambda: collected(chain), lambda: collect(chain))
    if chain.probe:
        run_phase("probe", lambda: probed(chain), lambda: run_probes(chain))
        print_summary(chain)
    print(f"model in {chain.out} ({time.time() - t0:.1f} s); try:\n  edtalk generate --checkpoint-dir {chain.out} "
          f"--presets {chain.out / 'presets'} --no-crop --source FACE.png --audio SPEECH.wav --pose audio --exp audio",
          flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(max(1, args.threads))  # the child processes and this one's probes

    def run() -> int:
        train_chain(chain_from_args(args))
        return 0

    return exit_code_of(run)


if __name__ == "__main__":
    sys.exit(main())
