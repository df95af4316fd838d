"""The disentanglement probe runs on a real (tiny, random) EDTalk model over a SynthTalk tree."""
import numpy as np

from edtalk.data.synthtalk import generate
from edtalk.eval.model_probe import evaluate_model, extract_weights
from edtalk.model import EDTalk
from edtalk.testing import write_tiny_checkpoints


def test_probe_report_on_tiny_model(tmp_path):
    ckpt = write_tiny_checkpoints(tmp_path / "ckpt")["EDTalk.pt"]
    model = EDTalk.from_official(ckpt)
    generate(tmp_path / "synth", kind="mead", size=64, seed=0, speakers=2, emotions=["happy", "sad"],
             levels=[1, 3], frames=16, quiet=True)
    root = tmp_path / "synth" / "mead"
    report = evaluate_model(model, root, progress=False)
    assert set(report["own"]) == {"mouth", "pose", "expression"}
    for g, r2 in report["own"].items():
        assert np.isfinite(r2) and r2 <= 1.0
    # Random weights are not disentangled: far from the perfect extractor's score of ~1.
    assert report["summary"]["score"] < 0.8
    weights = extract_weights(model, root, ["M101#happy#level_1#001"], progress=False)
    assert weights["mouth"].shape == (16, 20) and weights["expression"].shape == (16, 10)
