import numpy as np
import pytest

from edtalk.errors import FaceNotFoundError, InputError
from edtalk.face import crop_video, face_tube
from edtalk.face.tube import box_iou, enlarge_box, fill_track, square_box, track_faces


def test_iou_uses_inclusive_areas():
    assert box_iou((0, 0, 9, 9), (0, 0, 9, 9)) == 1.0
    assert box_iou((0, 0, 9, 9), (5, 0, 14, 9)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 9, 9), (20, 20, 30, 30)) == 0.0


def test_enlarge_formula_and_square_padding():
    assert enlarge_box((0, 0, 100, 100)) == (-10, -10, 110, 110)
    assert enlarge_box((0, 0, 100, 200)) == (-70, -20, 170, 220)  # w_inc 0.7, h_inc 0.1
    assert square_box((-70, -20, 170, 220)) == (-70, -20, 170, 220)
    assert square_box((10, 10, 50, 30)) == (10, 0, 50, 40)


def test_tracking_follows_the_initial_box_and_splits_on_jumps():
    a, b = (100, 100, 200, 200, 1.0), (400, 100, 500, 200, 1.0)
    dets = [[a], [a, b], None, [b], [a]]
    tubes = track_faces(dets, max_gap=0)
    spans = sorted((t.start, t.end) for t in tubes)
    # a: frame 0-1, missed at the examined frame 3 → dies; comes back as a new tube at 4.
    assert spans == [(0, 1), (1, 3), (4, 4)]
    assert len(track_faces(dets, max_gap=2)) == 2


def test_fill_track_interpolates_and_holds():
    rows = np.array([[np.nan] * 2, [0, 10], [np.nan] * 2, [4, 20], [np.nan] * 2])
    np.testing.assert_allclose(fill_track(rows), [[0, 10], [0, 10], [2, 15], [4, 20], [4, 20]])
    with pytest.raises(FaceNotFoundError):
        fill_track(np.full((3, 4), np.nan))


def test_tube_on_a_moving_clip(moving_clip):
    from edtalk.face import get_landmarker

    crops, params = face_tube(moving_clip)
    assert crops.shape == (30, 256, 256, 3) and crops.dtype == np.uint8
    x1, y1, x2, y2 = params.box
    assert x2 - x1 == y2 - y1 and 120 < x2 - x1 < 320
    assert params.track.shape == (30, 4) and np.isfinite(params.track).all()
    assert (params.start, params.end) == (0, 29)  # end frame included
    # The fixed box covers the detected face in every frame, first and last included.
    for i in (0, 15, 29):
        fx1, fy1, fx2, fy2, _ = get_landmarker().detect(moving_clip[i])[0]
        assert x1 <= fx1 and y1 <= fy1 and fx2 <= x2 and fy2 <= y2
    # Sparse detection gives nearly the same box.
    _, sparse = face_tube(moving_clip, detect_every=7)
    assert np.abs(np.subtract(sparse.box, params.box)).max() <= 6


def test_tube_survives_faceless_frames_and_fails_on_faceless_clips(moving_clip):
    frames = moving_clip[:12].copy()
    frames[4:7] = 128  # three blank frames
    crops, params = face_tube(frames)
    assert len(crops) == 12 and np.isfinite(params.track).all()
    np.testing.assert_allclose(params.track[5], (params.track[3] + params.track[7]) / 2, atol=1e-9)
    with pytest.raises(FaceNotFoundError, match="no face"):
        face_tube(np.full((5, 120, 160, 3), 90, np.uint8))


def test_crop_video_dispatch(moving_clip):
    crops, params = crop_video(moving_clip[:3], size=64)
    assert crops.shape == (3, 64, 64, 3) and params.kind == "tube"
    crops, params = crop_video(moving_clip[:3], method="template")
    assert crops.shape == (3, 256, 256, 3) and params.kind == "template"
    with pytest.raises(InputError):
        crop_video(moving_clip[:3], method="nope")
