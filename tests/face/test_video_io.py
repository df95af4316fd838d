"""Video I/O: downscaling while decoding, exact frame counts, 25 fps by timestamps (VFR), rotation
metadata, streamed writing with the driving sound kept at its own quality."""
import subprocess

import numpy as np
import pytest
import soundfile as sf

from edtalk.errors import EDTalkError
from edtalk.video import VideoWriter, ffmpeg_exe, iter_video, probe_audio, probe_video, read_video, write_video


def test_read_video_downscales_long_side_and_keeps_aspect(tmp_path):
    wide = np.random.default_rng(0).integers(0, 255, (4, 360, 800, 3), dtype=np.uint8)
    write_video(tmp_path / "wide.mp4", wide, fps=30)
    frames, fps = read_video(tmp_path / "wide.mp4", max_side=400)
    assert frames.shape == (4, 180, 400, 3) and fps == 30
    assert read_video(tmp_path / "wide.mp4")[0].shape == (4, 360, 800, 3)
    assert read_video(tmp_path / "wide.mp4", max_side=2000)[0].shape == (4, 360, 800, 3)
    info = probe_video(tmp_path / "wide.mp4")
    assert (info["frames"], info["width"], info["height"], info["audio"]) == (4, 800, 360, False)


# ----------------------------------------------------------------------------- phone inputs and sound

def _codes(frames, channel=0):
    """Frame index carried by each frame's colour code (8k+4)."""
    return [int(round((f[..., channel].mean() - 4) / 8)) for f in frames]


def _encode(path, frames, rate, *options):
    """Raw frames through the bundled ffmpeg (input at `rate`, extra output options)."""
    h, w = frames.shape[1:3]
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", str(rate), "-i", "-", *options, "-c:v", "libx264", "-pix_fmt", "yuv444p", "-crf", "0", str(path)]
    subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), check=True)
    return path


def _counted(n, size=32):
    frames = np.zeros((n, size, size, 3), np.uint8)
    frames[...] = (8 * np.arange(n) + 4)[:, None, None, None]
    return frames


def test_variable_frame_rate_clip_is_resampled_by_timestamps(tmp_path):
    # 10 frames at 10 fps (0.0 … 0.9 s), then 10 at 50 fps (1.00 … 1.18 s): a phone-style VFR clip.
    pts = np.array([k * 0.1 if k < 10 else 1.0 + (k - 10) * 0.02 for k in range(20)])
    clip = _encode(tmp_path / "vfr.mp4", _counted(20), 100,
                   "-vf", "setpts='if(lt(N,10),N*0.1,1.0+(N-10)*0.02)/TB'", "-fps_mode", "vfr")
    frames, fps = read_video(clip, fps=25)
    # Output frame j shows the input frame on screen at j/25 s.
    expected = [int(np.searchsorted(pts, j / 25 + 1e-9, side="right") - 1) for j in range(30)]
    assert fps == 25 and _codes(frames) == expected
    assert _codes(np.concatenate(list(iter_video(clip, batch=7)))) == expected


def test_constant_30fps_clip_drops_the_frames_our_index_rule_drops(tmp_path):
    from edtalk.video import resample_indices

    clip = _encode(tmp_path / "c30.mp4", _counted(24), 30)
    frames, _ = read_video(clip, fps=25)
    assert _codes(frames) == resample_indices(24, 30, 25).tolist()


def test_rotation_metadata_is_applied(tmp_path):
    frames = np.zeros((3, 32, 64, 3), np.uint8)
    frames[:, :8, :8] = 255  # a marker in the top-left corner of the stored picture
    plain = _encode(tmp_path / "plain.mp4", frames, 25)
    rotated = tmp_path / "rotated.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-display_rotation", "90", "-i", str(plain),
                    "-c", "copy", str(rotated)], check=True)
    out, _ = read_video(rotated, fps=25)
    assert out.shape[1:3] == (64, 32)  # portrait, as a player shows it
    # 90° counter-clockwise display rotation puts the stored top-left corner at the bottom-left.
    assert out[0, -8:, :8].mean() > 200 and out[0, :8, :8].mean() < 50


def _stereo_48k(path, seconds):
    sr = 48000
    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 1000 * t)], 1), sr)
    return path


@pytest.mark.parametrize("frames,seconds", [(32, 1.3), (40, 1.3), (20, 1.3)])
def test_writer_keeps_the_sound_quality_and_fits_it_to_the_frames(tmp_path, frames, seconds):
    sound = _stereo_48k(tmp_path / "s.wav", seconds)
    video = np.random.default_rng(0).integers(0, 255, (frames, 32, 32, 3), dtype=np.uint8)
    with VideoWriter(tmp_path / "o.mp4", 32, 32, audio=sound, num_frames=frames) as writer:
        for s in range(0, frames, 7):  # streamed in batches
            writer.write(video[s:s + 7])
    info, sound_out = probe_video(tmp_path / "o.mp4"), probe_audio(tmp_path / "o.mp4")
    assert info["frames"] == frames
    assert (sound_out["sample_rate"], sound_out["channels"]) == (48000, 2)
    assert sound_out["samples"] == frames * 48000 // 25  # cut (or padded with silence) to L/25 s


def test_writer_leaves_nothing_when_aborted_or_failing(tmp_path):
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "o.mp4", 32, 32) as writer:
            writer.write(np.zeros((2, 32, 32, 3), np.uint8))
            raise RuntimeError("boom")
    with pytest.raises(EDTalkError):
        with VideoWriter(tmp_path / "o.mp4", 32, 32, audio=tmp_path / "missing.wav") as writer:
            writer.write(np.zeros((2, 32, 32, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
