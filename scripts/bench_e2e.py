"""Suites `e2e` and `onnx` of scripts/bench.py (which dispatches here).

e2e   `edtalk generate` itself on a clip at official size, with its time split by stage: decode,
      crop (face tube, crops, resizing), drivers (audio features, driver plans, the pose flow /
      audio2exp), networks (encoder, heads, decoder, Audio2Lip), paste-back, encode (uint8 and
      the ffmpeg pipe), other. Stages are timed exclusively (a network call inside a driver counts
      as networks), by wrapping the functions generation calls; the product path runs unchanged.
onnx  network-only ms/frame of the torch engine and the ONNX engine (onnxruntime) on the calls
      generation makes, at 1 and 2 threads, interleaved so load changes hit both alike.

Both use random official-like weights (edtalk.testing.official_like_state_dict, seed 0), exported
to ONNX once into --onnx-dir (reused when it holds that export).
"""
from __future__ import annotations

import contextlib
import functools
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
RANDOM_WEIGHTS = "random official-like weights, seed 0"
STAGES = ("decode", "crop", "drivers", "networks", "paste-back", "encode")


def machine() -> str:
    from edtalk.pipelines.benchmark import machine as cpu_name

    return cpu_name()


# ----------------------------------------------------------------------------- weights


def random_models(tiny: bool = False):
    """The generator (full model) and Audio2Lip with random official-like weights, frozen, CPU."""
    from edtalk.config import Audio2LipConfig, EDTalkConfig
    from edtalk.model import EDTalk
    from edtalk.networks.audio2lip import Audio2Lip
    from edtalk.testing import official_like_state_dict

    model = EDTalk(EDTalkConfig.tiny() if tiny else EDTalkConfig())
    model.load_state_dict(official_like_state_dict(model, seed=0))
    a2l = Audio2Lip(Audio2LipConfig.tiny() if tiny else Audio2LipConfig())
    a2l.load_state_dict(official_like_state_dict(a2l, seed=1, bias_std=0.05))
    return model.eval().requires_grad_(False), a2l.eval().requires_grad_(False)


def onnx_export_of(model, a2l, folder: Path, tiny: bool) -> Path:
    """`folder` holding the ONNX export of these random weights (made unless it is there)."""
    from edtalk.onnx.export import FORMAT_VERSION, METADATA_FILE, OPSET, export_audio2lip, export_generator

    label = RANDOM_WEIGHTS + (" (tiny)" if tiny else "")
    meta_path = folder / METADATA_FILE
    if meta_path.is_file() and json.loads(meta_path.read_text()).get("weights") == label:
        return folder
    print(f"# exporting the random weights to ONNX in {folder} (once)", flush=True)
    models = {"EDTalk": export_generator(model, folder / "EDTalk"), "Audio2Lip": export_audio2lip(a2l, folder / "Audio2Lip")}
    meta_path.write_text(json.dumps({"format": FORMAT_VERSION, "opset": OPSET, "weights": label, "models": models}))
    return folder


def engines_models(engine: str, model, a2l, onnx_dir: Path, device: str):
    if engine == "torch":
        return model, a2l
    from edtalk.onnx.runtime import load_onnx_models

    return load_onnx_models(onnx_dir, expression=True, need_audio=True, device=device)


# ----------------------------------------------------------------------------- the stage clock


class StageClock:
    """Exclusive time per stage: entering a stage pauses the one it was called from."""

    def __init__(self, sync=None):
        self.totals = defaultdict(float)
        self.stack, self.mark = [], 0.0
        self.sync = sync or (lambda: None)

    def _switch(self):
        self.sync()
        now = time.perf_counter()
        if self.stack:
            self.totals[self.stack[-1]] += now - self.mark
        self.mark = now

    @contextlib.contextmanager
    def stage(self, name: str):
        self._switch()
        self.stack.append(name)
        try:
            yield
        finally:
            self._switch()
            self.stack.pop()

    def timed(self, name: str, fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            with self.stage(name):
                return fn(*args, **kwargs)
        return call

    def timed_generator(self, name: str, fn):
        """Each step of the generator `fn` returns counts as `name` (the time between steps does not)."""
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            steps = fn(*args, **kwargs)
            while True:
                with self.stage(name):
                    try:
                        item = next(steps)
                    except StopIteration:
                        return
                yield item
        return gen


class TimedNetwork:
    """A network whose calls count as the `networks` stage; everything else passes through."""

    CALLS = {"encode", "encode_latent", "motion_weights", "prepare_source", "render", "embed"}

    def __init__(self, net, clock: StageClock):
        self._net, self._clock = net, clock

    def __getattr__(self, name):
        attr = getattr(self._net, name)
        return self._clock.timed("networks", attr) if name in self.CALLS else attr

    def __call__(self, *args, **kwargs):
        return self._clock.timed("networks", self._net)(*args, **kwargs)

    def eval(self):
        self._net.eval()
        return self


# (module, attribute path, stage, is a generator): what `edtalk generate` calls, by stage.
PATCHES = [
    ("edtalk.video", "VideoReader.__init__", "decode", False),  # starts ffmpeg, reads the header
    ("edtalk.video", "VideoReader.batches", "decode", True),
    ("edtalk.video", "probe_video", "decode", False),
    ("edtalk.face.tube", "stream_face_tube", "crop", False),
    ("edtalk.face.tube", "crop_tube", "crop", False),
    ("edtalk.pipelines.preprocess", "frames_to_tensor", "crop", False),
    ("edtalk.pipelines.pipeline", "prepare_image", "crop", False),
    ("edtalk.audio", "load_audio", "drivers", False),
    ("edtalk.pipelines.engine", "Generator.mouth_from_audio", "drivers", False),
    ("edtalk.pipelines.engine", "Generator.heads", "drivers", False),
    ("edtalk.pipelines.pipeline", "sample_pose", "drivers", False),
    ("edtalk.pipelines.pipeline", "predict_expression", "drivers", False),
    ("edtalk.pipelines.pipeline", "plan_drivers", "drivers", False),
    ("edtalk.face", "paste_back", "paste-back", False),
    ("edtalk.pipelines.preprocess", "VideoSource.crop_landmarks", "paste-back", False),
    ("edtalk.pipelines.writer", "Pixels.__call__", "encode", False),
    ("edtalk.video", "VideoWriter.__init__", "encode", False),  # starts ffmpeg
    ("edtalk.video", "VideoWriter.write", "encode", False),
    ("edtalk.video", "VideoWriter.close", "encode", False),
]


@contextlib.contextmanager
def stage_patches(clock: StageClock):
    """Wrap the functions `edtalk generate` calls for each stage; put them back afterwards. One the
    code no longer has is named on stdout (its time then counts as `other`)."""
    import importlib

    saved = []
    try:
        for module, path, stage, generator in PATCHES:
            owner = importlib.import_module(module)
            *parents, name = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent, None)
            original = (owner.__dict__ if isinstance(owner, type) else vars(owner)).get(name) if owner else None
            if original is None:
                print(f"# not timed (not found): {module}.{path}")
                continue
            saved.append((owner, name, original))
            setattr(owner, name, (clock.timed_generator if generator else clock.timed)(stage, original))
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


# ----------------------------------------------------------------------------- inputs


def speech(path: Path, seconds: float) -> Path:
    """The bundled speech repeated to `seconds` (16 kHz mono)."""
    import numpy as np
    import soundfile as sf

    wav, rate = sf.read(EXAMPLES / "speech.wav", dtype="float32")
    sf.write(path, np.tile(wav, int(np.ceil(seconds * rate / len(wav))))[: int(seconds * rate)], rate)
    return path


def talking_video(path: Path, seconds: float, width: int = 1280, height: int = 720) -> Path:
    """The bundled portrait drifting over a gradient, `width`x`height` at 25 fps."""
    import numpy as np
    from PIL import Image

    from edtalk.video import VideoWriter

    face = Image.open(EXAMPLES / "source_full.png").convert("RGB")
    side = min(face.height, int(0.75 * height))  # the portrait fills at most 3/4 of the height
    face = np.asarray(face.resize((side, side), Image.BICUBIC))
    fh, fw = face.shape[:2]
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[...] = np.linspace(40, 160, width, dtype=np.uint8)[None, :, None]
    count = int(seconds * 25)
    with VideoWriter(path, width, height, num_frames=count) as writer:
        for start in range(0, count, 25):
            batch = []
            for i in range(start, min(count, start + 25)):
                frame = canvas.copy()
                y, x = (height - fh) // 2 + int(10 * np.sin(i / 23)), (width - fw) // 2 + int(20 * np.sin(i / 15))
                frame[y:y + fh, x:x + fw] = face
                batch.append(frame)
            writer.write(np.stack(batch))
    return path


# ----------------------------------------------------------------------------- e2e


def run_case(options, model, a2l, device: str) -> dict:
    import torch

    from edtalk.pipelines.generate import generate

    cuda = torch.device(device).type == "cuda"
    clock = StageClock(sync=torch.cuda.synchronize if cuda else None)
    with stage_patches(clock):
        start = time.perf_counter()
        result = generate(options, model=TimedNetwork(model, clock), audio2lip=TimedNetwork(a2l, clock))
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
    stages = {s: clock.totals.get(s, 0.0) for s in STAGES}
    stages["other"] = wall - sum(stages.values())
    return {"frames": result.num_frames, "wall": wall, **stages}


def e2e_suite(args) -> None:
    import torch

    from edtalk.pipelines.generate import GenerateOptions
    from edtalk.runtime import keep_freed_memory, resolve_device

    keep_freed_memory()  # as `edtalk generate` does
    if args.threads:
        torch.set_num_threads(args.threads)
    device = str(resolve_device(args.device))
    model, a2l = random_models(args.tiny)
    model = model.to(device, {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype])
    a2l = a2l.to(device)
    size = "tiny 64²" if args.tiny else "official 256²"
    with tempfile.TemporaryDirectory(prefix="edtalk-e2e-") as tmp:
        tmp = Path(tmp)
        onnx_dir = None
        if "onnx" in args.engines:
            onnx_dir = onnx_export_of(model.float().cpu(), a2l.float().cpu(), Path(args.onnx_dir or tmp / "onnx"), args.tiny)
            model = model.to(device, {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype])
        wav = speech(tmp / "speech.wav", args.seconds)
        cases = {
            "image source, audio-driven, preset, paste-back": dict(source=str(EXAMPLES / "source_full.png"),
                                                                   exp="happy"),
            f"{args.video_height}p video dubbed, paste-back": dict(
                source=str(talking_video(tmp / "talk.mp4", args.seconds, args.video_height * 16 // 9,
                                         args.video_height))),
        }
        name = torch.cuda.get_device_name(device) if device.startswith("cuda") else machine()
        print(f"# {name}; device={device} dtype={args.dtype} threads={torch.get_num_threads()} "
              f"batch={args.batch_size or 'default'}; {size}, random weights; {args.seconds:g} s clip; "
              f"torch {torch.__version__}")
        print("| case | engine | frames | " + " | ".join(f"{s} s" for s in STAGES) +
              " | other s | total s | frames/s | total / networks |")
        print("|---|---|---:|" + "---:|" * (len(STAGES) + 4))
        def options(engine, inputs, audio=wav):
            return GenerateOptions(audio=str(audio), out=str(tmp / f"{engine}.mp4"), paste_back=True, device=device,
                                   dtype=args.dtype, batch_size=args.batch_size, progress=False, engine=engine,
                                   onnx_dir=str(onnx_dir) if onnx_dir else None, **inputs)

        nets = {engine: engines_models(engine, model, a2l, onnx_dir, device) for engine in args.engines}
        warmup = speech(tmp / "warmup.wav", 1.0)  # face detector, sessions, allocators: loaded before timing
        for engine in args.engines:
            run_case(options(engine, next(iter(cases.values())), warmup), *nets[engine], device)
        for case, inputs in cases.items():
            for engine in args.engines:
                r = run_case(options(engine, inputs), *nets[engine], device)
                print(f"| {case} | {engine} | {r['frames']} | " + " | ".join(f"{r[s]:.1f}" for s in STAGES) +
                      f" | {r['other']:.1f} | {r['wall']:.1f} | {r['frames'] / r['wall']:.1f} | "
                      f"{r['wall'] / max(r['networks'], 1e-9):.2f} |", flush=True)


def add_e2e(sub) -> None:
    p = sub.add_parser("e2e", help="edtalk generate end to end at official size, its time split by stage")
    p.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    p.add_argument("--engines", nargs="+", choices=["torch", "onnx"], default=["torch"])
    p.add_argument("--onnx-dir", default=None, help="where the random weights' ONNX export is kept (default: a "
                   "temporary folder, exported again each run)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--batch-size", type=int, default=None, help="default: as edtalk generate (2 on CPU, 8 on GPU)")
    p.add_argument("--threads", type=int, default=None, help="torch (and onnxruntime) CPU threads")
    p.add_argument("--video-height", type=int, default=720, help="height of the dubbed video (default 720)")
    p.add_argument("--tiny", action="store_true", help="64x64 tiny models (a smoke run; numbers meaningless)")
    p.set_defaults(run=e2e_suite)


# ----------------------------------------------------------------------------- onnx


def network_calls(model, a2l, batch: int):
    """name → (call, frames per call): the calls `edtalk generate` makes, at its batch size."""
    import torch

    size = model.config.size
    g = torch.Generator().manual_seed(0)
    source, drivers = (torch.rand(n, 3, size, size, generator=g) * 2 - 1 for n in (1, batch))
    mels = torch.randn(256, 1, 80, 16, generator=g)
    with torch.inference_mode():
        latent, feats = model.encode(source)
        prepared = model.prepare_source(feats)
        w = model.motion_weights(drivers)
    preset = w["exp"][:1]
    return {
        "encode driver frames": (lambda: model.encode_latent(drivers), batch),
        "render, one expression (preset)": (lambda: model.render(latent, prepared, w["mouth"], w["pose"], preset), batch),
        "render, expression per frame": (lambda: model.render(latent, prepared, w["mouth"], w["pose"], w["exp"]), batch),
        "dubbing: encode + render": (lambda: model.render(*model.encode(drivers), w["mouth"], w["pose"], preset), batch),
        "Audio2Lip, 256 windows": (lambda: a2l(mels), 256),
    }


def onnx_suite(args) -> None:
    import onnxruntime
    import torch

    from edtalk.onnx.runtime import load_onnx_models

    model, a2l = random_models(args.tiny)
    with tempfile.TemporaryDirectory(prefix="edtalk-onnx-") as tmp:
        onnx_dir = onnx_export_of(model, a2l, Path(args.onnx_dir or Path(tmp) / "onnx"), args.tiny)
        print(f"# {machine()}; {'tiny 64²' if args.tiny else 'official 256²'} random weights; batch {args.batch_size}; "
              f"best of {args.repeats}, engines interleaved; torch {torch.__version__}, "
              f"onnxruntime {onnxruntime.__version__} (CPU provider)")
        print("| call | threads | torch ms/frame | onnx ms/frame | speed-up |\n|---|---:|---:|---:|---:|")
        for threads in args.threads:
            torch.set_num_threads(threads)
            onnx_model, onnx_a2l = load_onnx_models(onnx_dir, expression=True, need_audio=True, device="cpu")
            calls = {"torch": network_calls(model, a2l, args.batch_size),
                     "onnx": network_calls(onnx_model, onnx_a2l, args.batch_size)}
            best = {(e, c): float("inf") for e in calls for c in calls[e]}
            with torch.inference_mode():
                for engine in calls:  # warm-up: allocators, oneDNN primitives, onnxruntime sessions
                    for fn, _ in calls[engine].values():
                        fn()
                for _ in range(args.repeats):
                    for call in calls["torch"]:
                        for engine in calls:
                            fn, _ = calls[engine][call]
                            start = time.perf_counter()
                            fn()
                            best[engine, call] = min(best[engine, call], time.perf_counter() - start)
            for call, (_, frames) in calls["torch"].items():
                t, o = (1e3 * best[e, call] / frames for e in ("torch", "onnx"))
                print(f"| {call} | {threads} | {t:.1f} | {o:.1f} | {t / o:.2f}x |", flush=True)


def add_onnx(sub) -> None:
    p = sub.add_parser("onnx", help="network-only ms/frame: the torch engine vs the ONNX engine (onnxruntime)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch-size", type=int, default=2, help="frames per call (default 2, generate's CPU default)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--onnx-dir", default=None, help="where the random weights' ONNX export is kept")
    p.add_argument("--tiny", action="store_true", help="64x64 tiny models (a smoke run; numbers meaningless)")
    p.set_defaults(run=onnx_suite)


if __name__ == "__main__":
    sys.exit("run it as: python scripts/bench.py e2e|onnx ...")
