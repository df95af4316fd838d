#!/usr/bin/env python
"""Peak memory of `edtalk generate` against clip length: it must not grow (streaming pipeline).

Each case runs `edtalk generate` in a fresh Python process that reports its own peak RSS
(getrusage RUSAGE_SELF); the whole process tree (Python + the ffmpeg decoders/encoder) is also
sampled through /proc every 50 ms for the peak of its summed PSS (shared pages counted once).
Cases: an image source driven by audio (pose video + preset expression) for each --seconds, and
a 720p video dubbed with --paste-back for each --dub-seconds. Weights are random (the numbers are
about memory, not pictures): tiny 64x64 models by default, official-size ones with --official-size.

    python scripts/benchmark_memory.py                                  # tiny weights, 10 s and 60 s
    python scripts/benchmark_memory.py --official-size --seconds 10 30 --dub-seconds 10
"""
import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RUNNER = """
import json, resource, sys
from edtalk.cli import main
code = main(sys.argv[1:])
mb = lambda who: resource.getrusage(who).ru_maxrss / 1024
print("PEAK " + json.dumps({"code": code, "self_mb": mb(resource.RUSAGE_SELF)}))
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


def write_checkpoints(folder: Path, official_size: bool) -> list:
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


def write_speech(path: Path, seconds: float) -> Path:
    """The bundled speech, repeated to `seconds` (16 kHz mono)."""
    import soundfile as sf

    speech, sr = sf.read(ROOT / "examples" / "speech.wav", dtype="float32")
    reps = int(np.ceil(seconds * sr / len(speech)))
    sf.write(path, np.tile(speech, reps)[: int(seconds * sr)], sr)
    return path


def write_720p_talk(path: Path, seconds: float) -> Path:
    """The bundled portrait drifting on a 1280x720 background, written frame batch by batch."""
    from PIL import Image

    from edtalk.video import VideoWriter

    face = np.asarray(Image.open(ROOT / "examples" / "source_full.png").convert("RGB"))
    canvas = np.zeros((720, 1280, 3), np.uint8)
    canvas[...] = np.linspace(40, 160, 1280, dtype=np.uint8)[None, :, None]
    count = int(seconds * 25)
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


def run_case(name: str, args: list) -> dict:
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", RUNNER, "generate", "--quiet", *args],
                                stdout=out, stderr=err, text=True, cwd=ROOT)
        tree_peak = 0.0
        while proc.poll() is None:
            tree_peak = max(tree_peak, tree_pss_mb(proc.pid))
            time.sleep(0.05)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    line = next((ln for ln in stdout.splitlines() if ln.startswith("PEAK ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"{name} failed:\n{stdout}\n{stderr}")
    row = json.loads(line[5:])
    row.update(case=name, tree_mb=tree_peak, seconds=time.perf_counter() - start)
    print(f"| {name} | {row['self_mb']:.0f} | {row['tree_mb']:.0f} | {row['seconds']:.0f} |", flush=True)
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, nargs="*", default=[10, 60], help="audio-driven clip lengths")
    p.add_argument("--dub-seconds", type=float, nargs="*", default=[10], help="720p dubbing clip lengths")
    p.add_argument("--official-size", action="store_true", help="256x256 official-size random weights")
    p.add_argument("--batch-size", type=int, default=None)
    args = p.parse_args()
    weights = "official-size" if args.official_size else "tiny (64x64)"
    print(f"# random {weights} weights; python {platform.python_version()}; cpu={platform.processor() or platform.machine()}")
    print("| case | peak RSS, python MB | peak PSS, process tree (python + ffmpeg) MB | wall s |")
    print("|---|---:|---:|---:|")
    rows = []
    with tempfile.TemporaryDirectory(prefix="edtalk-mem-") as tmp:
        tmp = Path(tmp)
        common = write_checkpoints(tmp / "ckpt", args.official_size)
        if args.batch_size:
            common += ["--batch-size", str(args.batch_size)]
        for seconds in args.seconds:
            speech = write_speech(tmp / f"speech{seconds:g}.wav", seconds)
            rows.append(run_case(f"image source, audio-driven, {seconds:g} s", common + [
                "--source", str(ROOT / "examples" / "source_full.png"), "--audio", str(speech),
                "--pose", str(ROOT / "examples" / "pose.mp4"), "--exp", "happy", "--out", str(tmp / "a.mp4")]))
        for seconds in args.dub_seconds:
            speech = write_speech(tmp / f"dub{seconds:g}.wav", seconds)
            video = write_720p_talk(tmp / f"talk{seconds:g}.mp4", seconds)
            rows.append(run_case(f"720p video dubbed with --paste-back, {seconds:g} s", common + [
                "--source", str(video), "--audio", str(speech), "--paste-back", "--out", str(tmp / "d.mp4")]))
    audio_rows = rows[:len(args.seconds)]
    if len(audio_rows) >= 2:
        growth = audio_rows[-1]["self_mb"] / audio_rows[0]["self_mb"] - 1
        print(f"# peak python RSS, {args.seconds[-1]:g} s vs {args.seconds[0]:g} s: {100 * growth:+.1f}%")


if __name__ == "__main__":
    main()
