"""`edtalk generate --out -`: a playable fragmented MP4 with the sound on stdout, every message on
stderr; a mistake writes nothing to stdout and exits 2; a terminal is refused."""
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from edtalk.video import ffmpeg_exe, probe_audio, probe_video, read_video


def generate(tiny_ckpts, media, *args, stdout=subprocess.PIPE):
    ckpt_dir = next(iter(tiny_ckpts.values())).parent
    cmd = [sys.executable, "-m", "edtalk", "generate", "--checkpoint-dir", str(ckpt_dir), "--device", "cpu",
           "--no-crop", "--source", str(media["face"]), "--out", "-", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(cmd, stdout=stdout, stderr=subprocess.PIPE, env=env, timeout=300)


def decoded_sound(path) -> np.ndarray:
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", "16000",
                          "-f", "f32le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, "<f4")


def test_out_dash_writes_a_playable_fragmented_mp4_with_sound_to_stdout(tiny_ckpts, media, tmp_path):
    run = generate(tiny_ckpts, media, "--audio", media["speech"], "--exp", "happy")
    assert run.returncode == 0, run.stderr.decode()
    data = run.stdout
    assert data[4:8] == b"ftyp" and b"moof" in data  # fragments: playable while it is written
    out = tmp_path / "piped.mp4"
    out.write_bytes(data)
    info = probe_video(out)
    assert (info["width"], info["height"], info["fps"]) == (64, 64, 25.0)
    frames, fps = read_video(out)
    assert frames.shape == (32, 64, 64, 3) and fps == 25  # 1.3 s of speech
    assert frames.std() > 10  # a face, not an empty picture
    assert probe_audio(out)["samples"] == 32 * 640  # the speech, cut to the clip, with no AAC priming
    # In sync: the decoded sound lines up with the speech at lag 0, not 1024 samples (64 ms) late.
    heard = decoded_sound(out)
    spoken = sf.read(media["speech"], dtype="float32")[0]
    lags = [float(np.dot(heard[lag:lag + 8000], spoken[:8000])) for lag in range(0, 1200)]
    assert int(np.argmax(lags)) < 100
    err = run.stderr.decode()
    assert "wrote 32 frames" in err and "to stdout" in err  # the messages went to stderr


def test_a_mistake_writes_nothing_to_stdout_and_exits_2(tiny_ckpts, media, tmp_path):
    run = generate(tiny_ckpts, media, "--audio", tmp_path / "missing.wav")
    assert run.returncode == 2
    assert run.stdout == b""
    err = run.stderr.decode().strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edtalk: error:") and "missing.wav" in err[0]


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_a_terminal_on_stdout_is_refused(tiny_ckpts, media):
    controller, terminal = os.openpty()
    try:
        run = generate(tiny_ckpts, media, "--audio", media["speech"], stdout=terminal)
    finally:
        os.close(terminal)
        os.close(controller)
    assert run.returncode == 2
    assert "pipe it into a player or a file" in run.stderr.decode()


def test_stdout_video_matches_the_file_output(tiny_ckpts, media, tmp_path):
    """Same frames as --out FILE, up to the encoders' settings (the pipe has no B-frames)."""
    run = generate(tiny_ckpts, media, "--audio", media["speech"])
    assert run.returncode == 0, run.stderr.decode()
    piped = tmp_path / "piped.mp4"
    piped.write_bytes(run.stdout)
    from edtalk.cli import main

    ckpt_dir = next(iter(tiny_ckpts.values())).parent
    out = tmp_path / "file.mp4"
    assert main(["generate", "--quiet", "--checkpoint-dir", str(ckpt_dir), "--device", "cpu", "--no-crop",
                 "--source", str(media["face"]), "--audio", str(media["speech"]), "--out", str(out)]) == 0
    a, _ = read_video(piped)
    b, _ = read_video(out)
    assert a.shape == b.shape and np.abs(a.astype(float) - b).mean() < 2.0
