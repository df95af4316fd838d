import numpy as np
import pytest


@pytest.fixture(scope="session")
def astronaut():
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def astronaut_crop(astronaut):
    from edtalk.face import crop_image

    return crop_image(astronaut)


@pytest.fixture(scope="session")
def moving_clip(astronaut):
    """30 frames of the astronaut drifting right/down by up to ~29/19 px (edge-padded shifts)."""
    frames = []
    for i in range(30):
        dx, dy = i, (2 * i) // 3
        padded = np.pad(astronaut, ((dy, 0), (dx, 0), (0, 0)), mode="edge")
        frames.append(padded[:512, :512])
    return np.stack(frames)
