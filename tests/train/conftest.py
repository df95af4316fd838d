import pytest


@pytest.fixture(scope="session")
def synth_tree(tmp_path_factory):
    """A small SynthTalk MEAD tree (3 speakers, 64x64) with its LMDB frame store, once per session."""
    from edtalk.cli import main as edtalk_main
    from edtalk.data.store import build_frame_store

    out = tmp_path_factory.mktemp("synth")
    edtalk_main(["synthtalk", "--out", str(out), "--kind", "mead", "--speakers", "3", "--emotions", "neutral,happy",
                 "--levels", "1", "--frames", "12", "--no-mel", "--quiet", "--test-fraction", "0.25"])
    root = out / "mead"
    build_frame_store(root, progress=False)
    return root


@pytest.fixture(autouse=True)
def one_thread():
    """Training tests use one intra-op thread: on a shared 2-core machine two spinning OpenMP threads
    made small convolutions ~20x slower (measured), and the numbers here do not depend on it."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def motion_tree(synth_tree, tmp_path_factory):
    """make(name, parts) → (a private copy of the session tree with the α cache `parts` of a tiny
    random EDTalk, the path of a tiny Audio2Lip.pt)."""
    import shutil

    from edtalk.testing import write_tiny_checkpoints
    from edtalk.train.motion import extract_motion, load_generator

    def make(name, parts):
        base = tmp_path_factory.mktemp(name)
        root = base / "mead"
        shutil.copytree(synth_tree, root)
        ckpts = write_tiny_checkpoints(base / "ckpt")
        extract_motion(load_generator(ckpts["EDTalk.pt"]), root, parts=parts, progress=False)
        return root, ckpts["Audio2Lip.pt"]

    return make
