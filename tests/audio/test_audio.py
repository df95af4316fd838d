"""Tests for edtalk.audio: official parity of the mel windows and smoothing, loading, errors."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from edtalk import audio
from edtalk.errors import InputError



@pytest.fixture(scope="module")
def speech_wav(parity_dir) -> Path:
    """The reference set's audio input (fixtures `parity_dir` / `reference`: tests/conftest.py)."""
    return parity_dir / "speech_like.wav"


def _tone(seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 1330 * t)).astype(np.float32)


def _ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *args],
                   check=True, capture_output=True)


# ------------------------------------------------------------------ constants and helpers


def test_constants_and_frame_count():
    assert (audio.SAMPLE_RATE, audio.FPS, audio.SAMPLES_PER_FRAME) == (16000, 25, 640)
    assert audio.frame_count(32000) == 50
    assert audio.frame_count(639) == 0
    assert audio.frame_count(1279) == 1


def test_window_start_truncates_toward_zero():
    assert [audio.window_start(i) for i in range(5)] == [-6, -3, 0, 3, 6]
    assert audio.window_start(7) == 16  # 80*5/25 = 16


def test_mel_filterbank_shape_and_slaney_area():
    fb = audio.mel_filterbank()
    assert fb.shape == (80, 401)
    assert np.all(fb >= 0)
    # Each triangle peaks at 2/(f_{n+2}-f_n); no energy outside 55..7600 Hz.
    bins = np.arange(401) * 20.0
    assert fb[:, bins < 55].max() == 0 and fb[:, bins > 7600].max() == 0


# ------------------------------------------------------------------ official parity


def test_mel_windows_match_official(reference, speech_wav):
    windows = audio.mel_windows(speech_wav)
    expected = reference["audio.mel_windows"]
    assert windows.shape == expected.shape == (50, 1, 80, 16)
    assert windows.dtype == torch.float32
    assert (windows - expected).abs().max().item() <= 1e-4


def test_mel_spectrogram_row_count_and_range(speech_wav):
    wav = audio.load_audio(speech_wav)
    mel = audio.mel_spectrogram(wav[:640 * 7 + 123])  # tail beyond 7 frames is cropped
    assert mel.shape == (1 + 640 * 7 // 200, 80)
    assert mel.dtype == np.float32
    assert mel.min() >= -4 and mel.max() <= 4
    np.testing.assert_array_equal(mel, audio.mel_spectrogram(wav[:640 * 7]))


def test_smooth_official_matches_reference(reference):
    smoothed = audio.smooth(reference["audio.alpha_lip_raw"], "official")
    assert isinstance(smoothed, torch.Tensor)
    assert (smoothed - reference["audio.alpha_lip_smoothed"]).abs().max().item() <= 1e-4


def test_smooth_edge_differs_only_at_the_ends(reference):
    raw = reference["audio.alpha_lip_raw"]
    official = audio.smooth(raw, "official")
    edge = audio.smooth(raw, "edge")
    torch.testing.assert_close(edge[1:-1], official[1:-1])
    assert (edge[0] - official[0]).abs().max() > 1e-3
    assert (edge[-1] - official[-1]).abs().max() > 1e-3
    # Edge padding keeps a constant signal constant; zero padding shrinks its ends to 72.6 %.
    const = np.ones((4, 3), dtype=np.float32)
    np.testing.assert_allclose(audio.smooth(const, "edge"), const, atol=1e-6)
    np.testing.assert_allclose(audio.smooth(const, "official")[[0, -1]], 0.72593138, atol=1e-6)
    np.testing.assert_allclose(audio.smooth(const[:1], "official"), 0.45186276, atol=1e-6)


def test_smooth_none_and_bad_mode():
    x = np.random.default_rng(0).normal(size=(5, 20)).astype(np.float32)
    assert audio.smooth(x, None) is x
    assert audio.smooth(x, "none") is x
    assert isinstance(audio.smooth(x), np.ndarray) and audio.smooth(x).dtype == np.float32
    with pytest.raises(ValueError):
        audio.smooth(x, "gaussian")


# ------------------------------------------------------------------ loading


def test_44k_stereo_array_close_to_16k(speech_wav):
    from scipy.signal import resample_poly

    mono16 = audio.load_audio(speech_wav)
    mono44 = resample_poly(mono16.astype(np.float64), 441, 160)
    stereo = np.stack([mono44, mono44], axis=1)  # [N, 2]
    ref = audio.mel_windows(mono16)
    got = audio.mel_windows(stereo, sample_rate=44100)
    assert got.shape == ref.shape
    diff = (got - ref).abs()
    assert diff.mean().item() < 0.02 and diff.max().item() < 0.5
    # [C, N] layout gives the same result.
    torch.testing.assert_close(audio.mel_windows(stereo.T.copy(), sample_rate=44100), got)


def test_array_defaults_to_16k_and_channel_mean():
    tone = _tone(0.5, 16000)
    stereo = np.stack([tone * 2, np.zeros_like(tone)], axis=0)  # [2, N], mean == tone
    np.testing.assert_allclose(audio.load_audio(stereo), tone, atol=1e-6)
    np.testing.assert_allclose(audio.load_audio(torch.from_numpy(tone)), tone)
    assert audio.load_audio(tone).dtype == np.float32


def test_flac_file_matches_array(tmp_path):
    tone = _tone(0.5, 16000)
    sf.write(tmp_path / "tone.flac", tone, 16000, subtype="PCM_24")
    np.testing.assert_allclose(audio.load_audio(tmp_path / "tone.flac"), tone, atol=1e-5)


@pytest.mark.parametrize("ext", ["mp3", "m4a"])
def test_compressed_audio_decodes_via_ffmpeg(tmp_path, ext):
    sf.write(tmp_path / "tone.wav", _tone(1.0, 22050), 22050)
    out = tmp_path / f"tone.{ext}"
    _ffmpeg("-i", str(tmp_path / "tone.wav"), str(out))
    wav = audio.load_audio(out)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(wav.size - 16000) < 2000  # encoder priming/padding adds a little
    assert 0.2 < np.abs(wav).max() < 0.6
    windows = audio.mel_windows(out)
    assert windows.shape[1:] == (1, 80, 16) and windows.shape[0] == audio.frame_count(wav.size)


# ------------------------------------------------------------------ errors


def test_missing_file_raises(tmp_path):
    with pytest.raises(InputError, match="not found"):
        audio.load_audio(tmp_path / "nope.wav")


@pytest.mark.parametrize("name", ["garbage.wav", "garbage.mp3"])
def test_undecodable_file_raises(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(InputError, match="cannot"):
        audio.load_audio(path)


def test_zero_length_raises(tmp_path):
    with pytest.raises(InputError, match="empty"):
        audio.load_audio(np.zeros(0, dtype=np.float32))
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(InputError, match="empty"):
        audio.load_audio(tmp_path / "empty.wav")


def test_shorter_than_one_frame_raises():
    with pytest.raises(InputError, match="shorter than one"):
        audio.load_audio(_tone(0.5, 16000)[:639])
    # 44.1 kHz: 1700 samples resample to ~617 < 640.
    with pytest.raises(InputError, match="shorter than one"):
        audio.load_audio(_tone(0.5, 44100)[:1700], sample_rate=44100)
    assert audio.load_audio(_tone(0.5, 16000)[:640]).size == 640


def test_silent_audio_raises(tmp_path):
    with pytest.raises(InputError, match="silent"):
        audio.check_audio(np.full(16000, 1e-7, dtype=np.float32))
    sf.write(tmp_path / "silence.wav", np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(InputError, match="silent"):
        audio.mel_windows(tmp_path / "silence.wav")
    audio.check_audio(_tone(0.1, 16000))  # audible audio passes
