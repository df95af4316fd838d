"""The disentanglement probe of a model over a SynthTalk tree: exact on planted weights, low on random ones."""
import numpy as np
import pytest
import torch

from edtalk.config import EDTalkConfig
from edtalk.data import layout
from edtalk.data.synthtalk import generate, load_factors
from edtalk.eval.disentangle import disentanglement_report
from edtalk.eval.model_probe import evaluate_model, extract_weights
from edtalk.model import EDTalk
from edtalk.pipelines.preprocess import frames_to_tensor
from edtalk.testing import write_tiny_checkpoints
from edtalk.video import read_video


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate(out, kind="mead", size=64, seed=0, speakers=2, emotions=["happy", "sad"], levels=[1, 3], frames=16,
             quiet=True)
    return out / "mead"


class PlantedModel(torch.nn.Module):
    """Recognises each frame of the tree and returns weights planted for it: the mouth head reads
    the true mouth, the pose head the true pose plus the mouth (a leak), the expression head noise."""

    def __init__(self, root, planted):
        super().__init__()
        self.config = EDTalkConfig.tiny()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # device/dtype for the probe
        _, _, names = load_factors(root)
        frames = torch.cat([frames_to_tensor(read_video(layout.clip_path(root, "video", n))[0], self.config.size)
                            for n in names])
        self.rows = {self.key(f): i for i, f in enumerate(frames)}
        assert len(self.rows) == len(frames), "two identical frames: the lookup would be ambiguous"
        self.planted = {k: torch.from_numpy(v) for k, v in planted.items()}

    @staticmethod
    def key(image):
        return image.float().numpy().tobytes()

    def motion_weights(self, images):
        idx = torch.tensor([self.rows[self.key(im)] for im in images])
        return {group: w[idx] for group, w in self.planted.items()}


def test_probe_report_is_exact_on_planted_weights(tree):
    truth, groups, names = load_factors(tree)
    noise = np.random.default_rng(0).standard_normal((len(groups), 10)).astype(np.float32)
    planted = {"mouth": truth["mouth"], "pose": np.concatenate([truth["pose"], truth["mouth"]], 1), "exp": noise}
    planted = {k: v.astype(np.float32) for k, v in planted.items()}  # the probe reads float32 weights
    report = evaluate_model(PlantedModel(tree, planted), tree, progress=False)
    expected = disentanglement_report({"mouth": planted["mouth"], "pose": planted["pose"], "expression": noise},
                                      {k: truth[k] for k in ("mouth", "pose", "expression")}, groups=groups)
    for key in ("own", "leak", "excess_leak"):
        assert report[key] == pytest.approx(expected[key], abs=1e-9)
    # And the numbers mean what was planted.
    assert report["own"]["mouth"] > 0.99 and report["own"]["pose"] > 0.99
    assert report["leak"]["pose"] > 0.99 and report["leak_to"]["pose"] == "mouth"
    assert report["leak"]["mouth"] < 0.2 and report["own"]["expression"] < 0.2
    assert report["summary"]["score"] == pytest.approx(expected["summary"]["score"], abs=1e-9)
    assert report["summary"]["score"] < 0.5  # one leaking head and one blind head cost most of it


def test_probe_report_on_a_random_tiny_model(tree, tmp_path):
    model = EDTalk.from_official(write_tiny_checkpoints(tmp_path / "ckpt")["EDTalk.pt"])
    report = evaluate_model(model, tree, progress=False)
    assert set(report["own"]) == {"mouth", "pose", "expression"}
    # Random weights predict no factor of held-out clips: far from the planted model's ~1.
    assert max(report["own"].values()) < 0.3 and report["summary"]["score"] < 0.3
    weights = extract_weights(model, tree, ["M101#happy#level_1#001"], progress=False)
    assert weights["mouth"].shape == (16, 20) and weights["expression"].shape == (16, 10)
