"""Video reading: downscaling large drivers while decoding, exact frame counts."""
import numpy as np

from edtalk.video import probe_video, read_video, write_video


def test_read_video_downscales_long_side_and_keeps_aspect(tmp_path):
    wide = np.random.default_rng(0).integers(0, 255, (4, 360, 800, 3), dtype=np.uint8)
    write_video(tmp_path / "wide.mp4", wide, fps=30)
    frames, fps = read_video(tmp_path / "wide.mp4", max_side=400)
    assert frames.shape == (4, 180, 400, 3) and fps == 30
    assert read_video(tmp_path / "wide.mp4")[0].shape == (4, 360, 800, 3)
    assert read_video(tmp_path / "wide.mp4", max_side=2000)[0].shape == (4, 360, 800, 3)
    info = probe_video(tmp_path / "wide.mp4")
    assert (info["frames"], info["width"], info["height"], info["audio"]) == (4, 800, 360, False)
