"""Our generation — an EDTalkPipeline call, as `edtalk generate` makes it (benchmark.our_path) — computes what
the official per-frame call pattern computes, with less work."""
import pytest

from edtalk import EDTalk, EDTalkConfig
from edtalk.pipelines.benchmark import SCENARIOS, count_gflop, our_path, reference_path, scenario_inputs, synthetic_inputs
from edtalk.testing import official_like_state_dict


@pytest.fixture(scope="module")
def models():
    out = {}
    for variant, exp_dim in (("edtalk", 10), ("lip_pose", 0)):
        m = EDTalk(EDTalkConfig.tiny(exp_dim=exp_dim))
        m.load_state_dict(official_like_state_dict(m, seed=4))
        out[variant] = m.eval().requires_grad_(False)
    return out


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
@pytest.mark.parametrize("batch_size", [1, 3])
def test_fast_path_matches_reference_pattern(models, scenario, batch_size):
    model = models[scenario.variant]
    inp = scenario_inputs(scenario, 5, 64, seed=1)
    ref = reference_path(model, scenario, inp)
    ours = our_path(model, scenario, inp, batch_size)
    assert ours.shape == ref.shape == (5, 3, 64, 64)
    assert (ours - ref).abs().max() < 1e-3
    assert (ours - ref).abs().mean() < 1e-5
    # Frames differ from each other (the drivers really drive).
    assert (ref[0] - ref[-1]).abs().mean() > 1e-3


def test_fast_path_does_less_work(models):
    sc = next(s for s in SCENARIOS if s.name == "A-preset")
    model = models["edtalk"]
    inp = synthetic_inputs(4, 64, seed=2)
    one = {**inp, "mouth": inp["mouth"][:1]}
    ref = count_gflop(lambda: reference_path(model, sc, one))
    ours = count_gflop(lambda: our_path(model, sc, inp, 4)) / 4
    assert ours < 0.75 * ref
