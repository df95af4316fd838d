import numpy as np
import pytest

from edtalk.errors import EDTalkError, FaceNotFoundError, InputError
from edtalk.face import (TEMPLATE_68, crop_image, crop_video_to_template, estimate_transform, get_landmarker,
                         template_landmark_error, umeyama, warp_to_template)
from edtalk.face.geometry import apply, resize_matrix


def similarity(scale, angle, tx, ty):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[scale * c, -scale * s, tx], [scale * s, scale * c, ty], [0, 0, 1.0]])


def test_umeyama_recovers_a_known_similarity_exactly():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 256, (47, 2))
    true = similarity(0.73, 0.4, 31.0, -12.5)
    est = umeyama(src, apply(true, src))
    np.testing.assert_allclose(est, true, atol=1e-10)


def test_umeyama_never_reflects():
    rng = np.random.default_rng(1)
    src = rng.uniform(-1, 1, (20, 2))
    mirrored = src * [-1, 1]
    est = umeyama(src, mirrored)
    assert np.linalg.det(est[:2, :2]) > 0


def test_template_constant():
    assert TEMPLATE_68.shape == (68, 2)
    assert tuple(TEMPLATE_68[0]) == (61, 119) and tuple(TEMPLATE_68[47]) == (162, 116)
    assert tuple(TEMPLATE_68[67]) == (132, 181)


def test_transform_uses_points_0_to_46_only():
    lm = apply(similarity(1.7, -0.1, 80, 40), TEMPLATE_68)
    lm[47:] += 50.0  # mouth and point 47 moved: must not change the fit
    np.testing.assert_allclose(estimate_transform(lm), similarity(1.7, -0.1, 80, 40), atol=1e-9)


def test_warp_samples_input_at_T_of_output():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    shift = np.array([[1, 0, 7], [0, 1, 3], [0, 0, 1.0]])  # output (x,y) reads input (x+7, y+3)
    out = warp_to_template(image, shift, 256)
    expected = image[3:259, 7:263].astype(int)
    diff = out.astype(int) - expected
    assert diff.max() == 0 and diff.min() >= -1  # ×255 then truncation may lose one level
    # Outside the input: constant 0.
    far = warp_to_template(image, np.array([[1, 0, 1000], [0, 1, 0], [0, 0, 1.0]]), 16)
    assert far.max() == 0


def test_detects_one_plausible_face_on_astronaut(astronaut):
    boxes = get_landmarker("dlib").detect(astronaut)
    assert len(boxes) == 1
    x1, y1, x2, y2, score = boxes[0]
    assert 150 < x1 < 200 and 60 < y1 < 110 and 240 < x2 < 290 and 140 < y2 < 190
    assert 60 < x2 - x1 < 130 and score > 0


def test_crop_lands_on_the_template(astronaut_crop):
    crop, params = astronaut_crop
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    assert params.frame_shape == (512, 512) and params.landmarks.shape == (68, 2)
    assert template_landmark_error(crop) < 8.0
    assert template_landmark_error(crop, points=range(47)) < 6.0


def test_crop_with_given_landmarks_skips_detection(astronaut, astronaut_crop):
    crop, params = astronaut_crop
    again, _ = crop_image(astronaut, landmarks=params.landmarks, landmarker=_Exploding())
    np.testing.assert_array_equal(again, crop)


class _Exploding:
    name = "boom"

    def detect(self, image):
        raise AssertionError("detection should be skipped")


def test_small_output_is_a_resized_256_crop(astronaut, astronaut_crop):
    crop, params = astronaut_crop
    small, small_params = crop_image(astronaut, landmarks=params.landmarks, size=64)
    assert small.shape == (64, 64, 3)
    assert abs(small.astype(float).mean() - crop.astype(float).mean()) < 2.0
    # Pixel-centre mapping: the centre of the 64² crop and of the 256² crop is the same point.
    np.testing.assert_allclose(small_params.crop_to_frame([[31.5, 31.5]], size=64),
                               params.crop_to_frame([[127.5, 127.5]]), atol=1e-9)
    np.testing.assert_allclose(resize_matrix(256, 64) @ [0, 0, 1], [1.5, 1.5, 1])


@pytest.mark.parametrize("name", ["gray", "camera"])
def test_no_face_raises_one_clear_error(name):
    from skimage import data

    image = np.full((240, 320, 3), 128, np.uint8) if name == "gray" else np.stack([data.camera()] * 3, -1)
    with pytest.raises(FaceNotFoundError) as info:
        crop_image(image)
    assert "no face found" in str(info.value) and "\n" not in str(info.value)


def test_two_faces_take_the_largest_and_warn(astronaut):
    from PIL import Image

    def scaled(side):
        return np.asarray(Image.fromarray(astronaut).resize((side, side), Image.BICUBIC))

    canvas = np.full((640, 916, 3), 200, np.uint8)
    canvas[:, :640] = scaled(640)
    canvas[100:356, 650:906] = scaled(256)
    with pytest.warns(UserWarning, match="2 faces found"):
        crop, params = crop_image(canvas)
    assert params.landmarks[:, 0].max() < 640  # the big face, on the left
    assert template_landmark_error(crop) < 8.0


def test_bad_inputs_raise_input_errors():
    with pytest.raises(InputError):
        crop_image(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(InputError):
        crop_image(np.zeros((10, 10, 3), np.uint8), landmarks=np.zeros((5, 2)))
    with pytest.raises(EDTalkError, match="unknown face backend"):
        get_landmarker("opencv")


def test_video_template_variant_uses_the_first_frame(astronaut, astronaut_crop):
    frames = np.stack([astronaut, np.roll(astronaut, 20, axis=1)])
    crops, params = crop_video_to_template(frames)
    np.testing.assert_array_equal(crops[0], astronaut_crop[0])
    np.testing.assert_array_equal(params.matrix, astronaut_crop[1].matrix)
    assert not np.array_equal(crops[1], crops[0])  # same transform, moved content


def test_backends_are_cached_and_optional_ones_explain_how_to_install():
    assert get_landmarker("dlib") is get_landmarker("dlib")
    for name, package in (("face_alignment", "face-alignment"), ("mediapipe", "mediapipe")):
        try:
            __import__(name)
            continue
        except ImportError:
            pass
        with pytest.raises(EDTalkError, match=f"pip install {package}"):
            get_landmarker(name)
