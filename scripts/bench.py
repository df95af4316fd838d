#!/usr/bin/env python
"""edtalk benchmarks: each suite prints a Markdown table of numbers (never a pass/fail: wall-clock
time depends on the machine and on what else runs on it).  Every suite times with one timer,
edtalk.pipelines.benchmark.time_call (best of N calls, optional warm-up, waits for CUDA kernels).

Suites:
  inference  ms/frame and GFLOP/frame per generation mode, ours vs the official per-frame call
             pattern (same synthetic official-size weights and inputs), and the max difference
  memory     peak memory of `edtalk generate` against clip length (RSS of Python, PSS of the
             process tree with ffmpeg), each case in a fresh process
  paste      paste-back ms/frame at a few frame sizes, one mask vs a mask per frame
  loader     training-data loading: LMDB frame store vs MP4 decoding, and the data-wait fraction
  train      aten calls per step, ms per step and the data wait of a training config, measured on
             `edtalk train` itself; --ref DIR measures another checkout in the same run
  precision  fp32 / bf16 / fp16 renders of the official-parity set against the official fp32 tensors
  synthtalk  SynthTalk rendering frames/s per frame size
  evaluate   ms/frame of each evaluation metric on 256² faces
  e2e        `edtalk generate` end to end on a 10 s clip at official size, split by stage (decode, crop,
             drivers, networks, paste-back, encode), torch and/or ONNX engine (scripts/bench_e2e.py)
  onnx       network-only ms/frame, torch engine vs ONNX engine, at 1 and 2 threads (scripts/bench_e2e.py)

    python scripts/bench.py inference --frames 16
    python scripts/bench.py inference --device cuda --dtype fp16 --frames 64 --batch-size 16 --modes V A-preset --repeats 3
    python scripts/bench.py memory --batch-size 8
    python scripts/bench.py paste --heights 720 1080
    python scripts/bench.py loader
    python scripts/bench.py train --config configs/train/stage1_synthtalk.yaml [--preset narrow] [--ref /tmp/edtalk_base]
    python scripts/bench.py precision --device cuda
    python scripts/bench.py synthtalk --sizes 64 256
    python scripts/bench.py evaluate
    python scripts/bench.py e2e --engines torch onnx --onnx-dir /tmp/edtalk-bench-onnx
    python scripts/bench.py onnx --threads 1 2 --onnx-dir /tmp/edtalk-bench-onnx

`python scripts/bench.py SUITE --help` lists a suite's options.
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
EXAMPLES = REPO / "examples"


def seconds(fn, repeats: int = 1, warmup: bool = True) -> float:
    """The one timer of every suite: best wall-clock seconds of `repeats` calls of fn."""
    from edtalk.pipelines.benchmark import time_call

    return time_call(fn, repeats, warmup=warmup)


def machine() -> str:
    from edtalk.pipelines.benchmark import machine as cpu_name

    return cpu_name()


def dtype_of(name: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


# ----------------------------------------------------------------------------- inference


def inference_suite(args) -> None:
    import torch

    from edtalk.config import EDTalkConfig
    from edtalk.model import EDTalk
    from edtalk.pipelines.benchmark import HEADER, SCENARIOS, run_benchmark
    from edtalk.pipelines.generate import default_batch_size
    from edtalk.runtime import keep_freed_memory
    from edtalk.testing import official_like_state_dict

    unknown = sorted(set(args.modes or ()) - {s.name for s in SCENARIOS})
    if unknown:
        sys.exit(f"bench inference: unknown mode {', '.join(unknown)} (known: {' '.join(s.name for s in SCENARIOS)})")

    keep_freed_memory()  # as `edtalk generate` does; applies to both paths alike
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), dtype_of(args.dtype)
    make = EDTalkConfig.tiny if args.tiny else EDTalkConfig

    def build(config):
        model = EDTalk(config)
        model.load_state_dict(official_like_state_dict(model, seed=0))
        return model.to(device, dtype).eval().requires_grad_(False)

    models = {"edtalk": build(make()), "lip_pose": build(make(exp_dim=0))}
    batch = args.batch_size or default_batch_size(device)
    print(f"# {machine()}; device={device} dtype={args.dtype} threads={torch.get_num_threads()} "
          f"frames={args.frames} batch={batch} torch={torch.__version__}")
    print(HEADER)
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    run_benchmark(models, args.frames, batch, args.repeats, args.modes)


def add_inference(sub) -> None:
    p = sub.add_parser("inference", help="generation ms/frame and GFLOP/frame per mode vs the official call pattern")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=None, help="default: as edtalk generate (2 on CPU, 8 on GPU)")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per path; the fastest counts")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--tiny", action="store_true", help="64x64 tiny models (a smoke run; numbers meaningless)")
    p.add_argument("--modes", nargs="*", metavar="MODE", help="a subset of the modes (default: all; names as in "
                   "the table: A-preset A-preset-fixed A-expvideo V V-one-video lip-pose-A lip-pose-V)")
    p.set_defaults(run=inference_suite)


# ----------------------------------------------------------------------------- memory

MEMORY_RUNNER = """
import json, resource, sys
from edtalk.cli import main
code = main(sys.argv[1:])
print("PEAK " + json.dumps({"code": code, "self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def tree_pss_mb(pid: int) -> float:
    """Summed PSS of a process and all its descendants (Linux /proc), 0 once it is gone. PSS shares
    pages among the processes mapping them, so a just-forked child is not counted twice."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
            total += int(next(ln.split()[1] for ln in rollup.splitlines() if ln.startswith("Pss:")))
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total / 1024


def random_checkpoints(folder: Path, official_size: bool) -> list:
    """Random weights; returns the generate flags that select them."""
    if not official_size:
        from edtalk.testing import write_tiny_checkpoints

        write_tiny_checkpoints(folder)
        return ["--checkpoint-dir", str(folder)]
    from edtalk import Audio2Lip, EDTalk
    from edtalk.config import Audio2LipConfig, EDTalkConfig
    from edtalk.testing import official_like_state_dict

    model = EDTalk(EDTalkConfig())
    model.load_state_dict(official_like_state_dict(model, seed=0))
    model.save_pretrained(folder / "edtalk")
    a2l = Audio2Lip(Audio2LipConfig())
    a2l.load_state_dict(official_like_state_dict(a2l, seed=1, bias_std=0.05))
    a2l.save_pretrained(folder / "audio2lip")
    return ["--checkpoint", str(folder / "edtalk"), "--audio2lip-checkpoint", str(folder / "audio2lip")]


def repeated_speech(path: Path, length_s: float) -> Path:
    """The bundled speech, repeated to `length_s` seconds (16 kHz mono)."""
    import numpy as np
    import soundfile as sf

    speech, sr = sf.read(EXAMPLES / "speech.wav", dtype="float32")
    sf.write(path, np.tile(speech, int(np.ceil(length_s * sr / len(speech))))[: int(length_s * sr)], sr)
    return path


def talking_720p(path: Path, length_s: float) -> Path:
    """The bundled portrait drifting on a 1280x720 background, written 25 frames at a time."""
    import numpy as np
    from PIL import Image

    from edtalk.video import VideoWriter

    face = np.asarray(Image.open(EXAMPLES / "source_full.png").convert("RGB"))
    canvas = np.zeros((720, 1280, 3), np.uint8)
    canvas[...] = np.linspace(40, 160, 1280, dtype=np.uint8)[None, :, None]
    count = int(length_s * 25)
    with VideoWriter(path, 1280, 720, num_frames=count) as writer:
        for start in range(0, count, 25):
            batch = []
            for i in range(start, min(count, start + 25)):
                frame = canvas.copy()
                dx, dy = int(20 * np.sin(i / 15)), int(10 * np.sin(i / 23))
                frame[100 + dy:612 + dy, 380 + dx:892 + dx] = face
                batch.append(frame)
            writer.write(np.stack(batch))
    return path


def generate_in_fresh_process(generate_args: list) -> dict:
    """Run `edtalk generate` in a new Python process, sampling its tree's PSS every 50 ms."""
    import time

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", MEMORY_RUNNER, "generate", "--quiet", *generate_args],
                                stdout=out, stderr=err, text=True, cwd=REPO)
        tree_peak = 0.0
        while proc.poll() is None:
            tree_peak = max(tree_peak, tree_pss_mb(proc.pid))
            time.sleep(0.05)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    line = next((ln for ln in stdout.splitlines() if ln.startswith("PEAK ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"bench memory: edtalk generate failed:\n{stdout}\n{stderr}")
    return {**json.loads(line[5:]), "tree_mb": tree_peak}


def memory_case(name: str, generate_args: list) -> dict:
    result = {}
    wall = seconds(lambda: result.update(generate_in_fresh_process(generate_args)), warmup=False)
    print(f"| {name} | {result['self_mb']:.0f} | {result['tree_mb']:.0f} | {wall:.0f} |", flush=True)
    return result


def memory_suite(args) -> None:
    weights = "official-size" if args.official_size else "tiny (64x64)"
    print(f"# {machine()}; random {weights} weights; python {platform.python_version()}")
    print("| case | peak RSS, python MB | peak PSS, process tree (python + ffmpeg) MB | wall s |")
    print("|---|---:|---:|---:|")
    rows = []
    with tempfile.TemporaryDirectory(prefix="edtalk-mem-") as tmp:
        tmp = Path(tmp)
        common = random_checkpoints(tmp / "ckpt", args.official_size)
        if args.batch_size:
            common += ["--batch-size", str(args.batch_size)]
        for length in args.seconds:
            speech = repeated_speech(tmp / f"speech{length:g}.wav", length)
            rows.append(memory_case(f"image source, audio-driven, {length:g} s", common + [
                "--source", str(EXAMPLES / "source_full.png"), "--audio", str(speech),
                "--pose", str(EXAMPLES / "pose.mp4"), "--exp", "happy", "--out", str(tmp / "a.mp4")]))
        for length in args.dub_seconds:
            speech = repeated_speech(tmp / f"dub{length:g}.wav", length)
            video = talking_720p(tmp / f"talk{length:g}.mp4", length)
            memory_case(f"720p video dubbed with --paste-back, {length:g} s", common + [
                "--source", str(video), "--audio", str(speech), "--paste-back", "--out", str(tmp / "d.mp4")])
    if len(rows) >= 2:
        growth = rows[-1]["self_mb"] / rows[0]["self_mb"] - 1
        print(f"# peak python RSS, {args.seconds[-1]:g} s vs {args.seconds[0]:g} s: {100 * growth:+.1f}%")


def add_memory(sub) -> None:
    p = sub.add_parser("memory", help="peak memory of edtalk generate against clip length")
    p.add_argument("--seconds", type=float, nargs="*", default=[10, 60], help="audio-driven clip lengths")
    p.add_argument("--dub-seconds", type=float, nargs="*", default=[10], help="720p dubbing clip lengths")
    p.add_argument("--official-size", action="store_true", help="256x256 official-size random weights")
    p.add_argument("--batch-size", type=int, default=None)
    p.set_defaults(run=memory_suite)


# ----------------------------------------------------------------------------- paste


def paste_suite(args) -> None:
    import numpy as np
    from PIL import Image
    from skimage import data

    from edtalk.face import crop_image, paste_back
    from edtalk.face import paste as paste_module

    def clear_caches():
        paste_module._PLAN_CACHE.clear()
        paste_module._GEOMETRY_CACHE.clear()

    def paste_all(frames, faces, params, landmarks=None, batch=2):  # two frames per call, as generation streams
        for s in range(0, len(faces), batch):
            paste_back(frames[s:s + batch], faces[s:s + batch], params,
                       landmarks=None if landmarks is None else landmarks[s:s + batch])

    print(f"# {machine()}; {args.frames} frames of 256² faces (the astronaut test image, a third of the height)")
    print("| frame | first call (plan) ms | one mask, ms/frame | a mask per frame, ms/frame |\n|---|---:|---:|---:|")
    for height in args.heights:
        width = height * 16 // 9
        image = np.asarray(Image.fromarray(data.astronaut()).resize((height * 2, height * 2)))[:height, :width]
        image = np.ascontiguousarray(np.pad(image, ((0, 0), (0, max(0, width - image.shape[1])), (0, 0)), "edge"))
        crop, params = crop_image(image)
        frames, faces = np.repeat(image[None], args.frames, 0), np.repeat(crop[None], args.frames, 0)
        landmarks = paste_module.default_landmarks(params, 256)
        moving = np.stack([landmarks + 0.01 * i for i in range(args.frames)])  # a different mask each frame
        first = seconds(lambda: (clear_caches(), paste_all(frames[:1], faces[:1], params, batch=1)), warmup=False)
        shared = seconds(lambda: paste_all(frames, faces, params)) / args.frames
        per_frame = seconds(lambda: paste_all(frames, faces, params, moving)) / args.frames
        print(f"| {width}x{height} | {1e3 * first:.0f} | {1e3 * shared:.0f} | {1e3 * per_frame:.0f} |")


def add_paste(sub) -> None:
    p = sub.add_parser("paste", help="paste-back ms/frame at a few frame sizes")
    p.add_argument("--heights", type=int, nargs="+", default=[720, 1080])
    p.add_argument("--frames", type=int, default=8)
    p.set_defaults(run=paste_suite)


# ----------------------------------------------------------------------------- loader

FIXED_STEP_S = 0.26  # the fallback loader run's pretend training step


def loader_suite(args) -> None:
    import shutil

    import numpy as np
    import torch

    from edtalk.data import layout
    from edtalk.data.datasets import Stage1Items
    from edtalk.data.store import STORE_NAME, FrameStore, VideoFrames, build_frame_store

    def random_refs(reader, names, count):
        rng = np.random.default_rng(0)
        return [(names[k], int(rng.integers(reader.num_frames(names[k])))) for k in rng.integers(len(names), size=count)]

    def frames_per_second(reader, refs):
        reader.frame(*refs[0])  # open and warm; a full warm-up pass would take minutes on MP4s
        return len(refs) / seconds(lambda: [reader.frame(n, i) for n, i in refs], warmup=False)

    def items_per_second(root, reader):
        ds = Stage1Items(root, size=args.size, store=reader, length=args.items)
        ds[0]
        return args.items / seconds(lambda: [ds[i] for i in range(args.items)], warmup=False)

    def loader_wait_fraction(root, reader):
        """Time spent waiting for batches against a fixed step (no trainer)."""
        import time

        ds = Stage1Items(root, size=args.size, store=reader, length=args.batch * args.steps)
        it = iter(torch.utils.data.DataLoader(ds, batch_size=args.batch, num_workers=args.workers, shuffle=True))
        next(it)  # worker start-up is not steady state
        wait = 0.0
        for _ in range(args.steps - 1):
            wait += seconds(lambda: next(it), warmup=False)
            time.sleep(FIXED_STEP_S)
        return wait / (wait + FIXED_STEP_S * (args.steps - 1))

    def trainer_wait_fraction(root, run_dir):
        from edtalk.train.config import load_train_config
        from edtalk.train.trainer import train

        cfg = load_train_config(str(REPO / "configs" / "train" / "stage1_synthtalk_tiny.yaml"), [
            f"data.root={root}", f"run.dir={run_dir}", f"train.max_steps={args.steps}", f"run.log_every={args.steps}",
            "run.sample_every=0", f"run.checkpoint_every={args.steps}", f"data.num_workers={args.workers}",
            "run.progress=false", "run.export=false"])
        logs = train(cfg).last_logs
        return logs.get("time/data_wait_frac"), logs.get("time/step_s")

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    tmp = Path(tempfile.mkdtemp(prefix="edtalk_loader_bench_"))
    try:
        if args.root:
            root = Path(args.root)
        else:
            from edtalk.data import synthtalk

            root = tmp / "hdtf"
            synthtalk.generate_hdtf(root, videos=args.videos, seconds=args.seconds, size=args.tree_size, seed=0,
                                    validate=False, test_fraction=0.0, quiet=True)
        names = layout.read_split(root, "train")
        build_s = seconds(lambda: build_frame_store(root), warmup=False)
        store, videos = FrameStore(root / STORE_NAME), VideoFrames(root)
        total = sum(store.num_frames(n) for n in names)
        height, width = store.frame(names[0], 0).shape[:2]
        print(f"# {machine()}; torch {torch.__version__}; tree {root}: {len(names)} train clips, {total} frames of "
              f"{width}x{height}; LMDB built in {build_s:.1f} s ({total / build_s:.0f} frames/s)")
        refs = random_refs(store, names, args.reads)
        print(f"| reader | random frames/s | Stage1Items/s (size {args.size}) |\n|---|---:|---:|")
        for label, reader in (("LMDB (JPEG q75)", store), ("MP4 decode (LRU 4 clips)", videos)):
            print(f"| {label} | {frames_per_second(reader, refs):.0f} | {items_per_second(root, reader):.1f} |")
        print("\n| reader | setting | data-wait fraction | step s |\n|---|---|---:|---:|")
        for label, decode in (("LMDB", False), ("MP4 decode", True)):
            reader = VideoFrames(root) if decode else store
            print(f"| {label} | DataLoader, {args.workers} workers, batch {args.batch}, fixed step | "
                  f"{loader_wait_fraction(root, reader):.3f} | {FIXED_STEP_S} |")
            hidden = root / (STORE_NAME + ".hidden")
            if decode:  # hide the store: the trainer's open_frames then decodes the MP4s
                os.replace(root / STORE_NAME, hidden)
            try:
                frac, step_s = trainer_wait_fraction(root, tmp / f"run_{label.split()[0]}")
            finally:
                if decode:
                    os.replace(hidden, root / STORE_NAME)
            print(f"| {label} | tiny stage-1 training, {args.workers} workers, {args.steps} steps | {frac:.3f} | "
                  f"{step_s:.3f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def add_loader(sub) -> None:
    p = sub.add_parser("loader", help="LMDB frame store vs MP4 decoding, and the training data wait")
    p.add_argument("--root", default=None, help="a layout tree (default: a SynthTalk HDTF-style tree in a temp dir)")
    p.add_argument("--tree-size", type=int, default=256, help="frame size of the generated tree")
    p.add_argument("--seconds", type=float, default=15.0, help="length of each generated video")
    p.add_argument("--videos", type=int, default=4)
    p.add_argument("--size", type=int, default=64, help="item size (the tiny model's 64)")
    p.add_argument("--reads", type=int, default=400, help="random frame reads per reader")
    p.add_argument("--items", type=int, default=40, help="Stage1Items per reader")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers for the wait fraction")
    p.add_argument("--steps", type=int, default=30, help="steps per wait-fraction run")
    p.add_argument("--batch", type=int, default=4, help="batch of the fixed-step DataLoader run")
    p.set_defaults(run=loader_suite)


# ----------------------------------------------------------------------------- train
#
# How it counts: aten calls are profiler events named aten::* (nested ones included) in the
# training process; per step = (calls of a run of 2k steps − calls of a run of k steps) / k, so
# set-up, samples, checkpoints and the export cancel out.  Time: a run of 2·--steps steps with
# log_every = --steps; its last log window (the second half) gives ms/step and the data wait
# (time spent waiting for the next batch / step time), as logged in TensorBoard.

NARROW = ["model.channels={4: 4, 8: 4, 16: 4, 32: 4, 64: 4}", "train.batch_size=2"]


def _train_run(config: str, overrides, steps: int, log_every: int, run_dir: str, profile: bool = False):
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


def train_worker(args) -> dict:
    """Measure with whatever edtalk is importable (the caller sets PYTHONPATH to one checkout)."""
    import edtalk
    import torch

    out = {"edtalk": str(Path(edtalk.__file__).resolve().parents[1]), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        k = args.count_steps
        _, short = _train_run(args.config, args.overrides, k, k, f"{tmp}/a", profile=True)
        _, long = _train_run(args.config, args.overrides, 2 * k, k, f"{tmp}/b", profile=True)
        out["aten_calls_per_step"] = (long - short) / k
        logs, _ = _train_run(args.config, args.overrides, 2 * args.steps, args.steps, f"{tmp}/c")
    out["ms_per_step"] = 1000.0 * logs["time/step_s"]
    out["data_wait_frac"] = logs["time/data_wait_frac"]
    return out


def synth_tree(folder: Path, speakers: int) -> Path:
    root = folder / "mead"
    if not (root / "frames.lmdb").exists():
        subprocess.run([sys.executable, "-m", "edtalk", "synthtalk", "--out", str(folder), "--speakers", str(speakers),
                        "--kind", "mead", "--emotions", "neutral,happy", "--levels", "3", "--frames", "32",
                        "--size", "64", "--no-mel", "--seed", "1", "--quiet", "--overwrite"], check=True)
        subprocess.run([sys.executable, "-m", "edtalk", "store", "--root", str(root), "--quiet"], check=True)
    return root


def measure_checkout(code_root: Path, args, overrides) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code_root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, str(Path(__file__).resolve()), "train", "--worker", "--config", args.config,
           "--steps", str(args.steps), "--count-steps", str(args.count_steps), *overrides]
    done = subprocess.run(cmd, env=env, cwd=str(code_root), capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench train: the run with {code_root} failed:\n{done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def train_suite(args) -> None:
    if args.worker:
        print(json.dumps(train_worker(args)))
        return
    overrides = list(args.overrides) + (NARROW if args.preset == "narrow" else [])
    with tempfile.TemporaryDirectory() as tmp:
        if not any(o.startswith("data.root=") for o in overrides):
            root = Path(args.data) if args.data else synth_tree(Path(tmp) / "synth", args.speakers)
            overrides.append(f"data.root={Path(root).resolve()}")
        codes = [("this checkout", REPO)] + ([("ref", Path(args.ref).resolve())] if args.ref else [])
        results = {name: [] for name, _ in codes}
        for _ in range(args.repeats):  # alternate, so a load change on the machine hits both
            for name, root in codes:
                results[name].append(measure_checkout(root, args, overrides))
    print(f"# {machine()}; config {args.config}"
          f"{' (narrow: ' + ' '.join(NARROW) + ')' if args.preset == 'narrow' else ''}; "
          f"overrides: {' '.join(args.overrides) or 'none'}; best of {args.repeats}")
    print("| code | aten calls/step | ms/step | steps/s | data wait |\n|---|---:|---:|---:|---:|")
    best = {}
    for name, runs in results.items():
        b = best[name] = min(runs, key=lambda r: r["ms_per_step"])
        print(f"| {name} ({b['edtalk']}) | {b['aten_calls_per_step']:.0f} | {b['ms_per_step']:.1f} | "
              f"{1000 / b['ms_per_step']:.2f} | {100 * b['data_wait_frac']:.1f}% |")
    if args.ref:
        new, ref = best["this checkout"], best["ref"]
        print(f"\naten calls: {new['aten_calls_per_step'] / ref['aten_calls_per_step']:.3f}x the ref; "
              f"steps/s: {ref['ms_per_step'] / new['ms_per_step']:.3f}x the ref")


def add_train(sub) -> None:
    t = sub.add_parser("train", help="training step cost of a config (aten calls, ms/step, data wait)")
    t.add_argument("--config", required=True)
    t.add_argument("--data", help="a training tree (default: a SynthTalk tree made for the run)")
    t.add_argument("--speakers", type=int, default=24, help="speakers of the made SynthTalk tree")
    t.add_argument("--preset", choices=["none", "narrow"], default="none",
                   help="narrow: channels 4, batch 2 (launch-bound: op count decides)")
    t.add_argument("--steps", type=int, default=20, help="timed steps (after as many warm-up steps)")
    t.add_argument("--count-steps", type=int, default=2, help="k of the aten-call count")
    t.add_argument("--repeats", type=int, default=1, help="runs per checkout; the fastest is shown")
    t.add_argument("--ref", help="another checkout's root (e.g. git worktree add /tmp/edtalk_base HEAD~3), "
                   "measured in the same run, alternating")
    t.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    t.add_argument("overrides", nargs="*", help="config overrides key=value")
    t.set_defaults(run=train_suite)


# ----------------------------------------------------------------------------- precision


def parity_renders(model, ref: dict, device, dtype) -> dict:
    """Every rendered output of the parity set for one model, on `device` in `dtype`."""
    import torch

    def x(key):
        return ref[key].to(device, dtype)

    with torch.no_grad():
        latent, feats = model.encode(x("source"))
        feats = model.prepare_source(feats)
        mouth = model.motion_weights(x("lip_frames"))["mouth"]
        pose = model.motion_weights(x("pose_frames"))["pose"]
        if model.variant == "lip_pose":
            return {"lip_pose.out_video_driven": model.render(latent, feats, mouth, pose),
                    "lip_pose.out_audio_driven": model.render(latent, feats, x("alpha_lip_in"), pose),
                    "lip_pose.out_reconstruct": model(x("source"), x("lip_frames"))}
        exp = model.motion_weights(x("exp_frames"))["exp"]
        return {"edtalk.out_video_driven": model.render(latent, feats, mouth, pose, exp),
                "edtalk.out_video_driven_exp_weights": model.render(latent, feats, mouth, pose, x("alpha_exp_in")),
                "edtalk.out_audio_driven": model.render(latent, feats, x("alpha_lip_in"), pose, exp),
                "edtalk.out_audio_driven_exp_weights": model.render(latent, feats, x("alpha_lip_in"), pose,
                                                                    x("alpha_exp_in"))}


def difference(out, ref) -> dict:
    import math

    diff = (out.float().cpu() - ref).abs()
    mse = float((diff ** 2).mean())
    return {"mean_abs": float(diff.mean()), "max_abs": float(diff.max()),
            "psnr_db": float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)}  # images span [-1, 1]


def precision_suite(args) -> None:
    import copy

    import torch

    from edtalk import EDTalk
    from edtalk.testing import find_parity_dir, load_recipe

    parity = Path(args.parity_dir) if args.parity_dir else find_parity_dir()
    if parity is None:
        sys.exit("bench precision: official parity set not found (--parity-dir or $EDTALK_PARITY_DIR)")
    device = torch.device(args.device)
    dtypes = args.dtypes or (["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32", "bf16"])
    ref = torch.load(parity / "reference.pt", weights_only=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else machine()
    print(f"# device={device} ({name}) torch={torch.__version__}")
    print("| model | dtype | mean abs | max abs | PSNR dB (worst case) |\n|---|---|---:|---:|---:|")
    results = {}
    for variant in ("edtalk", "lip_pose"):
        base = EDTalk.from_official(load_recipe(parity, variant)).eval()
        for dtype_name in dtypes:
            model = copy.deepcopy(base).to(device, dtype_of(dtype_name))  # .to() is in place: keep fp32 weights
            renders = parity_renders(model, ref, device, dtype_of(dtype_name))
            numbers = results[f"{variant}/{dtype_name}"] = {k: difference(v, ref[k]) for k, v in renders.items()}
            print(f"| {variant} | {dtype_name} | {max(n['mean_abs'] for n in numbers.values()):.2e} | "
                  f"{max(n['max_abs'] for n in numbers.values()):.2e} | "
                  f"{min(n['psnr_db'] for n in numbers.values()):.1f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "torch": torch.__version__, "results": results}, indent=1))


def add_precision(sub) -> None:
    p = sub.add_parser("precision", help="fp32/bf16/fp16 renders of the official-parity set vs the official fp32")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtypes", nargs="+", choices=["fp32", "bf16", "fp16"], default=None,
                   help="default: fp32 bf16 fp16 (fp16 on GPUs only)")
    p.add_argument("--parity-dir", default=None, help="default: $EDTALK_PARITY_DIR or ../shared/reference/official_parity")
    p.add_argument("--json", default=None, help="also write the numbers here")
    p.set_defaults(run=precision_suite)


# ----------------------------------------------------------------------------- synthtalk


def synthtalk_suite(args) -> None:
    import numpy as np
    import torch

    from edtalk.data import synthtalk as st
    from edtalk.data import synthtalk_render as render

    ident = st.sample_identity(np.random.default_rng(0))
    f = st.sample_factors(np.random.default_rng(0), args.frames, "happy", 2)
    print(f"# {machine()}; {torch.get_num_threads()} torch threads; {args.frames} frames, best of {args.repeats}")
    print("| size | frames/s |\n|---:|---:|")
    for size in args.sizes:
        best = seconds(lambda: render.render_frames(ident, f["mouth"], f["pose"], f["expression"], f["blink"], size=size),
                       args.repeats)
        print(f"| {size} | {args.frames / best:.0f} |")


def add_synthtalk(sub) -> None:
    p = sub.add_parser("synthtalk", help="SynthTalk rendering frames/s per frame size")
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--frames", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.set_defaults(run=synthtalk_suite)


# ----------------------------------------------------------------------------- evaluate


def evaluate_suite(args) -> None:
    """Frames: the bundled examples/source.png face moved a few pixels per frame (GT) and once more
    (generated).  LPIPS/FID/Acc_emo need real weight files, so this times PSNR, SSIM, dlib landmarks
    (M-/F-LMD), dlib CSIM and a random-weight SyncNet expert (LSE)."""
    import numpy as np
    import torch
    from PIL import Image

    from edtalk.eval.metrics import Clip, MetricSettings, MetricSuite
    from edtalk.eval.metrics.sync import SyncExpertScorer
    from edtalk.networks.syncnet import SyncNet

    def face_frames(seed):
        face = np.asarray(Image.open(EXAMPLES / "source.png").convert("RGB"))
        shifts = np.random.default_rng(seed).integers(-3, 4, (args.frames, 2))
        return np.stack([np.roll(face, tuple(s), axis=(0, 1)) for s in shifts])

    torch.manual_seed(0)
    gt, pred = face_frames(0), face_frames(1)
    wav = np.random.default_rng(0).normal(0, 0.1, args.frames * 640).astype(np.float32)
    print(f"# {machine()}; {args.frames} frames 256x256, torch threads {torch.get_num_threads()}")
    print("| metric | ms/frame | value |\n|---|---:|---|")
    for keys in (("psnr",), ("ssim",), ("m_lmd", "f_lmd"), ("csim",), ("lse_c", "lse_d")):
        networks = {"sync": (SyncExpertScorer(SyncNet()), "random SyncNet expert", False)}
        suite = MetricSuite(MetricSettings(only=keys), networks=networks)
        clips = []  # a fresh clip per call (landmarks are cached on a clip): warm-up + one timed call
        for _ in range(2):
            clip = Clip("M003#happy#level_1#001", pred, gt, wav=wav)
            if keys[0] in ("csim", "lse_c"):
                clip.track("pred"), clip.track("source")  # landmarks are timed with LMD, not here
            clips.append(clip)
        rows = []
        ms = 1e3 * seconds(lambda: rows.append(suite.row(clips[len(rows)]))) / args.frames
        value = ", ".join(f"{k}={rows[-1].get(k):.3f}" for k in keys if rows[-1].get(k) is not None)
        print(f"| {'/'.join(keys)} | {ms:.1f} | {value} |", flush=True)


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="ms/frame of each evaluation metric on 256² faces")
    p.add_argument("--frames", type=int, default=50)
    p.set_defaults(run=evaluate_suite)


# ----------------------------------------------------------------------------- main

def add_engine_suites(sub) -> None:
    """e2e and onnx: scripts/bench_e2e.py."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_e2e

    bench_e2e.add_e2e(sub)
    bench_e2e.add_onnx(sub)


SUITES = (add_inference, add_memory, add_paste, add_loader, add_train, add_precision, add_synthtalk, add_evaluate,
          add_engine_suites)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="suite", required=True, metavar="SUITE")
    for add in SUITES:
        add(sub)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
