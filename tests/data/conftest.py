"""Small SynthTalk trees shared by the frame-store, dataset and preprocessing tests."""

import pytest

from edtalk.data import synthtalk as st


@pytest.fixture(scope="session")
def synth_trees(tmp_path_factory):
    """{"mead": root, "hdtf": root}: 3 speakers × (neutral, happy) × 2 clips of 10–14 frames at 48²
    (one test speaker); 3 HDTF-style videos of 5.2 s (clips of 125 + 5 frames, one test video)."""
    out = tmp_path_factory.mktemp("synth_trees")
    st.generate(out, kind="both", size=48, seed=3, speakers=3, emotions=("neutral", "happy"), levels=(1,),
                clips_per=2, frames="10-14", videos=3, seconds=5.2, validate=False, quiet=True)
    return {"mead": out / "mead", "hdtf": out / "hdtf"}
