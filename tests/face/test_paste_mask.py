"""Paste-back through the soft landmark face mask: round trips, untouched outsides, no seams."""
import numpy as np
import pytest
from skimage.draw import polygon2mask

from edtalk.errors import InputError
from edtalk.face import CropParams, face_mask, face_tube, get_landmarker, paste_back
from edtalk.face.align import TemplateCrop, warp_to_template
from edtalk.face.paste import default_landmarks, mask_outline, template_landmarks
from edtalk.face.tube import resize_crops


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return np.inf if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def outside_outline(params, size, frame_shape, landmarks, margin=2):
    """Frame pixels farther than `margin` px from the mask outline mapped into the frame."""
    from scipy.ndimage import binary_dilation

    outline = params.crop_to_frame(mask_outline(landmarks), size)
    inside = polygon2mask(frame_shape, outline[:, ::-1])
    return ~binary_dilation(inside, iterations=margin)


def shifted_params(params, dx, dy):
    shift = np.array([[1.0, 0, dx], [0, 1.0, dy], [0, 0, 1.0]])
    return TemplateCrop(matrix=shift @ params.matrix, size=params.size, frame_shape=params.frame_shape)


def test_identity_crop_round_trips_exactly():
    frame = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    params = CropParams(matrix=np.eye(3), size=64, frame_shape=(64, 64))
    np.testing.assert_array_equal(paste_back(frame, frame[None], params)[0], frame)


def test_unchanged_template_crop_round_trips_and_outside_is_untouched(astronaut, astronaut_crop):
    crop, params = astronaut_crop
    out = paste_back(astronaut, crop[None], params)[0]
    assert psnr(out, astronaut) > 40
    # A black face: it replaces the inside of the mask and nothing outside it.
    black = paste_back(astronaut, np.zeros_like(crop)[None], params)[0]
    outside = outside_outline(params, 256, astronaut.shape[:2], default_landmarks(params, 256))
    np.testing.assert_array_equal(black[outside], astronaut[outside])
    assert (black != astronaut).any(axis=2).sum() > 10000  # the face area changed
    inner = params.crop_to_frame(template_landmarks(256)[[30, 33, 51, 57, 28]]).round().astype(int)
    assert black[inner[:, 1], inner[:, 0]].max() == 0  # nose and mouth fully generated
    # Tiny models' 64² faces map back through the same crop.
    small = resize_crops([crop], 64)
    assert psnr(paste_back(astronaut, small, params)[0], astronaut) > 35


def test_mask_ramp_width_follows_face_size():
    big, small = face_mask(template_landmarks(256), 256), face_mask(template_landmarks(128), 128)
    ramp_big = ((big > 0) & (big < 1)).sum(axis=1).max()
    ramp_small = ((small > 0) & (small < 1)).sum(axis=1).max()
    assert ramp_big == pytest.approx(2 * ramp_small, abs=2)
    assert big[0].max() == 0 and big[:, 0].max() == 0  # zero at the crop border


def test_moving_head_with_per_frame_crops(astronaut, astronaut_crop, moving_clip):
    """Each frame has its own crop (the head drifts); the mask follows it and leaves no seam."""
    _, params = astronaut_crop
    frames = moving_clip[::6]
    shifts = [(6 * i, (2 * 6 * i) // 3) for i in range(len(frames))]
    per_frame = [shifted_params(params, dx, dy) for dx, dy in shifts]
    crops = np.stack([warp_to_template(f, p.matrix) for f, p in zip(frames, per_frame)])
    out = paste_back(frames, crops, per_frame)
    for i, (frame, p) in enumerate(zip(frames, per_frame)):
        assert psnr(out[i], frame) > 40
        outside = outside_outline(p, 256, frame.shape[:2], default_landmarks(p, 256))
        np.testing.assert_array_equal(out[i][outside], frame[outside])

    # A white face on black frames shows the blend weight itself.
    black = np.zeros_like(frames)
    alpha = paste_back(black, np.full_like(crops, 255), per_frame)[..., 0].astype(int)
    for i, (dx, dy) in enumerate(shifts):  # the same weights, moved with the head
        np.testing.assert_array_equal(alpha[i, dy:, dx:], alpha[0, :512 - dy, :512 - dx])
    # Smooth: neighbours differ by at most the smoothstep's steepest slope (1.5/ramp width), no jump.
    outline = mask_outline(default_landmarks(params, 256))
    x, y = outline[:, 0], outline[:, 1]
    face_size = np.sqrt(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    ramp_px = 0.1 * face_size * np.sqrt(abs(np.linalg.det(params.matrix[:2, :2])))
    steepest = max(np.abs(np.diff(alpha, axis=1)).max(), np.abs(np.diff(alpha, axis=2)).max())
    assert alpha.max() == 255 and steepest <= 255 * 1.5 / ramp_px * 1.2 + 1


def test_batches_paste_like_the_whole_clip(moving_clip):
    crops, params = face_tube(moving_clip[:4], size=64)
    faces = crops[:, ::-1].copy()  # any change, so the blend matters
    whole = paste_back(moving_clip[:4], faces, params)
    parts = [paste_back(moving_clip[s:s + 2], faces[s:s + 2], params) for s in (0, 2)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    landmarks = np.stack([default_landmarks(params, 64)] * 4)
    np.testing.assert_array_equal(paste_back(moving_clip[:4], faces, params, landmarks=landmarks), whole)


def test_tube_crop_default_mask_covers_the_detected_face(moving_clip):
    crops, params = face_tube(moving_clip[:2])
    detector = get_landmarker()
    points = detector.landmarks(crops[0], detector.detect(crops[0])[0])
    cols, rows = points.round().astype(int).T
    # The template moved onto the tube's face box covers the whole face (the jaw in its ramp)...
    weight = face_mask(default_landmarks(params, 256), 256)[rows, cols]
    assert weight[17:].min() > 0.9 and weight[:17].min() > 0.2
    # ... which the plain template (where a template crop has the face) does not.
    assert face_mask(template_landmarks(256), 256)[rows, cols][17:].min() < 0.5
    out = paste_back(moving_clip[:2], crops, params, landmarks=points)
    assert psnr(out[1], moving_clip[1]) > 40


def test_paste_back_checks_inputs(astronaut, astronaut_crop):
    crop, params = astronaut_crop
    with pytest.raises(InputError, match="one original frame per face"):
        paste_back(np.stack([astronaut] * 2), np.stack([crop] * 3), params)
    with pytest.raises(InputError, match="crop was made"):
        paste_back(astronaut[:300], crop[None], params)
    with pytest.raises(InputError, match="one crop per face"):
        paste_back(np.stack([astronaut] * 2), np.stack([crop] * 2), [params])
    with pytest.raises(InputError, match="one landmark set per face"):
        paste_back(astronaut, crop[None], params, landmarks=np.zeros((2, 68, 2)))
    with pytest.raises(InputError, match=r"\[68,2\]"):
        paste_back(astronaut, crop[None], params, landmarks=np.zeros((5, 2)))
    with pytest.raises(InputError, match="degenerate"):
        paste_back(astronaut, crop[None], params, landmarks=np.full((68, 2), np.nan))
    on_a_line = np.stack([np.arange(68.0), np.arange(68.0)], axis=1)
    with pytest.raises(InputError, match="degenerate"):
        paste_back(astronaut, crop[None], params, landmarks=on_a_line)
