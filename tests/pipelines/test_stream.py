"""EDTalkPipeline.stream: the call's frames, one batch at a time as the engine renders them; a growing
audio source (PCM chunks) whose mel windows, resampling and smoothing equal the whole recording's,
with the stated look-ahead; the modes that cannot run incrementally refuse in one clear error."""
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from scipy.signal import resample_poly

from edtalk import EDTalkPipeline, Weights
from edtalk.audio import load_audio, mel_windows, smooth
from edtalk.audio_stream import (SMOOTHING_LOOKAHEAD_FRAMES, WINDOW_LOOKAHEAD_FRAMES, WINDOW_LOOKAHEAD_SAMPLES,
                                 MelStream, StreamResampler, StreamSmoother, pcm_samples)
from edtalk.errors import InputError
from edtalk.pipelines.engine import Generator
from edtalk.pipelines.streaming import LOOKAHEAD_FRAMES, LOOKAHEAD_MS, MouthStream, lookahead_frames
from edtalk.testing import write_tiny_checkpoints

REPO = Path(__file__).resolve().parents[2]
FACE = REPO / "examples" / "source.png"
ODD_CHUNKS = [1, 333, 4097, 640, 199, 1001]  # none a multiple of the 200-sample hop or the 640-sample frame


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> Path:
    return write_tiny_checkpoints(tmp_path_factory.mktemp("stream-ckpt"))["EDTalk.pt"].parent


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return np.asarray(Image.open(FACE).convert("RGB").resize((64, 64), Image.BICUBIC))


def speech(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Speech-like float32 audio: a buzz whose loudness moves, plus a little noise."""
    t = np.arange(int(sr * seconds)) / sr
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 3 * t)) + 0.02 * noise
            ).astype(np.float32)


def chunked(x: np.ndarray, sizes=ODD_CHUNKS):
    start, k = 0, 0
    while start < len(x):
        yield x[start:start + sizes[k % len(sizes)]]
        start += sizes[k % len(sizes)]
        k += 1


class CountingChunks:
    """An iterator of chunks that counts how many were taken."""

    def __init__(self, x: np.ndarray, size: int):
        self.parts = [x[i:i + size] for i in range(0, len(x), size)]
        self.taken = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.taken == len(self.parts):
            raise StopIteration
        self.taken += 1
        return self.parts[self.taken - 1]


def count_renders(pipe: EDTalkPipeline, monkeypatch, expression: bool = True) -> list:
    """Wrap the generator's render: the list grows by one per rendered batch."""
    model = pipe.models(expression=expression, audio=True)[0]
    calls, render = [], model.render
    monkeypatch.setattr(model, "render", lambda *a, **k: calls.append(1) or render(*a, **k))
    return calls


# ----------------------------------------------------------------------------- frames as they are made

def test_stream_yields_the_calls_frames_batch_by_batch(ckpts, face, monkeypatch):
    pipe = EDTalkPipeline.from_pretrained(ckpts, device="cpu", batch_size=4)
    wav = speech(1.0)  # 25 frames: 7 batches of 4
    whole = pipe(source=face, audio=wav, exp="happy", crop=False).frames
    renders = count_renders(pipe, monkeypatch)
    frames = pipe.stream(source=face, audio=wav, exp="happy", crop=False)
    assert renders == []  # nothing is rendered before a frame is asked for
    first = next(frames)
    assert len(renders) == 1 and first.dtype == np.uint8 and first.shape == (64, 64, 3)
    rest = list(frames)
    assert len(renders) == 7
    assert np.array_equal(np.stack([first, *rest]), whole)


def test_stream_equals_the_call_video_driven_and_in_the_models_own_frames(ckpts, face):
    pipe = EDTalkPipeline.from_pretrained(ckpts, device="cpu", batch_size=3)
    lip = np.stack([np.roll(face, 3 * i, axis=0) for i in range(8)])
    pose = np.stack([np.roll(face, -2 * i, axis=1) for i in range(5)])  # shorter: ping-pongs
    args = dict(source=face, lip=lip, pose=pose, exp="sad", crop=False)
    whole = pipe(**args).frames
    assert np.array_equal(np.stack(list(pipe.stream(**args))), whole)
    own = pipe(**args, output_type="pt").frames
    streamed = list(pipe.stream(**args, output_type="pt"))
    assert streamed[0].shape == own.shape[1:] and torch.equal(torch.stack(streamed), own)


def test_stream_dubs_a_video_like_the_call(ckpts, face, tmp_path, monkeypatch):
    from edtalk.video import write_video

    clip = tmp_path / "talk.mp4"
    write_video(clip, np.stack([np.roll(face, i, axis=1) for i in range(6)]))  # shorter than the speech
    pipe = EDTalkPipeline.from_pretrained(ckpts, device="cpu", batch_size=4)
    wav = speech(0.6)
    whole = pipe(source=clip, audio=wav, crop=False).frames
    renders = count_renders(pipe, monkeypatch, expression=False)
    frames = pipe.stream(source=clip, audio=wav, crop=False)
    first = next(frames)
    assert len(renders) == 1
    assert np.array_equal(np.stack([first, *frames]), whole) and len(renders) == 4


def test_stream_pastes_back_like_the_call(ckpts, monkeypatch):
    photo = skimage.data.astronaut()  # 512x512, a face dlib finds
    pipe = EDTalkPipeline.from_pretrained(ckpts, device="cpu", batch_size=4)
    wav = speech(0.6)
    whole = pipe(source=photo, audio=wav, paste_back=True).frames
    renders = count_renders(pipe, monkeypatch, expression=False)
    frames = pipe.stream(source=photo, audio=wav, paste_back=True)
    first = next(frames)
    assert len(renders) == 1 and first.shape == (512, 512, 3)
    assert np.array_equal(np.stack([first, *frames]), whole)


# ----------------------------------------------------------------------------- a growing audio source

def test_chunked_mel_windows_equal_the_whole_recordings():
    for seconds in (0.05, 0.9, 2.345):  # from one frame to many; lengths off the frame grid
        wav = speech(seconds, seed=1)
        mel, parts = MelStream(), []
        for chunk in chunked(wav):
            parts.append(mel.push(chunk))
            # The stated look-ahead is what the code waits for: frame i once frame i + 3 is in.
            assert mel.frames == max(0, mel.samples // 640 - WINDOW_LOOKAHEAD_FRAMES)
        parts.append(mel.finish())
        assert torch.equal(torch.cat(parts), mel_windows(wav))


def test_the_look_ahead_comes_from_the_mel_window_and_the_smoothing():
    # Frame 0's 16-row window (rows clipped at 0) ends at row 9, whose 800-sample STFT frame ends at
    # sample 9·200 + 400 = 2200: 1560 samples past frame 0's end, 3 frames on the frame grid.
    assert (WINDOW_LOOKAHEAD_SAMPLES, WINDOW_LOOKAHEAD_FRAMES) == (1560, 3)
    assert (LOOKAHEAD_FRAMES, LOOKAHEAD_MS) == (4, 160.0)
    assert (EDTalkPipeline.STREAM_LOOKAHEAD_FRAMES, EDTalkPipeline.STREAM_LOOKAHEAD_MS) == (4, 160.0)
    assert (lookahead_frames("official"), lookahead_frames("none")) == (4, 3)


@pytest.mark.parametrize("mode", ["edge", "official", "none"])
def test_chunked_smoothing_equals_the_whole_sequences(mode):
    weights = torch.randn(41, 20, generator=torch.Generator().manual_seed(0))
    smoother = StreamSmoother(mode)
    parts = [smoother.push(part) for part in torch.split(weights, [1, 7, 1, 1, 30, 1])]
    assert sum(len(p) for p in parts) == 41 - SMOOTHING_LOOKAHEAD_FRAMES[mode]  # row i once row i+1 is in
    assert torch.equal(torch.cat([*parts, smoother.finish()]), smooth(weights, mode=mode))


@pytest.mark.parametrize("rate", [48000, 44100, 22050, 8000])
def test_chunked_resampling_equals_resampling_the_whole_recording(rate):
    x = np.random.default_rng(2).standard_normal(rate + 123)
    resampler = StreamResampler(rate)
    out = np.concatenate([*(resampler.push(c) for c in chunked(x, [1000, 3, 4410, 17])), resampler.finish()])
    g = np.gcd(16000, rate)
    assert np.array_equal(out, resample_poly(x, 16000 // g, rate // g))


def test_pcm_chunks_int16_and_channels():
    pcm = np.array([[-32768, 0], [16384, 16384]], np.int16)  # [n, channels]
    assert np.array_equal(pcm_samples(pcm), [-0.5, 0.5])
    with pytest.raises(InputError, match="int16"):
        pcm_samples(np.zeros(4, np.uint8))
    with pytest.raises(InputError, match="not bytes"):
        pcm_samples(b"\x00\x01")


def test_mouth_weights_follow_the_speech_with_the_stated_look_ahead(ckpts):
    pipe = EDTalkPipeline.from_pretrained(ckpts, device="cpu")
    gen = Generator(*pipe.models(expression=False, audio=True), batch_size=4, progress=False)
    wav = speech(1.3, seed=3)
    mouths, parts = MouthStream(gen), []
    fed = 0
    for chunk in chunked(wav, [640 * 3 + 17, 250]):
        parts.append(mouths.push(chunk))
        fed += len(chunk)
        assert sum(len(p) for p in parts) == max(0, fed // 640 - LOOKAHEAD_FRAMES)
    streamed = torch.cat([*parts, mouths.finish()])
    whole = gen.mouth_from_audio(wav)
    assert streamed.shape == whole.shape == (32, 20)
    # Audio2Lip runs on other batches than on the whole recording: float rounding only.
    assert torch.allclose(streamed, whole, atol=1e-5, rtol=0) and whole.std(0).min() > 1e-3


def test_a_growing_source_streams_the_frames_of_its_mouth_weights(ckpts, face):
    """int16 chunks at 48 kHz: the frames come before the source ends, and they are the call's
    frames for the same mouth weights (and within one level of the call on the whole recording)."""
    pipe = EDTalkPipeline.from_pretrained(ckpts, device="cpu", batch_size=4)
    wav16 = speech(1.2, seed=4)
    wav48 = resample_poly(wav16, 3, 1)
    pcm = np.round(np.clip(wav48, -1, 1) * 32767).astype(np.int16)
    pose, exp = Weights(np.random.default_rng(5).normal(0, 0.3, (7, 6))), Weights(np.full((5, 10), 0.2, np.float32))
    chunks = CountingChunks(pcm, 4800)  # 0.1 s chunks, 12 of them
    frames = pipe.stream(source=face, audio=chunks, sample_rate=48000, pose=pose, exp=exp, crop=False)
    assert chunks.taken == 0
    first = next(frames)
    # One batch (4 frames) + the 4-frame look-ahead = 8 frames = 0.32 s: 4 chunks, not 12.
    assert chunks.taken == 4
    streamed = np.stack([first, *frames])
    assert chunks.taken == 12 and streamed.shape == (30, 64, 64, 3)

    gen = Generator(*pipe.models(expression=True, audio=True), batch_size=4, progress=False)
    mouths = MouthStream(gen, sample_rate=48000)
    mouth = torch.cat([*(mouths.push(c) for c in CountingChunks(pcm, 4800)), mouths.finish()])
    same_mouth = pipe(source=face, lip=Weights(mouth), pose=pose, exp=exp, crop=False).frames
    assert np.array_equal(streamed, same_mouth)
    whole = pipe(source=face, audio=load_audio(pcm.astype(np.float64) / 32768, 48000), pose=pose, exp=exp,
                 crop=False).frames
    assert np.abs(streamed.astype(int) - whole).max() <= 1


def test_what_a_growing_source_cannot_drive_is_one_clear_error(ckpts, face, tmp_path):
    pipe = EDTalkPipeline.from_pretrained(ckpts, device="cpu")
    chunks = lambda: iter([speech(0.5)])  # noqa: E731
    cases = [
        (dict(pose="audio"), "pose", "whole utterance"),
        (dict(exp="audio"), "exp", "whole utterance"),
        (dict(lip=np.stack([face] * 3)), "lip", "leave lip out"),
        (dict(legacy_normalize=True), "legacy_normalize", "extremes"),
        (dict(sample_rate=0), "sample_rate", "positive"),
    ]
    for options, field, words in cases:
        with pytest.raises(InputError, match=words) as err:
            pipe.stream(source=face, audio=chunks(), crop=False, **options)
        assert err.value.field == field
    clip = tmp_path / "talk.mp4"
    from edtalk.video import write_video
    write_video(clip, np.stack([face] * 4))
    with pytest.raises(InputError, match="dubbing") as err:
        pipe.stream(source=clip, audio=chunks())
    assert err.value.field == "audio"
    with pytest.raises(InputError, match="stream()") as err:
        pipe(source=face, audio=chunks(), crop=False)
    assert err.value.field == "audio"
    with pytest.raises(InputError, match="sample_rate") as err:
        pipe.stream(source=face, audio=speech(0.5), sample_rate=48000, crop=False)
    assert err.value.field == "sample_rate"
    with pytest.raises(InputError, match="shorter than one video frame") as err:
        list(pipe.stream(source=face, audio=iter([np.zeros(600, np.float32)]), crop=False))
    assert err.value.field == "audio"
    with pytest.raises(InputError, match="float, int16 or int32"):
        list(pipe.stream(source=face, audio=iter([np.zeros(6400, np.uint8)]), crop=False))


def test_a_transcript_alone_can_set_the_expression_of_a_stream():
    bundled = REPO / "checkpoints" / "synthtalk"
    pipe = EDTalkPipeline.from_pretrained(bundled, device="cpu")
    synth = np.asarray(Image.open(REPO / "examples" / "synthtalk_face.png").convert("RGB"))
    wav = speech(0.4)
    streamed = np.stack(list(pipe.stream(source=synth, audio=iter([wav]), exp_text="I am so happy", crop=False)))
    assert streamed.shape[0] == 10
    mouths_only = np.stack(list(pipe.stream(source=synth, audio=iter([wav]), crop=False)))
    assert np.abs(streamed.astype(int) - mouths_only).max() > 0  # the expression changed the face
