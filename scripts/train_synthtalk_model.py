#!/usr/bin/env python
"""The SynthTalk recipe: EDTalk's whole training chain in the official order, in one resumable command.

    python scripts/train_synthtalk_model.py --preset tiny --work /tmp/w          # CI: about two minutes
    python scripts/train_synthtalk_model.py --preset proof --work data/proof      # the held-out proof run
    python scripts/train_synthtalk_model.py --preset full --out models/synthtalk  # the bundled model
    python scripts/train_synthtalk_model.py --preset proof --plan                 # phases, steps, CPU time
    edtalk generate --checkpoint-dir OUT --presets OUT/presets --no-crop \\
        --source face.png --audio speech.wav --pose audio --exp audio              # or --exp happy

Phases, in this order (docs/training/recipe.md has the details):

  data       SynthTalk MEAD tree at 64x64 (all 8 emotions, levels 1 and 3, emotional voices, audio + mel,
             a quarter of the speakers held out as the test split) + its LMDB frame store   WORK/synth/mead
  ceiling    the supervised factor net's held-out R² per factor (scripts/factor_ceiling.py): every
             later probe also reports each R² as a fraction of it (<factor>_frac)    WORK/synth/mead/ceiling.json
  stage0     encoder/decoder on neutral→emotion pairs of a speaker (stage0_synthtalk*.yaml,
             from scratch)                                                                    WORK/runs/stage0
  stage1     lip-pose generator, initialised from stage 0's export (model.init=pretrained)     WORK/runs/stage1
  gate       can stage 2 learn expression?  Linear probes of the stage-1 encoder's latent wa → each
             SynthTalk expression factor on held-out speakers (edtalk.eval.probes); a mean R² below
             --gate-threshold prints a WARNING line (--strict-gate: stops)                    WORK/gate.json
  stage2     expression branch on stage 1                                                     WORK/runs/stage2
  syncnet    SyncNet expert                                                                   WORK/runs/syncnet
  motion     α_m, α_p of the stage-1 model and α_e of the stage-2 model, every clip (edtalk extract-motion)
  audio2lip  audio-to-lip on the stage-1 generator, the expert in the sync loss               WORK/runs/audio2lip
  pose_flow  audio-to-pose flow on the frozen audio2lip encoder                              WORK/runs/pose_flow
  audio2exp  audio/text-to-expression (synthetic transcripts)                                 WORK/runs/audio2exp
  presets    mean α_e per emotion of the train split (edtalk make-presets)                    WORK/presets
  collect    OUT/ in the layout `edtalk generate --checkpoint-dir OUT` reads
  probe      every stage measured on the held-out speakers next to its untrained/initial state; the
             full model's cross-driving read again by the tree's own factor net (the ceiling's)
                                                                    OUT/probe.json, OUT/probe.md, WORK/probe/

The generator stages (0, 1, 2) run with train.probe_every: each run records its own held-out probe
curves in its run folder (probes.jsonl, TensorBoard), from step 0 on.

Resuming: a phase skips when its output exists (a training run: its export, at the preset's step
count); a training run continues from the latest checkpoint in its run folder.  Rerun the same
command after a kill, or after --max-minutes stopped a run (exit code 75).  --until / --only / --skip
pick phases; --set STAGE:key=value adds a config override to one stage.

OUT/:  EDTalk/ (stage 2, full model)   EDTalk_lip_pose/ (stage 1)   Audio2Lip/   pose_flow/   audio2exp/
       (saved model folders: model.safetensors + config.json; --checkpoint-dir reads them like the .pt files)
       presets/ (<emotion>.npy, presets.json: for --presets)   syncnet/ (for edtalk evaluate --syncnet)
       training.json (what made it)   probe.json + probe.md (held-out numbers)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from anywhere: python /path/to/scripts/train_synthtalk_model.py

from edtalk.errors import EDTalkError, exit_code_of  # noqa: E402

CONFIG_DIR = REPO / "configs" / "train"
PHASES = ("data", "ceiling", "stage0", "stage1", "gate", "stage2", "syncnet", "motion", "audio2lip", "pose_flow",
          "audio2exp", "presets", "collect", "probe")
TRAINED_STAGES = ("stage0", "stage1", "stage2", "syncnet", "audio2lip", "pose_flow", "audio2exp")
GENERATOR_STAGES = ("stage0", "stage1", "stage2")  # the ones train.probe_every can probe
SKIPPABLE = ("ceiling", "stage0", "gate", "probe")  # nothing later needs them (--skip stage0: stage 1 from scratch)
# What each phase reads (a phase of --only must find these finished).
NEEDS = {
    "data": (), "ceiling": ("data",), "stage0": ("data",), "stage1": ("data", "stage0"), "gate": ("stage1",),
    "stage2": ("stage1",),
    "syncnet": ("data",), "motion": ("stage1", "stage2"), "audio2lip": ("stage1", "syncnet", "motion"),
    "pose_flow": ("audio2lip", "motion"), "audio2exp": ("audio2lip", "motion"), "presets": ("stage2",),
    "collect": ("stage1", "stage2", "syncnet", "audio2lip", "pose_flow", "audio2exp", "presets"),
    "probe": ("collect",),
}
MOTION_PARTS = ("mouth", "pose", "exp")
EXPRESSION_FACTORS = ("brow_raise", "brow_furrow", "eyelid", "cheek", "corner_curve", "corner_asym")
GATE_THRESHOLD = 0.2  # mean held-out R² of wa → the expression factors below which stage 2 has nothing to learn
GATE_FILE = "gate.json"
BUDGET_EXIT = 75  # EX_TEMPFAIL: --max-minutes stopped a run; rerun to continue
# SynthTalk options of every preset's tree (the preset adds --speakers, --frames, --seed and its own).
BASE_SYNTH_ARGS = ("--kind", "mead", "--emotions", "all", "--levels", "1,3", "--size", "64", "--emotional-voice",
                   "--quiet")
# The data options that make each stage's pairs carry what it must learn: wide pose within a speaker,
# expression that changes within a clip and is drawn twice as large (a level-3 expression at scale 1
# moves about as many pixels as a half-open mouth; at 2 the factor net reads eyelid, cheek and mouth
# corners about twice as well: docs/training/stage1_ab.md), and head turns that read as turns (ears,
# outline, light: docs/factor_ceiling.md raised the yaw and pitch ceilings with them).
WIDE_SYNTH_ARGS = ("--pose-drift", "2.5", "--pose-range", "1.5", "--exp-change", "0.3", "--exp-scale", "2",
                   "--turn-cues")

# CPU seconds per training step, one thread, of the _tiny and the full (*_synthtalk.yaml) configs on a
# 2-core AMD EPYC shared with two other training runs (an idle machine is about twice as fast), plus each
# training process's start (imports, data, model, the step-0 probe).  The presets' estimates are these
# times the step counts.
SECONDS_PER_STEP = {
    "_tiny": {"stage0": 0.1, "stage1": 0.2, "stage2": 0.1, "syncnet": 0.1, "audio2lip": 0.1, "pose_flow": 0.05,
              "audio2exp": 0.01},
    "": {"stage0": 0.40, "stage1": 1.9, "stage2": 0.25, "syncnet": 0.72, "audio2lip": 0.6, "pose_flow": 0.12,
         "audio2exp": 0.005},
}
START_MINUTES = 0.15


@dataclass(frozen=True)
class Preset:
    about: str
    config_suffix: str  # "" (the *_synthtalk.yaml configs) or "_tiny"
    speakers: int
    frames: str
    seed: int
    synth: Tuple[str, ...]  # SynthTalk options beyond BASE_SYNTH_ARGS
    steps: Dict[str, int]
    overrides: Dict[str, Tuple[str, ...]]  # the recipe's own config overrides per stage
    probe_every: int  # train.probe_every of the generator stages (0 = off; the last step is always probed)
    probe: Tuple[str, ...]  # probe.* settings of those runs, the gate and the probe phase
    minutes_other: Dict[str, float] = field(default_factory=dict)  # estimated CPU minutes of untrained phases
    ceiling_steps: int = 3000  # the factor net's steps for the tree's ceiling (scripts/factor_ceiling.py)


# The held-out probe of the proof and the bundled model: 48 of the 240 held-out clips.  With 24, the
# ridge fits 17 clips and scores 7, and a 512-wide feature overfits (the bundled tree's gate read
# wa → cheek R² -28 at 24 clips; the 240-clip ridge puts its mouth opening at 0.68 where 24 clips said 0.32).
HELD_OUT_PROBE = ("probe.max_clips=48", "probe.frames=32", "probe.triples=32")

PRESETS = {
    "tiny": Preset(
        "CI: the whole chain on a 2-speaker tree, every phase and output; numbers mean nothing",
        "_tiny", speakers=2, frames="16", seed=1, synth=WIDE_SYNTH_ARGS,
        steps={"stage0": 8, "stage1": 12, "stage2": 8, "syncnet": 12, "audio2lip": 6, "pose_flow": 10,
               "audio2exp": 10},
        overrides={"stage1": ("data.cross_clip_rate=0.5",)},
        probe_every=1000, probe=("probe.max_clips=16", "probe.frames=16", "probe.triples=8"),
        minutes_other={"data": 0.3, "ceiling": 0.2, "gate": 0.05, "motion": 0.2, "presets": 0.1, "probe": 0.25},
        ceiling_steps=4),
    "proof": Preset(
        "the held-out proof run the disentanglement targets are measured on: a fresh seed, 64 speakers (16 held out), "
        "48-frame clips with wide pose and changing expression, stage-1 sources from other clips half the time",
        "", speakers=64, frames="48", seed=17, synth=WIDE_SYNTH_ARGS,
        steps={"stage0": 8000, "stage1": 6000, "stage2": 3000, "syncnet": 3000, "audio2lip": 2000,
               "pose_flow": 600, "audio2exp": 4000},
        overrides={"stage1": ("data.cross_clip_rate=0.5",)},
        probe_every=500, probe=HELD_OUT_PROBE,
        minutes_other={"data": 25, "ceiling": 12, "gate": 1, "motion": 6, "presets": 1, "probe": 10}),
    "full": Preset(
        "the bundled model (checkpoints/synthtalk): the proof's recipe on the bundled tree's seed",
        "", speakers=64, frames="48", seed=1, synth=WIDE_SYNTH_ARGS,
        steps={"stage0": 8000, "stage1": 6000, "stage2": 3000, "syncnet": 3000, "audio2lip": 2000,
               "pose_flow": 600, "audio2exp": 4000},
        overrides={"stage1": ("data.cross_clip_rate=0.5",)},
        probe_every=1000, probe=HELD_OUT_PROBE,
        minutes_other={"data": 25, "ceiling": 12, "gate": 1, "motion": 6, "presets": 1, "probe": 10}),
}


def estimated_minutes(preset: Preset, steps: Dict[str, int]) -> Dict[str, float]:
    """CPU minutes per phase: training steps × measured seconds per step, the rest as measured."""
    per_step = SECONDS_PER_STEP[preset.config_suffix]
    minutes = dict(preset.minutes_other)
    minutes.update({s: START_MINUTES + steps[s] * per_step[s] / 60 for s in TRAINED_STAGES})
    return minutes


def presets_table() -> str:
    lines = []
    for name, p in PRESETS.items():
        total = sum(estimated_minutes(p, p.steps).values())
        when = f"~{total:.0f} CPU minutes" if total < 90 else f"~{total / 60:.1f} CPU hours"
        lines += textwrap.wrap(f"{p.about}; {when}", 100, initial_indent=f"  {name:<6} ", subsequent_indent=" " * 9)
        lines.append("         steps: " + ", ".join(f"{s} {n}" for s, n in p.steps.items()))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- settings and paths


@dataclass
class Chain:
    """Where every phase reads and writes, and how each training run is called."""

    preset: str
    work: Path
    out: Path
    speakers: int
    frames: str
    seed: int
    steps: Dict[str, int]
    device: str
    threads: int
    overrides: Dict[str, List[str]]
    probe_every: int
    skip: Tuple[str, ...] = ()
    strict_gate: bool = False
    gate_threshold: float = GATE_THRESHOLD
    deadline: Optional[float] = None  # time.monotonic() at which --max-minutes ends
    max_minutes: float = 0.0

    @property
    def settings(self) -> Preset:
        return PRESETS[self.preset]

    @property
    def tree(self) -> Path:
        return self.work / "synth" / "mead"

    @property
    def presets_dir(self) -> Path:
        return self.work / "presets"

    @property
    def gate_file(self) -> Path:
        return self.work / GATE_FILE

    @property
    def probe_dir(self) -> Path:
        return self.work / "probe"

    def run_dir(self, stage: str) -> Path:
        return self.work / "runs" / stage

    def config(self, stage: str) -> Path:
        return CONFIG_DIR / f"{stage}_synthtalk{self.settings.config_suffix}.yaml"

    def export(self, stage: str) -> Path:
        return self.run_dir(stage) / "export"

    def probe_settings(self) -> Dict[str, str]:
        return dict(s.split("=", 1) for s in self.settings.probe)


def latest_export_checkpoint(chain: Chain, stage: str) -> Optional[Path]:
    """The official-format .pt a generator stage (stage0/1/2) writes last, when it has exported."""
    found = sorted(chain.export(stage).glob("*.pt"))
    return found[-1] if found else None


CHECKPOINT_NAME = re.compile(r"step_(\d+)\.pt$")


def trained_step(chain: Chain, stage: str) -> int:
    """The step of the latest training checkpoint of a stage's run (0 without one)."""
    folder = chain.run_dir(stage) / "checkpoints"
    steps = [int(m.group(1)) for p in folder.glob("step_*.pt") if (m := CHECKPOINT_NAME.match(p.name))] \
        if folder.is_dir() else []
    return max(steps, default=0)


def stage_export(chain: Chain, stage: str) -> Optional[Path]:
    """The file each stage's export writes last, once its run has reached the chain's step count."""
    if stage in GENERATOR_STAGES:
        path = latest_export_checkpoint(chain, stage)
        if path is not None and path.stem.isdigit() and int(path.stem) < chain.steps[stage]:
            return None  # exported at fewer steps (a run killed after its last checkpoint, or trained longer now)
    else:
        last_written = {"syncnet": "model/config.json", "audio2lip": "Audio2Lip.pt",
                        "pose_flow": "pose_flow/config.json", "audio2exp": "audio2exp/config.json"}[stage]
        path = chain.export(stage) / last_written
        path = path if path.is_file() else None
    if path is None:
        return None
    checkpoints = chain.run_dir(stage) / "checkpoints"
    if checkpoints.is_dir() and trained_step(chain, stage) < chain.steps[stage]:
        return None  # exported at a --max-minutes stop, or a run to be trained longer: it resumes
    return path


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


class BudgetSpent(Exception):
    """--max-minutes ran out: the chain stops here, a rerun continues (exit code 75)."""


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
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    try:
        subprocess.run([str(c) for c in cmd], check=True, cwd=REPO)
    except subprocess.CalledProcessError as exc:
        raise EDTalkError(f"phase {phase} failed: its command (printed above) exited with {exc.returncode}; "
                          "rerun to continue from where it stopped") from None


def synthtalk_args(chain: Chain) -> list:
    """The tree's SynthTalk options: audio + mel, all 8 emotions and emotional voices (audio2exp and the
    presets need every emotion, the audio stages the mel features, and audio2exp can only read the
    emotion from voices that carry it), plus the preset's options."""
    return ["--speakers", str(chain.speakers), "--frames", chain.frames, "--seed", str(chain.seed),
            *BASE_SYNTH_ARGS, *chain.settings.synth]


def tree_ready(chain: Chain) -> Optional[Path]:
    store = chain.tree / "frames.lmdb"
    return store if (chain.tree / "test.json").is_file() and store.exists() else None


def make_tree(chain: Chain) -> None:
    if not (chain.tree / "test.json").is_file():
        run_command("data", [sys.executable, "-m", "edtalk", "synthtalk", "--out", chain.work / "synth",
                             *synthtalk_args(chain), "--overwrite"])
    run_command("data", [sys.executable, "-m", "edtalk", "store", "--root", chain.tree, "--quiet"])


def minutes_left(chain: Chain) -> str:
    """What is left of --max-minutes, as a run's budget (at least 0.01 minutes)."""
    return f"{max(0.01, (chain.deadline - time.monotonic()) / 60):.2f}"


def ceiling_ready(chain: Chain) -> Optional[Path]:
    """TREE/ceiling.json, once the factor net's run has finished (a stopped one is not a ceiling)."""
    run = chain.work / "ceiling" / "ceiling_run.json"
    done = run.is_file() and json.loads(run.read_text()).get("complete")
    path = chain.tree / "ceiling.json"
    return path if done and path.is_file() else None


def measure_tree_ceiling(chain: Chain) -> None:
    """The supervised factor net's held-out R² per factor (scripts/factor_ceiling.py), copied into
    the tree, where every later probe record reads it (`<factor>_frac`: docs/factor_ceiling.md)."""
    out = chain.work / "ceiling"
    budget = ["--max-minutes", minutes_left(chain)] if chain.deadline is not None else []
    run_command("ceiling", [sys.executable, REPO / "scripts" / "factor_ceiling.py", "--tree", chain.tree,
                            "--out", out, "--steps", str(chain.settings.ceiling_steps), "--threads",
                            str(chain.threads), "--quiet", *budget, f"train.device={chain.device}"])
    if not json.loads((out / "ceiling_run.json").read_text()).get("complete"):
        raise BudgetSpent(f"[ceiling] stopped before its {chain.settings.ceiling_steps} steps: --max-minutes "
                          f"{chain.max_minutes:g} spent")
    copy_atomic(out / "ceiling.json", chain.tree / "ceiling.json")


def stage_inputs(chain: Chain, stage: str) -> List[str]:
    """The overrides that chain a stage to the exports before it."""
    audio2lip = chain.export("audio2lip") / "Audio2Lip.pt"
    stage1_init = [] if "stage0" in chain.skip else ["model.init=pretrained",
                                                     f"model.init_path={chain.export('stage0') / 'model'}"]
    return {
        "stage0": [],  # from scratch (the config's model.init), decoder flows at zero (model.flow_init)
        "stage1": stage1_init,
        "stage2": [f"model.init_path={chain.run_dir('stage1')}"],
        "syncnet": [],
        "audio2lip": [f"model.generator={chain.run_dir('stage1')}",
                      f"model.syncnet={chain.export('syncnet') / 'model'}"],
        "pose_flow": [f"model.audio2lip={audio2lip}"],
        "audio2exp": [f"model.audio2lip={audio2lip}"],
    }[stage]


def probe_overrides(chain: Chain, stage: str) -> List[str]:
    if stage not in GENERATOR_STAGES or chain.probe_every <= 0:
        return []
    return [f"train.probe_every={chain.probe_every}", *chain.settings.probe]


def stage_command(chain: Chain, stage: str) -> list:
    cmd = [sys.executable, "-m", "edtalk.cli", "train", "--config", chain.config(stage),
           f"data.root={chain.tree}", f"run.dir={chain.run_dir(stage)}", f"train.max_steps={chain.steps[stage]}",
           f"train.threads={chain.threads}", f"train.device={chain.device}", "run.progress=false",
           *stage_inputs(chain, stage), *chain.settings.overrides.get(stage, ()), *probe_overrides(chain, stage),
           *chain.overrides.get(stage, [])]
    if chain.deadline is not None:
        cmd.append(f"train.max_minutes={minutes_left(chain)}")
    return cmd


def train_stage(chain: Chain, stage: str) -> None:
    run_command(stage, stage_command(chain, stage))


def motion_cached(chain: Chain) -> Optional[Path]:
    from edtalk.data import layout
    from edtalk.train.motion import motion_path

    if not chain.tree.is_dir():
        return None
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
    """training.json: what made OUT/ (every command's settings, the gate's verdict)."""
    gate = json.loads(chain.gate_file.read_text()) if chain.gate_file.is_file() else None
    return {"preset": chain.preset, "order": [p for p in PHASES if p not in chain.skip],
            "speakers": chain.speakers, "frames": chain.frames, "seed": chain.seed,
            "synthtalk_args": [str(a) for a in synthtalk_args(chain)],
            "configs": {s: str(chain.config(s).relative_to(REPO)) for s in TRAINED_STAGES if s not in chain.skip},
            "steps": {s: n for s, n in chain.steps.items() if s not in chain.skip},
            "overrides": {s: [*stage_inputs(chain, s), *chain.settings.overrides.get(s, ()), *probe_overrides(chain, s),
                              *chain.overrides.get(s, [])] for s in TRAINED_STAGES if s not in chain.skip},
            "gate": None if gate is None else {k: gate[k] for k in ("wa_expression_mean_r2", "threshold", "passed")},
            "device": chain.device, "work": str(chain.work)}


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
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False))
    os.replace(tmp, path)


def finite(value) -> Optional[float]:
    """A float for JSON: NaN/inf → None."""
    value = float(value)
    return value if math.isfinite(value) else None


# ----------------------------------------------------------------------------- the gate


def probe_data(chain: Chain):
    """The held-out clips every generator probe of the chain reads (the trainer's probe settings)."""
    from edtalk.eval.probes import load_probe_data

    p = chain.probe_settings()
    return load_probe_data(chain.tree, "test", max_clips=int(p["probe.max_clips"]), frames=int(p["probe.frames"]),
                           seed=0)


def measure_gate(chain: Chain) -> dict:
    """Held-out weight probes of the stage-1 export, with wa → each expression factor picked out."""
    import numpy as np
    import torch

    from edtalk import EDTalk
    from edtalk.eval.probes import extract_features, weight_probes

    torch.set_num_threads(chain.threads)
    model = EDTalk.from_pretrained(chain.export("stage1") / "model").eval()
    data = probe_data(chain)
    truth, groups = data.stacked_truth()
    values = weight_probes(extract_features(model, data), truth, groups)
    wa = {f: finite(values[f"wa_{f}_r2"]) for f in EXPRESSION_FACTORS}
    known = [v for v in wa.values() if v is not None]
    return {"model": str(latest_export_checkpoint(chain, "stage1")), "split": "test (held-out speakers)",
            "clips": len(data.names), "speakers": len(set(data.speakers)), "frames": int(len(groups)),
            "wa_expression_r2": wa, "wa_expression_mean_r2": finite(np.mean(known)) if known else None,
            "threshold": chain.gate_threshold, "passed": None,
            "probes": {k: finite(v) for k, v in values.items()}}


def gate_passed(mean: Optional[float], threshold: float) -> bool:
    return mean is not None and mean >= threshold


def gate_measured(chain: Chain) -> Optional[Path]:
    """WORK/gate.json, when it measured the current stage-1 export."""
    if not chain.gate_file.is_file():
        return None
    try:
        model = json.loads(chain.gate_file.read_text()).get("model")
    except json.JSONDecodeError:
        return None
    return chain.gate_file if model == str(latest_export_checkpoint(chain, "stage1")) else None


def run_gate(chain: Chain) -> None:
    result = measure_gate(chain)
    result["passed"] = gate_passed(result["wa_expression_mean_r2"], chain.gate_threshold)
    write_json_atomic(chain.gate_file, result)


def gate_verdict(chain: Chain) -> None:
    """Print what the gate found; below the threshold, a WARNING line (--strict-gate: one error line)."""
    result = json.loads(chain.gate_file.read_text())
    mean, threshold = result["wa_expression_mean_r2"], chain.gate_threshold
    passed = gate_passed(mean, threshold)
    if result.get("threshold") != threshold or result.get("passed") != passed:
        result.update(threshold=threshold, passed=passed)  # the verdict of this run's --gate-threshold
        write_json_atomic(chain.gate_file, result)
    shown = ", ".join(f"{f} {short_number(v)}" for f, v in result["wa_expression_r2"].items())
    print(f"[gate] stage-1 wa → expression, held-out R²: {shown}; mean {short_number(mean)} "
          f"(threshold {threshold:g})", flush=True)
    if passed:
        print("[gate] passed: the stage-1 encoder's wa reads expression", flush=True)
        return
    why = (f"mean R² {short_number(mean)} < {threshold:g}" if mean is not None
           else "no expression factor varies on the held-out clips")
    message = (f"the stage-1 encoder's wa reads no expression on held-out speakers ({why}; {chain.gate_file}), "
               "so stage 2 cannot learn expression from it")
    if chain.strict_gate:
        raise EDTalkError(f"gate: {message}; stopped before stage 2 (--strict-gate)")
    print(f"[gate] WARNING: {message}; going on (--strict-gate stops here)", flush=True)


# ----------------------------------------------------------------------------- held-out probes


PROBE_KEYS = ("probe.max_clips", "probe.frames", "probe.triples")


def recorded_probe_settings(chain: Chain, stage: str) -> Dict[str, str]:
    """The probe.* settings a generator run recorded its probes.jsonl with (its dumped config)."""
    from omegaconf import OmegaConf

    config = chain.run_dir(stage) / "config.yaml"
    cfg = OmegaConf.load(config) if config.is_file() else OmegaConf.create({})
    return {k: str(OmegaConf.select(cfg, k)) for k in PROBE_KEYS}


def generator_probe(chain: Chain, stage: str) -> dict:
    """First and last held-out probe records of a generator run (its probes.jsonl: step 0 = the state it
    started from). A run without records, or one that recorded them with other probe.* settings than
    the chain's (a preset changed after it trained), is probed now: see reprobe_generator."""
    from edtalk.eval.probes import read_probe_records

    records = read_probe_records(chain.run_dir(stage))
    wanted = {k: chain.probe_settings()[k] for k in PROBE_KEYS}
    recorded = recorded_probe_settings(chain, stage)
    if records and recorded == wanted:
        strip = lambda r: {k.split("/", 1)[1]: v for k, v in r.items() if k.startswith("probe/")}  # noqa: E731
        return {"steps": [records[0]["step"], records[-1]["step"]], "before": strip(records[0]),
                "after": strip(records[-1])}
    found = reprobe_generator(chain, stage)
    if records:
        found["note"] = f"measured again: the run recorded its probes with {recorded}, the chain's probe is {wanted}"
    return found


def reprobe_generator(chain: Chain, stage: str) -> dict:
    """The chain's held-out probe of the state a generator run started from (its stage's models built
    from the run's dumped config, seeded as the trainer seeds them: the step-0 model) and of its export."""
    import torch

    from edtalk import EDTalk
    from edtalk.eval.probes import TrainingProbe
    from edtalk.train.config import load_train_config
    from edtalk.train.stage import get_stage
    from edtalk.train.trainer import seed_everything

    torch.set_num_threads(chain.threads)
    p = chain.probe_settings()
    probe = TrainingProbe(chain.tree, every=0, max_clips=int(p["probe.max_clips"]), frames=int(p["probe.frames"]),
                          triples=int(p["probe.triples"]))
    read = lambda model, step: {k.split("/", 1)[1]: finite(v) for k, v in probe(model, step).items()}  # noqa: E731
    config = chain.run_dir(stage) / "config.yaml"
    before = None
    if config.is_file():
        cfg = load_train_config(str(config))
        seed_everything(int(cfg.seed))
        before = read(get_stage(str(cfg.stage))(cfg, torch.device("cpu")).build_models()["gen"], 0)
    step = trained_step(chain, stage)
    return {"steps": [0 if before else None, step], "before": before,
            "after": read(EDTalk.from_pretrained(chain.export(stage) / "model"), step)}


def probe_stage2_bases(chain: Chain) -> dict:
    """Stage 2 must leave the mouth and pose spaces alone: its bases' mouth/pose columns bit-identical
    to stage 1's, and the held-out mouth/pose probes unchanged."""
    import torch

    from edtalk import EDTalk
    from edtalk.train.stages.stage2 import add_expression_branch

    stage1 = EDTalk.from_pretrained(chain.export("stage1") / "model").eval()
    stage2 = EDTalk.from_pretrained(chain.export("stage2") / "model").eval()
    with torch.no_grad():
        lip_pose = stage1.bases().shape[1]
        kept = bool(torch.equal(stage2.bases()[:, :lip_pose], add_expression_branch(stage1).bases()[:, :lip_pose]))
    return {"bases_bit_identical": kept}


def presets_probe(chain: Chain) -> dict:
    """Do the presets move the face as the emotions do?  Held-out identities (the first frame of each probe
    clip) rendered with the happy and the sad preset as α_e (own mouth and pose), the factor net reading
    their expression; `happy_sad_ratio` = the projection of the outputs' mean happy − sad difference on
    the data's (level-3 held-out clips) over that difference's length² (1 = as large and as directed as
    the data's; target ≥ 0.5; < 0 points the other way)."""
    import numpy as np
    import torch

    from edtalk import EDTalk
    from edtalk.data import layout
    from edtalk.data.synthtalk import load_factors
    from edtalk.eval.probes import FactorReader

    model = EDTalk.from_pretrained(chain.export("stage2") / "model").eval()
    presets = {e: torch.from_numpy(np.load(chain.presets_dir / f"{e}.npy")).float().reshape(1, -1)
               for e in ("happy", "sad")}
    data = probe_data(chain)
    reader = FactorReader.load(chain.probe_settings().get("probe.factor_net"))
    read = {e: [] for e in presets}
    with torch.no_grad():
        for i in range(len(data.frames)):
            source = data.images(i, model.config.size)[:1]
            wa, feats = model.encode(source)
            own = model.motion_weights(latent=wa, parts=("mouth", "pose"))
            for emotion, exp in presets.items():
                out = model.render(wa, feats, own["mouth"], own["pose"], exp).clamp(-1, 1)
                read[emotion].append(reader(out)["expression"][0])
    out_diff = np.mean(read["happy"], 0) - np.mean(read["sad"], 0)
    names = layout.read_split(chain.tree, "test")
    by_emotion = {}
    for e in ("happy", "sad"):
        clips = [n for n in names if layout.parse_mead_name(n).emotion == e]
        strong = [n for n in clips if layout.parse_mead_name(n).level == 3] or clips
        if strong:
            by_emotion[e] = load_factors(chain.tree, names=strong)[0]["expression"].mean(0)
    if len(by_emotion) < 2:
        return {"error": "the held-out split has no happy or no sad clips"}
    data_diff = by_emotion["happy"] - by_emotion["sad"]
    norm2 = float(data_diff @ data_diff)
    return {"sources": len(data.frames), "happy_sad_output": [float(x) for x in out_diff],
            "happy_sad_data": [float(x) for x in data_diff],
            "happy_sad_ratio": finite(float(out_diff @ data_diff) / norm2) if norm2 > 0 else None,
            "happy_sad_cosine": finite(float(out_diff @ data_diff) / math.sqrt(norm2 * float(out_diff @ out_diff)))
            if norm2 > 0 and float(out_diff @ out_diff) > 0 else None}


def tree_reader_dir(chain: Chain) -> Path:
    """The factor net the ceiling phase trained on this tree's train split."""
    return chain.work / "ceiling" / "run" / "export" / "synthtalk_factor_net"


def tree_reader_probe(chain: Chain) -> dict:
    """Cross-driving of the full model read by the tree's own factor net, beside the trainer probe's shipped
    one: a reader trained on another tree can see less pose than a target asks (compare `reader_pose_coef`)."""
    import torch

    from edtalk import EDTalk
    from edtalk.eval.probes import CROSS_SPEAKERS, FactorReader, cross_driving_probe

    net = tree_reader_dir(chain)
    if not net.is_dir():
        raise EDTalkError(f"no factor net of this tree at {net} (the ceiling phase trains it)")
    data = probe_data(chain)
    speakers = len(set(data.speakers))
    if speakers < CROSS_SPEAKERS:  # as the trainer's probe: a small split is not an error
        return {"reader": str(net),
                "left_out": f"the test split has {speakers} speaker(s), cross-driving needs {CROSS_SPEAKERS}"}
    model = EDTalk.from_pretrained(chain.export("stage2") / "model").eval()
    p = chain.probe_settings()
    with torch.no_grad():
        values = cross_driving_probe(model, data, FactorReader.load(net), int(p["probe.triples"]), int(p["probe.frames"]))
    return {"reader": str(net), **{k: finite(v) for k, v in values.items()}}


def untrained_like(run: Path, build: Callable):
    """A run's architecture with random weights, seeded like the run."""
    import torch

    from edtalk.train.config import load_train_config

    cfg = load_train_config(str(run / "config.yaml"))
    torch.manual_seed(int(cfg.seed))
    return build(cfg)


def probe_syncnet(chain: Chain) -> dict:
    """How often the expert scores a held-out window's in-sync audio above the ±5-frame shifted audio."""
    from edtalk.data.audio_datasets import SyncNetPairs
    from edtalk.networks.syncnet import SyncNet, load_syncnet
    from edtalk.train.stages.syncnet import sync_preference

    held_out = SyncNetPairs(chain.tree, split="test")
    trained = load_syncnet(chain.export("syncnet") / "model")
    base = untrained_like(chain.run_dir("syncnet"), lambda cfg: SyncNet(trained.config))
    found = sync_preference(trained, held_out)
    return {"preferred": found["preferred"], "comparisons": found["comparisons"],
            "untrained": sync_preference(base, held_out)["preferred"]}


def probe_audio2lip(chain: Chain) -> dict:
    """Least-squares probe (with bias, fitted on the train speakers) from the predicted mouth weights to
    the true mouth opening, R² on the held-out speakers: trained, untrained, and the cached targets
    (the stage-1 α_m the model is trained towards)."""
    import numpy as np
    import torch

    from edtalk.config import Audio2LipConfig
    from edtalk.data import layout
    from edtalk.data.audio_datasets import clip_mels
    from edtalk.data.synthtalk import load_factors
    from edtalk.networks.audio2lip import Audio2Lip
    from edtalk.train.motion import load_motion

    def opening(names):
        return load_factors(chain.tree, names=names)[0]["mouth"][:, 0]

    @torch.no_grad()
    def predicted(model, names):
        alpha = np.concatenate([model(torch.from_numpy(clip_mels(chain.tree, n))[:, None]).numpy() for n in names])
        truth = opening(names)
        n = min(len(alpha), len(truth))
        return alpha[:n], truth[:n]

    def cached(names):
        alpha, truth = np.concatenate([load_motion(chain.tree, n, "mouth") for n in names]), opening(names)
        n = min(len(alpha), len(truth))
        return alpha[:n], truth[:n]

    def r2(features):
        (x_tr, y_tr), (x_te, y_te) = (features(layout.read_split(chain.tree, s)) for s in ("train", "test"))
        add = lambda x: np.hstack([x, np.ones((len(x), 1))])  # noqa: E731
        w, *_ = np.linalg.lstsq(add(x_tr), y_tr, rcond=None)
        res = y_te - add(x_te) @ w
        return finite(1 - (res ** 2).sum() / ((y_te - y_te.mean()) ** 2).sum())

    a2l = Audio2Lip.from_official(chain.export("audio2lip") / "Audio2Lip.pt").eval()
    base = untrained_like(chain.run_dir("audio2lip"),
                          lambda cfg: Audio2Lip(Audio2LipConfig(channels=tuple(cfg.model.audio_channels)))).eval()
    speech = lambda model: lambda n: model(torch.from_numpy(clip_mels(chain.tree, n))[:, None])  # noqa: E731
    rendered = rendered_mouth(chain, {"trained": speech(a2l), "untrained": speech(base),
                                      "targets": lambda n: torch.from_numpy(load_motion(chain.tree, n, "mouth"))})
    return {"mouth_open_probe_r2": {"trained": r2(lambda n: predicted(a2l, n)),
                                    "untrained": r2(lambda n: predicted(base, n)), "targets": r2(cached)},
            "rendered_mouth": {"reader": str(mouth_reader_dir(chain) or "shipped factor net"), **rendered}}


def mouth_reader_dir(chain: Chain) -> Optional[Path]:
    """The tree's own factor net when the ceiling phase trained one (None: the shipped net reads)."""
    net = tree_reader_dir(chain)
    return net if net.is_dir() else None


def rendered_mouth(chain: Chain, drivers: Dict[str, Callable]) -> Dict[str, dict]:
    """The mouth as a user sees it, per driver: each held-out probe clip's first frame as the identity,
    mouth weights `driver(name)` [T,20], the clip's own cached α_p; the stage-1 generator renders, a
    factor net reads the mouth opening (the tree's own, else the shipped one). {driver: {r, coef}}: Pearson
    r and regression coefficient of the read opening on the true one, each clip centred."""
    import numpy as np
    import torch

    from edtalk.eval.probes import FactorReader
    from edtalk.train.motion import load_generator, load_motion

    reader = FactorReader.load(mouth_reader_dir(chain))
    gen = load_generator(chain.export("stage1") / "model").eval()
    data = probe_data(chain)
    clips = []  # per clip, shared by every driver: its name, cached α_p, true opening, encoded first frame
    with torch.no_grad():
        for i, name in enumerate(data.names):
            clips.append((name, torch.from_numpy(load_motion(chain.tree, name, "pose")).float(),
                          data.truth[i]["mouth"][:, 0], gen.encode(data.images(i, gen.config.size)[:1])))
    found = {}
    for driver, alphas in drivers.items():
        read, true = [], []
        for name, pose, truth, (wa, feats) in clips:
            with torch.no_grad():
                mouth = alphas(name).float()
                k = min(len(mouth), len(pose), len(truth))
                frames = gen.render(wa.expand(k, -1), [f.expand(k, -1, -1, -1) for f in feats], mouth=mouth[:k],
                                    pose=pose[:k])
            opening = reader(frames.clamp(-1, 1))["mouth"][:, 0]
            read.append(opening - opening.mean())
            true.append(truth[:k] - truth[:k].mean())
        x, y = np.concatenate(read), np.concatenate(true)
        found[driver] = {"r": finite(np.corrcoef(x, y)[0, 1]), "coef": finite((x * y).sum() / (y * y).sum())}
    return found


def _velocity_spectrum(seqs):
    """Mean power spectrum (over clips and dims) of frame-to-frame pose differences."""
    import numpy as np

    n = min(len(s) for s in seqs) - 1
    spec = [np.abs(np.fft.rfft(np.diff(s[: n + 1], axis=0), axis=0)) ** 2 for s in seqs]
    return np.fft.rfftfreq(n, d=1 / 25), np.mean(spec, axis=(0, 2))


def probe_pose_flow(chain: Chain) -> dict:
    """Held-out NLL per frame (trained vs the untrained flow), sampled (τ = 0.7) per-dimension mean and
    std against the held-out α_p (target: within 20 %), and the pose-velocity spectrum (WORK/probe/)."""
    import numpy as np
    import torch

    from edtalk.data import layout
    from edtalk.data.sequence_datasets import clip_table
    from edtalk.networks.pose_flow import load_pose_flow
    from edtalk.train.config import load_train_config
    from edtalk.train.stages.pose_flow import PoseFlowStage, clip_nll

    run = chain.run_dir("pose_flow")
    flow, a2l = load_pose_flow(run)
    energy = flow.config.energy
    cfg = load_train_config(str(chain.config("pose_flow")), [f"data.root={chain.tree}",
                                                             f"model.audio2lip={run / 'export'}",
                                                             f"model.flow.energy={energy}"])
    stage = PoseFlowStage(cfg, torch.device("cpu"))
    stage.audio2lip = a2l
    stage._table = clip_table(chain.tree, layout.read_split(chain.tree, "train"), a2l, "pose", energy=energy)
    torch.manual_seed(int(cfg.seed))
    baseline = stage.build_models()["flow"].eval()  # the untrained flow, same pose statistics
    test = clip_table(chain.tree, layout.read_split(chain.tree, "test"), a2l, "pose", energy=energy)
    report = {"held_out_clips": len(test)}
    for name, model in (("untrained", baseline), ("trained", flow)):
        report[f"nll_{name}"] = float(np.mean([clip_nll(model, t["motion"], t["audio"]) for t in test.values()]))
    samples, base_samples, truth = [], [], []
    for i, t in enumerate(test.values()):
        samples.append(flow.sample(t["audio"][None], t["motion"][:1], 0.7,
                                   generator=torch.Generator().manual_seed(i))[0].numpy())
        base_samples.append(baseline.sample(t["audio"][None], t["motion"][:1], 0.7,
                                            generator=torch.Generator().manual_seed(i))[0].numpy())
        truth.append(t["motion"].numpy())
    gt, sm, bs = (np.concatenate(x) for x in (truth, samples, base_samples))
    for name, s in (("trained", sm), ("untrained", bs)):
        report[f"mean_err_over_std_{name}"] = (np.abs(s.mean(0) - gt.mean(0)) / gt.std(0)).round(3).tolist()
        report[f"std_ratio_{name}"] = (s.std(0) / gt.std(0)).round(3).tolist()
        report[f"within_20pct_{name}"] = bool(np.all(np.abs(s.std(0) / gt.std(0) - 1) <= 0.2)
                                             and np.all(np.abs(s.mean(0) - gt.mean(0)) <= 0.2 * gt.std(0)))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, seqs in (("held-out α_p", truth), ("flow τ=0.7", samples), ("untrained flow", base_samples)):
        f, p = _velocity_spectrum(seqs)
        ax.semilogy(f[1:], p[1:], label=label)
    ax.set_xlabel("Hz"), ax.set_ylabel("power of Δα_p"), ax.legend(), ax.set_title("pose velocity spectrum")
    png = chain.probe_dir / "pose_velocity_spectrum.png"
    fig.tight_layout(), fig.savefig(png, dpi=100)
    plt.close(fig)
    report["spectrum_png"] = str(png)
    return report


def probe_audio2exp(chain: Chain) -> dict:
    """8-way emotion accuracy on held-out speakers from audio, from (synthetic) text and from both, trained
    vs untrained (target ≥ 0.8), the α_e MSE, and the audio accuracy per intensity level."""
    import torch

    from edtalk.data import layout
    from edtalk.networks.expression_predictor import ExpressionPredictor, load_expression_predictor
    from edtalk.text_emotion import TextFeatures
    from edtalk.train.stages.audio2exp import clip_features, transcripts_for

    net, a2l, encoder = load_expression_predictor(chain.run_dir("audio2exp"))
    names = layout.read_split(chain.tree, "test")
    audio, tfeat, exp, labels = clip_features(chain.tree, names, a2l, TextFeatures(encoder),
                                              transcripts_for(names, "synthetic"))
    torch.manual_seed(0)
    baseline = ExpressionPredictor(net.config).eval()
    baseline.load_state_dict({**baseline.state_dict(), "audio_mean": net.audio_mean, "audio_std": net.audio_std})
    report = {"held_out_clips": len(names), "chance": 1 / 8}
    with torch.no_grad():
        for name, model in (("untrained", baseline), ("trained", net)):
            for mod, kw in (("audio", {"audio": audio}), ("text", {"text": tfeat}),
                            ("both", {"audio": audio, "text": tfeat})):
                e, logits = model(**kw)
                hits = logits.argmax(1) == labels
                report[f"acc_{mod}_{name}"] = round(float(hits.float().mean()), 3)
                report[f"exp_mse_{mod}_{name}"] = round(float(((e - exp) ** 2).mean()), 4)
                if (mod, name) == ("audio", "trained"):
                    audio_hits = hits
        levels = torch.tensor([layout.parse_mead_name(n).level for n in names])
        report["acc_audio_trained_by_level"] = {int(lv): round(float(audio_hits[levels == lv].float().mean()), 3)
                                                for lv in levels.unique()}
    return report


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


CURVE_KEYS = ("mouth_open_r2", "yaw_r2", "roll_r2", "tx_r2", "exp_own_r2", "cross_mouth_r", "cross_pose_coef")


def curves_png(chain: Chain, stage: str) -> Optional[str]:
    """Loss curves (TensorBoard) and held-out probe curves (probes.jsonl) of a generator run."""
    from edtalk.eval.probes import read_probe_records

    run = chain.run_dir(stage)
    plt = pyplot()
    fig, (losses, probes) = plt.subplots(1, 2, figsize=(11, 3.4), dpi=90)
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(run / "tb"))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            if tag.startswith("loss/") and tag != "loss/g_total":
                points = events.Scalars(tag)
                losses.plot([e.step for e in points], [e.value for e in points], label=tag[5:], lw=1)
        losses.set_yscale("log")
    except ImportError:
        pass
    records = read_probe_records(run)
    wa_exp = [f"probe/wa_{f}_r2" for f in EXPRESSION_FACTORS]
    for key in CURVE_KEYS:
        if any(r.get(f"probe/{key}") is not None for r in records):
            probes.plot([r["step"] for r in records], [r.get(f"probe/{key}") for r in records], label=key, lw=1)
    if records and any(r.get(k) is not None for r in records for k in wa_exp):
        mean = [sum(r[k] for k in wa_exp if r.get(k) is not None) / max(1, sum(r.get(k) is not None for k in wa_exp))
                for r in records]
        probes.plot([r["step"] for r in records], mean, label="wa→expression (mean)", lw=1.5, ls="--")
    for ax, title in ((losses, f"{stage}: losses"), (probes, f"{stage}: held-out probes")):
        ax.set_xlabel("step"), ax.set_title(title), ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, ncol=2)
    probes.set_ylim(-0.5, 1.05)
    png = chain.probe_dir / f"{stage}_curves.png"
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return str(png)


@dataclass(frozen=True)
class CeilingShare:
    """A target stated as a share of the tree's ceiling: met when the measure's fraction of it reaches `share`
    (the R² alone cannot say, because each factor's ceiling differs)."""
    share: float


# (stage, key in its numbers, label, target text, target test) of probe.md: the disentanglement targets
TABLE_ROWS = (
    ("stage0", "wa_open_r2", "wa → mouth opening R²", "", None),
    ("stage0", "wa_yaw_r2", "wa → yaw R²", "", None),
    ("stage1", "mouth_open_r2", "α_m → mouth opening R²", "≥ 0.9× ceiling", CeilingShare(0.9)),
    ("stage1", "yaw_r2", "α_p → yaw R²", "≥ 0.8× ceiling", CeilingShare(0.8)),
    ("stage1", "roll_r2", "α_p → roll R²", "≥ 0.8× ceiling", CeilingShare(0.8)),
    ("stage1", "tx_r2", "α_p → tx R²", "≥ 0.8× ceiling", CeilingShare(0.8)),
    ("stage1", "leak_mouth", "mouth excess leak", "≤ 0.15", lambda v: v <= 0.15),
    ("stage1", "leak_pose", "pose excess leak", "≤ 0.15", lambda v: v <= 0.15),
    ("gate", "wa_expression_mean_r2", "wa → expression, mean R²", "", None),  # the run's --gate-threshold
    ("stage2", "exp_brow_raise_r2", "α_e → brow raise R²", "≥ 0.7× ceiling", CeilingShare(0.7)),
    ("stage2", "exp_eyelid_r2", "α_e → eyelid R²", "≥ 0.7× ceiling", CeilingShare(0.7)),
    ("stage2", "exp_cheek_r2", "α_e → cheek R²", "≥ 0.7× ceiling", CeilingShare(0.7)),
    ("stage2", "exp_corner_curve_r2", "α_e → mouth-corner curve R²", "≥ 0.7× ceiling", CeilingShare(0.7)),
    ("stage2", "cross_mouth_r", "cross-driving: mouth r", "≥ 0.8", lambda v: v >= 0.8),
    ("stage2", "cross_pose_coef", "cross-driving: pose coefficient", "≥ 0.7", lambda v: v >= 0.7),
    ("stage2", "cross_leak", "cross-driving: leak ratio", "≤ 0.2", lambda v: abs(v) <= 0.2),
    ("stage2", "self_mouth_r", "self-driven: mouth r (is the mouth drawn at all?)", "", None),
    ("stage2", "self_mouth_coef", "self-driven: mouth slope", "", None),
    ("stage2", "self_mouth_coef_closed", "self-driven from the most closed frame: mouth slope", "", None),
    ("stage2", "self_mouth_coef_open", "self-driven from the most open frame: mouth slope", "", None),
    ("stage2", "reader_mouth_coef", "the reader's slope on true frames (bound of the slopes)", "", None),
    ("stage2", "reader_pose_coef", "the reader's pose coefficient on true frames (its bound)", "", None),
    ("tree_reader", "cross_mouth_r", "cross-driving, the tree's own reader: mouth r", "≥ 0.8", lambda v: v >= 0.8),
    ("tree_reader", "cross_pose_coef", "cross-driving, the tree's own reader: pose coefficient", "≥ 0.7",
     lambda v: v >= 0.7),
    ("tree_reader", "cross_leak", "cross-driving, the tree's own reader: leak ratio", "≤ 0.2", lambda v: abs(v) <= 0.2),
    ("tree_reader", "reader_pose_coef", "the tree's reader: pose coefficient on true frames (its bound)", "", None),
    ("stage2_bases", "mouth_pose_r2_unchanged", "stage 2 leaves the mouth and pose R² unchanged", "yes",
     lambda v: v is True),
    ("presets", "happy_sad_ratio", "presets: happy − sad, share of the data's", "≥ 0.5", lambda v: v >= 0.5),
    ("syncnet", "preferred", "SyncNet: in sync > ±5 shift", "≥ 0.9", lambda v: v >= 0.9),
    ("audio2lip", "mouth_open_probe_r2", "audio-to-lip: mouth-open probe R²", "≥ 0.7", lambda v: v >= 0.7),
    ("audio2lip", "rendered_mouth.r", "audio-to-lip: rendered mouth opening r (speech → frames → factor net)", "",
     None),
    ("pose_flow", "nll_trained", "pose flow: held-out NLL per frame", "< untrained", None),
    ("audio2exp", "acc_audio_trained", "audio2exp: emotion accuracy, audio", "≥ 0.8", lambda v: v >= 0.8),
    ("audio2exp", "acc_text_trained", "audio2exp: emotion accuracy, text", "≥ 0.8", lambda v: v >= 0.8),
)


def table_values(stage: str, key: str, numbers: dict) -> Tuple[Optional[float], Optional[float]]:
    """(before, after) of one row: generator stages keep both, the others name them in their keys."""
    if "after" in numbers:
        before = (numbers.get("before") or {}).get(key)
        return before, numbers["after"].get(key)
    if stage == "syncnet":
        return numbers.get("untrained"), numbers.get("preferred")
    if stage == "audio2lip":
        group, _, field_name = key.partition(".")
        values = numbers.get(group) or {}
        if field_name:  # rendered_mouth.r: {"trained": {"r": …}, "untrained": {"r": …}}
            return ((values.get("untrained") or {}).get(field_name), (values.get("trained") or {}).get(field_name))
        return values.get("untrained"), values.get("trained")
    if key.endswith("_trained"):
        return numbers.get(key[: -len("_trained")] + "_untrained"), numbers.get(key)
    return None, numbers.get(key)


def target_met(check, value: Optional[float], frac: Optional[float]) -> str:
    """"yes"/"no" for probe.md's met column; empty where there is no target or nothing to judge it by."""
    if isinstance(check, CeilingShare):
        return "" if frac is None else ("yes" if frac >= check.share else "no")
    return "" if check is None or value is None else ("yes" if check(value) else "no")


def markdown_table(stages: dict, gate_threshold: float = GATE_THRESHOLD) -> str:
    lines = ["| stage | held-out measure | before | after | target | met |", "|---|---|---|---|---|---|"]
    for stage, key, label, target, check in TABLE_ROWS:
        if stage == "gate":
            target, check = f"≥ {gate_threshold:g}", (lambda v: v >= gate_threshold)
        numbers = stages.get(stage)
        if not isinstance(numbers, dict) or "error" in numbers:
            continue
        before, after = table_values(stage, key, numbers)
        if after is None and before is None:
            continue
        frac = (numbers.get("after") or {}).get(key[:-3] + "_frac") if key.endswith("_r2") else None
        shown = short_number(after) + (f" ({short_number(frac)} of ceiling)" if frac is not None else "")
        met = target_met(check, after, frac)
        lines.append(f"| {stage} | {label} | {short_number(before)} | {shown} | {target} | {met} |")
    note = ("before: stage 0 untrained, stage 1 as stage 0 left it, stage 2 with its new branch; "
            "the other stages untrained (same architecture and seed).  Ceiling fractions appear when the "
            "tree has a ceiling.json (scripts/factor_ceiling.py --into-tree).")
    notes = [f"- {stage}: {numbers['note']}" for stage, numbers in stages.items()
             if isinstance(numbers, dict) and numbers.get("note")]
    return "\n".join(lines) + "\n\n" + note + "\n" + "".join(f"\n{n}" for n in notes) + ("\n" if notes else "")


def probed(chain: Chain) -> Optional[Path]:
    path = chain.out / "probe.json"
    return path if path.is_file() and (chain.out / "probe.md").is_file() else None


def run_probes(chain: Chain) -> None:
    """Each stage's held-out probe; a probe that fails is reported, not fatal (the model is collected)."""
    import torch

    torch.set_num_threads(chain.threads)
    chain.probe_dir.mkdir(parents=True, exist_ok=True)
    probes: Dict[str, Callable[[], dict]] = {
        stage: (lambda s=stage: generator_probe(chain, s)) for stage in GENERATOR_STAGES if stage not in chain.skip}
    probes.update({
        "gate": lambda: json.loads(chain.gate_file.read_text()),
        "stage2_bases": lambda: probe_stage2_bases(chain), "presets": lambda: presets_probe(chain),
        "tree_reader": lambda: tree_reader_probe(chain),
        "syncnet": lambda: probe_syncnet(chain), "audio2lip": lambda: probe_audio2lip(chain),
        "pose_flow": lambda: probe_pose_flow(chain), "audio2exp": lambda: probe_audio2exp(chain)})
    for skipped, probe_name in (("gate", "gate"), ("ceiling", "tree_reader")):  # nothing to read them from
        if skipped in chain.skip:
            del probes[probe_name]
    numbers: Dict[str, dict] = {}
    for stage, probe in probes.items():
        try:
            numbers[stage] = probe()
        except Exception as exc:  # a diagnostic only: keep the other numbers
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            numbers[stage] = {"error": f"{type(exc).__name__}: {first}"}
            print(f"[probe] {stage}: failed ({numbers[stage]['error']})", flush=True)
    if "stage2_bases" in numbers and "after" in numbers.get("stage2", {}) and "after" in numbers.get("stage1", {}):
        keys = ["mouth_open_r2"] + [f"{c}_r2" for c in ("yaw", "pitch", "roll", "tx", "ty", "scale")]
        s1, s2 = numbers["stage1"]["after"], numbers["stage2"]["after"]
        numbers["stage2_bases"]["mouth_pose_r2_unchanged"] = all(
            s1.get(k) is None and s2.get(k) is None or (s1.get(k) is not None and s2.get(k) is not None
                                                       and abs(s1[k] - s2[k]) < 1e-3) for k in keys)
    for stage in GENERATOR_STAGES:
        if stage not in chain.skip:
            try:
                curves_png(chain, stage)
            except Exception as exc:  # a picture only
                print(f"[probe] {stage} curves: failed ({type(exc).__name__})", flush=True)
    numbers = json_safe(numbers)
    write_json_atomic(chain.out / "probe.json", {"split": "test (held-out speakers)", "preset": chain.preset,
                                                 "stages": numbers})
    (chain.out / "probe.md").write_text(markdown_table(numbers, chain.gate_threshold))


def json_safe(value):
    """Numbers as plain floats and NaN/inf as None, through dicts and lists (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    try:
        return finite(value)
    except (TypeError, ValueError):
        return str(value)


def print_summary(chain: Chain) -> None:
    path = chain.out / "probe.md"
    if path.is_file():
        print(f"held-out probes ({chain.out / 'probe.json'}):\n{path.read_text()}", flush=True)


def short_number(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return "[" + " ".join(short_number(v) for v in value) + "]"
    return str(value)


# ----------------------------------------------------------------------------- command line


def phase_list(text: str, flag: str, allowed: Sequence[str] = PHASES) -> Tuple[str, ...]:
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    if not names or any(p not in allowed for p in names):
        raise EDTalkError(f"{flag} {text!r}: each phase must be one of {', '.join(allowed)}")
    return names


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="presets (estimated CPU time: one thread of a shared 2-core machine):\n"
                                       + presets_table())
    p.add_argument("--preset", choices=list(PRESETS), default="full",
                   help="tiny (CI), proof (the held-out proof run) or full (the bundled model; default)")
    p.add_argument("--work", default="data/synthtalk_model",
                   help="data and run folders (default: data/synthtalk_model)")
    p.add_argument("--out", default=None, help="the final model folder (default: WORK/model)")
    p.add_argument("--speakers", type=int, default=None, help="SynthTalk speakers, a quarter held out (default: the "
                   "preset's: " + ", ".join(f"{n} {s.speakers}" for n, s in PRESETS.items()) + ")")
    p.add_argument("--frames", default=None, help="clip length: N or LO-HI frames (default: the preset's: "
                   + ", ".join(f"{n} {s.frames}" for n, s in PRESETS.items()) + ")")
    p.add_argument("--seed", type=int, default=None, help="SynthTalk seed (default: the preset's: "
                   + ", ".join(f"{n} {s.seed}" for n, s in PRESETS.items()) + ")")
    for stage in TRAINED_STAGES:
        p.add_argument(f"--{stage.replace('_', '-')}-steps", type=int, default=None, dest=f"{stage}_steps",
                       help="training steps (default: the preset's: "
                            + ", ".join(f"{n} {s.steps[stage]}" for n, s in PRESETS.items()) + ")")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="train.device of every run, and extract-motion/make-presets (default auto)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process: train.threads (default 1)")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="wall-clock budget of this invocation: the running stage stops at it with a checkpoint "
                        f"(train.max_minutes) and the chain exits with code {BUDGET_EXIT}; rerun to continue")
    p.add_argument("--probe-every", type=int, default=None,
                   help="train.probe_every of stages 0-2 (held-out probe curves in each run folder; 0 = off; "
                        "default: the preset's: " + ", ".join(f"{n} {s.probe_every}" for n, s in PRESETS.items()) + ")")
    p.add_argument("--set", action="append", default=[], metavar="STAGE:key=value",
                   help=f"an extra config override of one stage ({', '.join(TRAINED_STAGES)}); repeatable")
    p.add_argument("--until", default=None, metavar="PHASE", help="run the phases up to PHASE, then stop")
    p.add_argument("--only", default=None, metavar="PHASE[,PHASE]",
                   help="run only these phases (the phases they read must be finished)")
    p.add_argument("--skip", default=None, metavar="PHASE[,PHASE]",
                   help=f"leave out {', '.join(SKIPPABLE)} (--skip stage0: stage 1 starts from scratch)")
    p.add_argument("--no-probe", action="store_true", help="the same as --skip probe")
    p.add_argument("--strict-gate", action="store_true",
                   help="stop before stage 2 (one error line, exit code 2) when the gate fails")
    p.add_argument("--gate-threshold", type=float, default=GATE_THRESHOLD,
                   help=f"the gate's least mean held-out R² of wa → expression (default {GATE_THRESHOLD})")
    p.add_argument("--plan", action="store_true", help="print the phases with their commands' settings, steps and "
                   "estimated CPU minutes, then exit")
    return p.parse_args(argv)


def stage_overrides(items: List[str]) -> Dict[str, List[str]]:
    overrides: Dict[str, List[str]] = {}
    for item in items:
        stage, _, setting = item.partition(":")
        if stage not in TRAINED_STAGES or "=" not in setting:
            raise EDTalkError(f"--set {item!r}: expected STAGE:key=value with STAGE one of {', '.join(TRAINED_STAGES)}")
        overrides.setdefault(stage, []).append(setting)
    return overrides


def selected_phases(args: argparse.Namespace, skip: Tuple[str, ...]) -> Tuple[str, ...]:
    if args.only and (args.until or args.skip):
        raise EDTalkError("--only runs exactly the phases it names: leave out --until and --skip")
    if args.only:
        only = phase_list(args.only, "--only")
        return tuple(p for p in PHASES if p in only)
    phases = [p for p in PHASES if p not in skip]
    if args.until:
        until = phase_list(args.until, "--until")
        if len(until) != 1:
            raise EDTalkError(f"--until {args.until!r}: expected one phase")
        if until[0] in skip:
            raise EDTalkError(f"--until {until[0]}: that phase is skipped (--skip)")
        phases = phases[: phases.index(until[0]) + 1]
    return tuple(phases)


def chain_from_args(args: argparse.Namespace) -> Tuple[Chain, Tuple[str, ...]]:
    preset = PRESETS[args.preset]
    bad = [f"--{s.replace('_', '-')}-steps" for s in TRAINED_STAGES if getattr(args, f"{s}_steps") is not None
           and getattr(args, f"{s}_steps") < 1]
    if bad:
        raise EDTalkError(f"{bad[0]} must be at least 1")
    steps = {s: getattr(args, f"{s}_steps") or preset.steps[s] for s in TRAINED_STAGES}
    speakers = args.speakers if args.speakers is not None else preset.speakers
    if speakers < 2:
        raise EDTalkError("--speakers must be at least 2 (one to train on, one held out)")
    if args.threads < 1:
        raise EDTalkError("--threads must be at least 1")
    if not math.isfinite(args.max_minutes) or args.max_minutes < 0:
        raise EDTalkError("--max-minutes must be 0 (no budget) or more")
    if args.probe_every is not None and args.probe_every < 0:
        raise EDTalkError("--probe-every must be 0 (off) or more")
    if not math.isfinite(args.gate_threshold) or args.gate_threshold > 1:
        raise EDTalkError(f"--gate-threshold {args.gate_threshold:g}: an R² is at most 1, "
                          "so the gate could never pass")
    if args.device == "cuda" and not cuda_available():
        raise EDTalkError("--device cuda: no CUDA device is available (use --device cpu)")
    skip = phase_list(args.skip, "--skip", SKIPPABLE) if args.skip else ()
    if args.no_probe and "probe" not in skip:
        skip += ("probe",)
    phases = selected_phases(args, skip)
    work = Path(args.work).resolve()
    out = Path(args.out).resolve() if args.out else work / "model"
    for flag, path in (("--work", work), ("--out", out)):
        if path.exists() and not path.is_dir():
            raise EDTalkError(f"{flag} {path} exists and is not a folder")
    chain = Chain(args.preset, work, out, speakers, str(args.frames or preset.frames),
                  args.seed if args.seed is not None else preset.seed, steps, args.device, args.threads,
                  stage_overrides(args.set), preset.probe_every if args.probe_every is None else args.probe_every,
                  skip=skip, strict_gate=args.strict_gate, gate_threshold=args.gate_threshold,
                  max_minutes=args.max_minutes)
    return chain, phases


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolved_config(chain: Chain, stage: str):
    from edtalk.train.config import load_train_config

    try:
        return load_train_config(str(chain.config(stage)), [f"data.root={chain.tree}", *chain.settings.overrides.get(
            stage, ()), *probe_overrides(chain, stage), *chain.overrides.get(stage, [])])
    except EDTalkError as exc:
        raise EDTalkError(f"--set {stage}: {exc}") from None


def check_overrides(chain: Chain) -> None:
    """Resolve the configs with the --set overrides now (a typo fails before hours of training), and check
    that stage 1 can start from stage 0's export (one architecture)."""
    for stage in chain.overrides:
        resolved_config(chain, stage)
    if "stage0" not in chain.skip:
        arch = {s: {k: resolved_config(chain, s).model.get(k) for k in ("size", "latent_dim", "channels")}
                for s in ("stage0", "stage1")}
        if arch["stage0"] != arch["stage1"]:
            raise EDTalkError(f"stage 1 starts from stage 0's export, but their models differ: stage0 {arch['stage0']}"
                              f", stage1 {arch['stage1']} (set model.* alike for both)")


def check_work_matches(chain: Chain) -> None:
    """A work folder holds one SynthTalk tree: refuse to mix another preset's or size's tree into it."""
    marker = chain.work / "chain.json"
    settings = {"preset": chain.preset, "synthtalk_args": [str(a) for a in synthtalk_args(chain)]}
    if marker.is_file():
        before = json.loads(marker.read_text())
        if before != settings:
            raise EDTalkError(f"{chain.work} holds a tree made with {before}, not {settings}: use another --work "
                              "(or the same settings)")
        return
    chain.work.mkdir(parents=True, exist_ok=True)
    write_json_atomic(marker, settings)


def phase_output(chain: Chain, phase: str) -> Callable[[], Optional[Path]]:
    """The check that a phase is finished (its output path, else None)."""
    if phase in TRAINED_STAGES:
        return lambda: stage_export(chain, phase)
    return {"data": lambda: tree_ready(chain), "ceiling": lambda: ceiling_ready(chain),
            "gate": lambda: gate_measured(chain),
            "motion": lambda: motion_cached(chain), "presets": lambda: presets_written(chain),
            "collect": lambda: collected(chain), "probe": lambda: probed(chain)}[phase]


def check_inputs(chain: Chain, phases: Sequence[str]) -> None:
    """--only: every phase it runs must find what it reads finished (or run it first itself)."""
    for phase in phases:
        needs = [n for n in NEEDS[phase] if n not in chain.skip]
        if phase == "stage2" and chain.strict_gate and "gate" not in chain.skip:
            needs.append("gate")
        for need in needs:
            if need not in phases and phase_output(chain, need)() is None:
                raise EDTalkError(f"--only {phase}: it reads the output of {need}, which is not finished "
                                  f"(run --until {need} first)")


def training_phase(chain: Chain, stage: str, later: Sequence[str]) -> None:
    """One training run; a run stopped by --max-minutes ends the chain (BudgetSpent)."""
    finished = phase_output(chain, stage)
    if finished() is not None:
        print(f"[{stage}] skip: {finished()} exists", flush=True)
        return
    if chain.deadline is not None and time.monotonic() >= chain.deadline:
        raise BudgetSpent(f"[{stage}] not started: --max-minutes {chain.max_minutes:g} spent")
    resumed = trained_step(chain, stage)
    stale = [p for p in later if phase_output(chain, p)() is not None]
    if resumed and stale:
        print(f"[{stage}] note: {', '.join(stale)} were made from this stage's earlier state and are kept; "
              "delete their outputs to remake them", flush=True)
    detail = f"{chain.config(stage).name}, {chain.steps[stage]} steps" + (f", from step {resumed}" if resumed else "")
    if stage == "stage1" and "stage0" not in chain.skip:
        detail += ", initialised from stage 0's export"
    print(f"[{stage}] start: {detail}", flush=True)
    t0 = time.time()
    train_stage(chain, stage)
    done = finished()
    if done is None:
        reached = trained_step(chain, stage)
        if chain.deadline is not None and reached < chain.steps[stage]:
            raise BudgetSpent(f"[{stage}] stopped at step {reached} of {chain.steps[stage]}: --max-minutes "
                              f"{chain.max_minutes:g} spent")
        raise EDTalkError(f"phase {stage} ended without writing its output")
    print(f"[{stage}] done in {time.time() - t0:.1f} s: {done}", flush=True)


def phase_action(chain: Chain, phase: str) -> Tuple[Callable[[], None], str]:
    return {"data": (lambda: make_tree(chain), f"{chain.speakers} speakers, {chain.frames} frames per clip, "
                                               f"seed {chain.seed}"),
            "ceiling": (lambda: measure_tree_ceiling(chain),
                        f"factor net, {chain.settings.ceiling_steps} steps, held-out R² per factor"),
            "gate": (lambda: run_gate(chain), "held-out probes of the stage-1 encoder's wa"),
            "motion": (lambda: extract_motion(chain), ""), "presets": (lambda: make_presets(chain), ""),
            "collect": (lambda: collect(chain), ""), "probe": (lambda: run_probes(chain), "")}[phase]


def train_chain(chain: Chain, phases: Sequence[str]) -> int:
    t0 = time.time()
    if chain.max_minutes > 0:
        chain.deadline = time.monotonic() + 60 * chain.max_minutes
    check_overrides(chain)
    check_inputs(chain, phases)
    check_work_matches(chain)
    try:
        for i, phase in enumerate(phases):
            if phase in TRAINED_STAGES:
                training_phase(chain, phase, phases[i + 1:])
                continue
            spent = chain.deadline is not None and time.monotonic() >= chain.deadline
            if spent and phase_output(chain, phase)() is None:
                raise BudgetSpent(f"[{phase}] not started: --max-minutes {chain.max_minutes:g} spent")
            action, detail = phase_action(chain, phase)
            run_phase(phase, phase_output(chain, phase), action, detail)
            if phase == "gate":
                gate_verdict(chain)
            if phase == "probe":
                print_summary(chain)
    except BudgetSpent as stop:
        print(f"{stop}; rerun the same command to continue ({time.time() - t0:.1f} s)", flush=True)
        return BUDGET_EXIT
    if phases and phases[-1] == PHASES[-1] or "collect" in phases and collected(chain):
        print(f"model in {chain.out} ({time.time() - t0:.1f} s); try:\n  edtalk generate --checkpoint-dir {chain.out} "
              f"--presets {chain.out / 'presets'} --no-crop --source FACE.png --audio SPEECH.wav "
              "--pose audio --exp audio", flush=True)
    else:
        print(f"ran {', '.join(phases)} ({time.time() - t0:.1f} s)", flush=True)
    return 0


def print_plan(chain: Chain, phases: Sequence[str]) -> None:
    preset = chain.settings
    minutes = estimated_minutes(preset, chain.steps)
    print(f"preset {chain.preset}: {preset.about}")
    print(f"work {chain.work}   out {chain.out}")
    print(f"SynthTalk: {' '.join(synthtalk_args(chain))}")
    for phase in phases:
        if phase in TRAINED_STAGES:
            settings = [*stage_inputs(chain, phase), *preset.overrides.get(phase, ()), *probe_overrides(chain, phase),
                        *chain.overrides.get(phase, [])]
            what = f"{chain.config(phase).name} {chain.steps[phase]} steps " + " ".join(settings)
        else:
            what = {"data": "SynthTalk tree + frame store",
                    "ceiling": f"factor net {preset.ceiling_steps} steps: TREE/ceiling.json (each probe's fraction)",
                    "gate": f"wa → expression, held-out mean R² ≥ "
                    f"{chain.gate_threshold:g} ({'stops' if chain.strict_gate else 'warns'} otherwise)",
                    "motion": "edtalk extract-motion (stage 1: mouth, pose; stage 2: exp)",
                    "presets": "edtalk make-presets", "collect": f"{chain.out}",
                    "probe": "OUT/probe.json, OUT/probe.md, WORK/probe/*.png"}[phase]
        print(f"  {phase:<10}{minutes.get(phase, 0):>7.1f} min  {what}")
    total = sum(minutes.get(p, 0) for p in phases)
    hours = f" = {total / 60:.1f} h" if total >= 90 else ""
    print(f"  {'total':<10}{total:>7.1f} min{hours} of one CPU thread (estimated; a GPU runs the stages in a "
          "fraction of that)")


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(max(1, args.threads))  # the child processes and this one's probes

    def run() -> int:
        chain, phases = chain_from_args(args)
        if args.plan:
            print_plan(chain, phases)
            return 0
        return train_chain(chain, phases)

    return exit_code_of(run)


if __name__ == "__main__":
    sys.exit(main())
