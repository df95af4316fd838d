"""SynthTalk's turn cues (render_frames(turn_cues=True), --turn-cues): a head turn moves the ears,
the side of the head and the back hair against the face and relights the face; frontal frames,
landmarks and factors are untouched, and the default rendering is the old one."""

import json

import numpy as np
import pytest

from edtalk.cli import main as edtalk_main
from edtalk.data import synthtalk as st
from edtalk.data import synthtalk_render as R

SIZE = 128


def bald_on_blue() -> R.Identity:
    """A bald speaker on a pure blue background: blue stays 255 off the head (the light spot adds
    (1 − bg)·spot, nothing to a channel at 1), the skin's blue channel is far below it."""
    return R.Identity(hair_style="bald", bg_top=(0.0, 0.0, 1.0), bg_bottom=(0.0, 0.0, 1.0), shirt=(0.0, 0.0, 1.0))


def render(ident, poses, cues, **kw):
    poses = np.asarray(poses, np.float64)
    T = len(poses)
    mouth = kw.get("mouth", np.zeros((T, 3)))
    exp = kw.get("expression", np.zeros((T, 6)))
    return R.render_frames(ident, mouth, poses, exp, np.zeros(T), size=SIZE, turn_cues=cues)


def to_pixel(q):
    return (q + 0.5) * (SIZE / R.CANONICAL) - 0.5


def head_extent(frame, row):
    """First and last column of the head (non-background) in a row, with sub-pixel edges from the
    anti-aliased coverage of the blue channel (relative to the colour just inside each edge)."""
    blue = frame[row, :, 2].astype(float)
    inside = np.nonzero(blue < 200)[0]
    edges = []
    for edge, step in ((inside[0], 1), (inside[-1], -1)):
        cover = np.clip((255.0 - blue) / (255.0 - blue[edge + 3 * step]), 0, 1)
        while cover[edge] < 0.5:  # the first pixel at least half covered
            edge += step
        while cover[edge - step] >= 0.5:
            edge -= step
        edges.append(edge - step * (cover[edge] - 0.5))  # the 50 % crossing, interpolated
    return edges[0], edges[1]


def test_frontal_frames_are_the_same_with_and_without_cues():
    rng = np.random.default_rng(0)
    for seed in range(4):  # long, fringe, short and bald hair among them
        ident = R.sample_identity(np.random.default_rng(seed))
        poses = [[0, 0, 0, 0, 0, 1], [0, 0, 0, 0.03, -0.02, 1.1], [0, 0, 0, -0.05, 0.04, 0.9]]
        kw = {"mouth": rng.uniform(0, 1, (3, 3)), "expression": rng.uniform(0, 0.6, (3, 6))}
        plain, lm_plain = render(ident, poses, False, **kw)
        cued, lm_cued = render(ident, poses, True, **kw)
        np.testing.assert_array_equal(plain, cued)
        np.testing.assert_array_equal(lm_plain, lm_cued)


def test_a_yaw_turn_brings_one_ear_out_and_hides_the_other():
    ident = bald_on_blue()
    base = R.identity_landmarks(ident)
    yaw = 0.3
    row = 64  # canonical y = (64 + 0.5)·2 − 0.5 = 128.5: through the ears' centres (y 128)
    ear_left, ear_right = base[0, 0] - 3.0 - 9.0, base[16, 0] + 3.0 + 9.0  # outer edges (half-width 9)
    frames = {cues: render(ident, [[yaw, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1]], cues)[0] for cues in (False, True)}

    # frontal: the head spans ear to ear either way
    lo, hi = head_extent(frames[True][1], row)
    assert lo == pytest.approx(to_pixel(ear_left), abs=0.35) and hi == pytest.approx(to_pixel(ear_right), abs=0.35)

    # turned, cues on: the left ear lies behind the pivot (EAR_DEPTH < 0), so it moves against the
    # face, out to where the flat layer puts it: (x − 127.5 + sin(yaw)·EAR_DEPTH)·cos(yaw) + 127.5
    pose = np.array([[yaw, 0, 0, 0, 0, 1.0]])
    expected_left = R.layer_forward(np.array([[[ear_left, 128.5]]]), pose, R.EAR_DEPTH)[0, 0, 0]
    assert expected_left == pytest.approx((ear_left - 127.5 + np.sin(yaw) * R.EAR_DEPTH) * np.cos(yaw) + 127.5)
    lo_cued, hi_cued = head_extent(frames[True][0], row)
    assert lo_cued == pytest.approx(to_pixel(expected_left), abs=0.35)
    # the right ear moved in behind the cheek: the head ends at the face's outline, past the ear's edge
    right_ear_edge = R.layer_forward(np.array([[[ear_right, 128.5]]]), pose, R.EAR_DEPTH)[0, 0, 0]
    assert hi_cued > to_pixel(right_ear_edge) + 0.5
    # cues off: the ears ride on the face's depth bump; the left one stays ~6 px further in, the
    # right one sticks out ~5 px past the face
    lo_plain, hi_plain = head_extent(frames[False][0], row)
    bump_left, bump_right = R.pose_forward(np.array([[[ear_left, 128.5], [ear_right, 128.5]]]), pose)[0, :, 0]
    assert lo_plain == pytest.approx(to_pixel(bump_left), abs=0.5)
    assert hi_plain == pytest.approx(to_pixel(bump_right), abs=0.5)
    assert lo_plain - lo_cued > 5.0 and hi_plain - hi_cued > 4.0


def test_a_pitch_turn_shows_the_top_of_the_head_against_the_face():
    ident = bald_on_blue()
    poses = [[0, 0, 0, 0, 0, 1], [0, 0.25, 0, 0, 0, 1], [0, -0.25, 0, 0, 0, 1]]
    column = 64  # the head's centre column

    def top(frame):
        blue = frame[:, column, 2].astype(float)
        return int(np.nonzero(blue < 200)[0][0])

    cued, _ = render(ident, poses, True)
    plain, _ = render(ident, poses, False)
    # looking down (pitch > 0 moves the face down): without cues the whole head drops with the face;
    # with cues the skull stays up (it lies behind the pivot and moves up), so the head top is higher
    assert top(cued[0]) == top(plain[0])
    assert top(cued[1]) < top(plain[1]) - 3
    assert top(cued[2]) <= top(plain[2])


def test_the_light_brightens_the_face_turned_towards_it():
    ident = R.sample_identity(np.random.default_rng(1))
    poses = [[-0.3, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1], [0.3, 0, 0, 0, 0, 1]]
    cued, lm = render(ident, poses, True)
    plain, _ = render(ident, poses, False)

    def cheek_luma(frames, t):  # a patch between the eye and the jaw on each side, averaged
        pts = [0.5 * (lm[t, 2] + lm[t, 31]), 0.5 * (lm[t, 14] + lm[t, 35])]
        vals = [frames[t, int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3].astype(float).mean() for x, y in pts]
        return float(np.mean(vals))

    # the light comes from the upper left (TURN_LIGHT x < 0): yaw < 0 turns the face towards it
    assert R.TURN_LIGHT[0] < 0 and R.TURN_LIGHT[1] < 0
    lit = [cheek_luma(cued, t) for t in range(3)]
    flat = [cheek_luma(plain, t) for t in range(3)]
    assert lit[0] > lit[1] + 5 > lit[2] + 10
    assert lit[1] == pytest.approx(flat[1])
    assert abs(flat[0] - flat[2]) < 3  # without the light a turn changes no brightness
    # the factor itself: 1 at a frontal pose, and the first-order change at the face centre is gain·L_x·yaw
    cx, cy = np.array([[[R.FACE_CENTER[0]]]], np.float32), np.array([[[R.FACE_CENTER[1]]]], np.float32)
    import torch

    poses = np.array([[0.0, 0, 0, 0, 0, 1], [0.01, 0, 0, 0, 0, 1]])
    f = R.turn_light(torch.from_numpy(cx), torch.from_numpy(cy), poses)
    assert float(f[0]) == pytest.approx(1.0)
    assert float(f[1]) - 1.0 == pytest.approx(R.TURN_LIGHT_GAIN * R.TURN_LIGHT[0] * np.sin(0.01), rel=0.02)


def test_turn_cues_are_deterministic_and_keep_factors_and_landmarks(tmp_path):
    kw = dict(kind="mead", size=32, seed=4, speakers=2, emotions=("happy",), levels=(3,), frames=6, mel=False,
              validate=False, quiet=True)
    st.generate(tmp_path / "a", **kw)
    st.generate(tmp_path / "b", turn_cues=True, **kw)
    st.generate(tmp_path / "c", turn_cues=True, **kw)
    a, b, c = (tmp_path / x / "mead" for x in "abc")
    name = "M101#happy#level_3#001"
    for sub, ext in (("factors", "npz"), ("landmark", "npy"), ("bbox", "npy"), ("audio", "wav")):
        assert (a / sub / f"{name}.{ext}").read_bytes() == (b / sub / f"{name}.{ext}").read_bytes(), sub
    assert (b / "video" / f"{name}.mp4").read_bytes() == (c / "video" / f"{name}.mp4").read_bytes()
    assert (a / "video" / f"{name}.mp4").read_bytes() != (b / "video" / f"{name}.mp4").read_bytes()
    assert json.loads((b / "synthtalk.json").read_text())["turn_cues"] is True
    assert "turn_cues" not in json.loads((a / "synthtalk.json").read_text())  # the default manifest as before


def test_cli_flag(tmp_path, capsys):
    assert edtalk_main(["synthtalk", "--out", str(tmp_path), "--kind", "mead", "--size", "32", "--speakers", "2", "--emotions", "sad",
                    "--levels", "3", "--frames", "4", "--no-mel", "--quiet", "--no-validate", "--turn-cues"]) == 0
    assert json.loads((tmp_path / "mead" / "synthtalk.json").read_text())["turn_cues"] is True
    with pytest.raises(SystemExit):
        edtalk_main(["synthtalk", "--help"])
    assert "--turn-cues" in capsys.readouterr().out
