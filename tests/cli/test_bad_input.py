"""Every user mistake: one clear error line, exit code 2, and no output file left behind."""
import numpy as np
import pytest
import soundfile as sf

from edtalk.cli import main


def run_error(capsys, tiny_ckpts, out, *args, ckpt_dir=None):
    ckpt_dir = ckpt_dir or str(next(iter(tiny_ckpts.values())).parent)
    rc = main(["generate", "--checkpoint-dir", str(ckpt_dir), "--no-crop", "--quiet", "--out", str(out),
               *map(str, args)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert not out.exists(), "a partial output file was left behind"
    assert len(err) == 1 and err[0].startswith("edtalk: error: "), err
    return err[0]


@pytest.fixture
def out(tmp_path):
    return tmp_path / "out.mp4"


def test_missing_and_unreadable_image(capsys, tiny_ckpts, media, out, tmp_path):
    assert "image not found" in run_error(capsys, tiny_ckpts, out, "--source", tmp_path / "nope.png", "--audio", media["speech"])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a png")
    assert "cannot read image" in run_error(capsys, tiny_ckpts, out, "--source", bad, "--audio", media["speech"])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert "cannot read image" in run_error(capsys, tiny_ckpts, out, "--source", empty, "--audio", media["speech"])


def test_unreadable_and_empty_video(capsys, tiny_ckpts, media, out, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    msg = run_error(capsys, tiny_ckpts, out, "--source", media["face"], "--lip", bad)
    assert "video" in msg and str(bad) in msg
    missing = run_error(capsys, tiny_ckpts, out, "--source", media["face"], "--lip", tmp_path / "none.mp4")
    assert "video not found" in missing


def test_bad_audio(capsys, tiny_ckpts, media, out, tmp_path):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    assert "silent" in run_error(capsys, tiny_ckpts, out, "--source", media["face"], "--audio", silent)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    run_error(capsys, tiny_ckpts, out, "--source", media["face"], "--audio", empty)
    short = tmp_path / "short.wav"
    sf.write(short, (0.1 * np.random.default_rng(0).standard_normal(300)).astype(np.float32), 16000)
    assert "shorter than one" in run_error(capsys, tiny_ckpts, out, "--source", media["face"], "--audio", short)


def test_checkpoint_errors(capsys, tiny_ckpts, media, out, tmp_path):
    msg = run_error(capsys, tiny_ckpts, out, "--source", media["face"], "--audio", media["speech"],
                    ckpt_dir=tmp_path / "empty_dir")
    assert "checkpoint not found" in msg and "edtalk download" in msg
    msg = run_error(capsys, tiny_ckpts, out, "--source", media["face"], "--audio", media["speech"],
                    "--checkpoint", tiny_ckpts["Audio2Lip.pt"])
    assert "--audio2lip-checkpoint" in msg
    msg = run_error(capsys, tiny_ckpts, out, "--source", media["face"], "--audio", media["speech"], "--exp", "happy",
                    "--checkpoint", tiny_ckpts["EDTalk_lip_pose.pt"])
    assert "full EDTalk checkpoint" in msg


def test_unwritable_output_and_bad_options(capsys, tiny_ckpts, media, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    msg = run_error(capsys, tiny_ckpts, blocker / "out.mp4", "--source", media["face"], "--audio", media["speech"])
    assert "output folder" in msg
    assert "must be a video" in run_error(capsys, tiny_ckpts, tmp_path / "out.gif", "--source", media["face"],
                                          "--audio", media["speech"])
    out = tmp_path / "o.mp4"
    assert "unknown expression preset" in run_error(capsys, tiny_ckpts, out, "--source", media["face"],
                                                   "--audio", media["speech"], "--exp", "happy:1+joyful")
    assert "neither a file nor a preset" in run_error(capsys, tiny_ckpts, out, "--source", media["face"],
                                                      "--audio", media["speech"], "--exp", "nofile.mp4")
    assert "nothing drives the mouth" in run_error(capsys, tiny_ckpts, out, "--source", media["face"])
    assert "fp16 needs a GPU" in run_error(capsys, tiny_ckpts, out, "--source", media["face"], "--audio",
                                           media["speech"], "--device", "cpu", "--dtype", "fp16")


def test_audio_file_without_audio_track(capsys, tiny_ckpts, media, out, tmp_path):
    import numpy as np

    from edtalk.video import write_video

    mute = tmp_path / "mute.mp4"
    write_video(mute, np.zeros((10, 32, 32, 3), np.uint8))
    assert "has no audio track" in run_error(capsys, tiny_ckpts, out, "--source", media["face"], "--audio", mute)


def test_demo_script_exit_code_and_no_traceback(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(repo / "demo.py"), "--source", str(tmp_path / "missing.png"),
                           "--audio", str(tmp_path / "missing.wav"), "--out", str(tmp_path / "o.mp4")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("edtalk: error:") and "Traceback" not in proc.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_an_image_too_large_in_pixels_is_one_line_exit_2(capsys, tiny_ckpts, media, out, tmp_path):
    """A 20000x20000 PNG (a few hundred bytes) is refused before decoding: exit 2, one line."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    message = run_error(capsys, tiny_ckpts, out, "--source", huge, "--audio", media["speech"])
    assert message == f"edtalk: error: image is too large: {huge} has 400 megapixels (at most 89)"
