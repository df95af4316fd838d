"""LSE through the scorer's real windowing path, with planted and saved SyncNet experts (the network
itself: tests/networks/test_syncnet.py)."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edtalk.audio import SAMPLE_RATE, SAMPLES_PER_FRAME
from edtalk.eval.metrics import Clip, MetricSettings, MetricSuite
from edtalk.eval.metrics.sync import SyncExpertScorer, face_windows
from edtalk.networks.syncnet import SyncNet, SyncNetConfig

class PlantedSyncNet(torch.nn.Module):
    """Random-weight embeddings planted so that audio and video agree at offset 0.

    Video: mouth open ⇔ the lower half of the centre frame (channels 6–8) is bright.  Audio:
    mouth open ⇔ the centre mel rows (frame i of the window) hold a loud tone.  Both map the soft
    open/closed value through the same random 2→8 projection.
    """

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(2, 8)
        torch.nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))

    def _embed(self, openness):
        return self.proj(torch.stack([openness, 1 - openness], dim=1))

    def embed_face(self, faces):
        return self._embed(torch.sigmoid(20 * (faces[:, 6:9].mean(dim=(1, 2, 3)) - 0.5)))

    def embed_audio(self, mels):
        return self._embed(torch.sigmoid(4 * mels[:, 0, :, 7:9].amax(dim=1).mean(dim=1)))


def _talking_clip(open_frames, seed=0):
    """Frames whose lower half is white while the mouth is open; audio loud exactly then."""
    t = len(open_frames)
    frames = np.full((t, 48, 48, 3), 40, np.uint8)
    frames[np.asarray(open_frames, bool), 24:] = 255
    rng = np.random.default_rng(seed)
    n = np.arange(t * SAMPLES_PER_FRAME)
    wav = 1e-4 * rng.normal(size=n.size)
    loud = np.repeat(np.asarray(open_frames, bool), SAMPLES_PER_FRAME)
    wav[loud] += 0.5 * np.sin(2 * np.pi * 440 * n[loud] / SAMPLE_RATE)
    return frames, wav.astype(np.float32)


def _syllables(seed, t=75):
    rng = np.random.default_rng(seed)
    states, value = [], 0
    while len(states) < t:
        states += [value] * int(rng.integers(3, 7))
        value = 1 - value
    return np.array(states[:t])


def test_planted_syncnet_finds_the_offset_and_scores_synced_above_shifted():
    scorer = SyncExpertScorer(PlantedSyncNet())
    speech = _syllables(1)
    frames, wav = _talking_clip(speech)
    synced = scorer.score(frames, wav)
    assert synced["offset"] == 0 and synced["lse_d"] < 0.5  # > 0: mel windows blur the syllable edges
    # the video runs 3 frames late: video frame i shows what the audio said at frame i−3, so it
    # matches audio frame i−3; syncnet_python reports that as AV offset +3 (vshift − argmin)
    late_frames, _ = _talking_clip(np.concatenate([speech[:3], speech[:-3]]))
    late = scorer.score(late_frames, wav)
    assert late["offset"] == 3
    other_frames, _ = _talking_clip(_syllables(2))
    unrelated = scorer.score(other_frames, wav)
    assert synced["lse_c"] > unrelated["lse_c"] and synced["lse_d"] < unrelated["lse_d"]
    # at offset 0 the shifted clip is far out of sync: its distance there is large
    from edtalk.eval.metrics.sync import padded_distances

    mean = padded_distances(*scorer.embeddings(late_frames, wav), 15).mean(0)
    assert float(mean[15]) > 4 * synced["lse_d"]  # shift 0 is the middle column


def test_face_windows_stack_five_lower_halves_frame_major():
    frames = np.stack([np.full((96, 96, 3), 10 * i, np.uint8) for i in range(6)])
    frames[:, :48] = 255  # upper halves never reach the encoder
    win = face_windows(frames)
    assert win.shape == (6, 15, 48, 96)
    centre_values = win[:, ::3].mean(dim=(2, 3)) * 255  # one channel per stacked frame
    expected = np.clip(np.arange(6)[:, None] + np.arange(-2, 3)[None], 0, 5) * 10
    np.testing.assert_allclose(centre_values.numpy(), expected, atol=0.5)


def test_suite_runs_lse_with_a_saved_syncnet_expert_labelled_not_comparable(tmp_path):
    SyncNet(SyncNetConfig.tiny()).save_pretrained(tmp_path / "expert")
    suite = MetricSuite(MetricSettings(paths={"syncnet": str(tmp_path / "expert")}, only=("lse_c", "lse_d")))
    assert suite.status["lse_c"].ok and not suite.status["lse_c"].comparable
    frames, wav = _talking_clip(_syllables(3, 40))
    row = suite.row(Clip("x", frames, frames, wav=wav))
    assert np.isfinite(row["lse_d"]) and row["lse_c"] >= 0 and -15 <= row["av_offset"] <= 15


class PlantedSyncNetV2(torch.nn.Module):
    """syncnet_v2's interface with planted sync: the first frame's lower half (video, BGR 0–255)
    and the log energy (MFCC c0) of the window's first 4 MFCC rows (audio, int16 scale) both say
    "open"."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(2, 8)
        torch.nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(1))

    def forward(self, mfcc, video):
        # int16-scale c0: ≈ 9 for the 1e-4 noise floor, ≈ 23 for the 0.5 tone
        audio_open = torch.sigmoid(mfcc[:, 0, 0, 0:4].mean(dim=1) - 16.0)
        video_open = torch.sigmoid(20 * (video[:, :, 0, 112:, :].mean(dim=(1, 2, 3)) / 255 - 0.5))
        return (self.proj(torch.stack([audio_open, 1 - audio_open], dim=1)),
                self.proj(torch.stack([video_open, 1 - video_open], dim=1)))


def _crops(frames):
    return np.stack([np.asarray(Image.fromarray(f).resize((224, 224), Image.NEAREST)) for f in frames])


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_syncnet_v2_user_file_runs_the_reference_search_and_is_marked_unverifiable(tmp_path):
    torch.jit.script(PlantedSyncNetV2()).save(str(tmp_path / "syncnet_v2.pt"))
    SyncNet(SyncNetConfig.tiny()).save_pretrained(tmp_path / "expert")
    suite = MetricSuite(MetricSettings(paths={"syncnet_v2": str(tmp_path / "syncnet_v2.pt"),
                                              "syncnet": str(tmp_path / "expert")}, only=("lse_c", "lse_d")))
    st = suite.status["lse_d"]
    assert st.network == "syncnet_v2 (user TorchScript/.pt2 export)"
    # an export cannot be checked against syncnet_v2's weights, and the crop uses dlib, not S3FD
    assert [s.name for s in st.steps if not s.match] == ["weights", "crop"]
    speech = _syllables(4, 40)
    frames, wav = _talking_clip(speech)
    synced = suite.sync.score(_crops(frames), wav)
    late_frames, _ = _talking_clip(np.concatenate([speech[:2], speech[:-2]]))
    late = suite.sync.score(_crops(late_frames), wav)
    assert (synced["offset"], late["offset"], synced["windows"]) == (0, 2, 35)
    assert synced["lse_c"] > 1.0 and synced["lse_d"] < 0.5


def test_missing_sync_networks_name_both_flags(monkeypatch):
    monkeypatch.delenv("EDTALK_SYNCNET", raising=False)
    monkeypatch.delenv("EDTALK_SYNCNET_V2", raising=False)
    suite = MetricSuite(MetricSettings(paths={}, only=("lse_c",)))
    reason = suite.status["lse_c"].reason
    assert reason.startswith("no weights: pass --syncnet-v2 or set EDTALK_SYNCNET_V2") and "--syncnet / EDTALK_SYNCNET" in reason
