"""Stage-0/1 datasets and the mouth swap: cross images, determinism, neutral sources, split hygiene."""

import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates
from skimage.transform import SimilarityTransform

from edtalk.data import layout, store
from edtalk.data.datasets import Stage0Pairs, Stage1Items, scale_landmarks
from edtalk.data.mouth_swap import mouth_box, mouth_swap


def _u8(t):
    return ((t.permute(1, 2, 0).numpy() + 1.0) * 127.5).round().astype(np.uint8)


def _landmarks(root, ref, native, size):
    name, k = ref
    return scale_landmarks(np.load(layout.clip_path(root, "landmark", name))[k], native, size)


def _expected_swap(face, face_lm, mouth, mouth_lm):
    """An independent §7.4: skimage's similarity estimate, scipy bilinear sampling of the whole canvas."""
    def anchors(lm):
        return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[60:68].mean(0)])

    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image ≥ 0.26
        m = SimilarityTransform.from_estimate(anchors(mouth_lm), anchors(face_lm)).params.copy()
    else:
        tf = SimilarityTransform()
        tf.estimate(anchors(mouth_lm), anchors(face_lm))
        m = tf.params.copy()
    m[:2, 2] += anchors(face_lm)[2] - (m[:2, :2] @ anchors(mouth_lm)[2] + m[:2, 2])
    inv = np.linalg.inv(m)
    s = face.shape[0]
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    warped = np.stack([map_coordinates(mouth[..., c].astype(np.float64), [sy, sx], order=1, cval=0.0)
                       for c in range(3)], -1)
    lips = face_lm[48:68]
    margin = 5 * s / 256
    x1, y1 = max(int(lips[:, 0].min() - margin), 0), max(int(lips[:, 1].min() - margin), 0)
    x2, y2 = int(lips[:, 0].max() + margin), int(lips[:, 1].max() + margin)
    return warped, (x1, y1, x2, y2)


@pytest.mark.parametrize("kind,size", [("mead", None), ("hdtf", 64)])
def test_cross_images_hold_the_other_clips_mouth(synth_trees, kind, size):
    root = synth_trees[kind]
    ds = Stage1Items(root, size=size, seed=1)
    s = ds.size
    assert s == (size or 48)
    checked = 0
    for i in range(len(ds)):
        refs = ds.plan(i)
        if refs["a"][0] == refs["b"][0]:
            continue
        item = ds[i]
        boxes = {k: item.pop(k).tolist() for k in ("mouth_box_a", "mouth_box_b")}
        assert set(item) == {"a_id", "a", "b_id", "b", "a_b", "b_a"}
        assert all(t.shape == (3, s, s) and t.dtype == torch.float32 for t in item.values())
        a, b = _u8(item["a"]), _u8(item["b"])
        lm_a, lm_b = _landmarks(root, refs["a"], 48, s), _landmarks(root, refs["b"], 48, s)
        for face, mouth, cross, lm_f, lm_m in ((a, b, _u8(item["a_b"]), lm_a, lm_b),
                                               (b, a, _u8(item["b_a"]), lm_b, lm_a)):
            warped, (x1, y1, x2, y2) = _expected_swap(face, lm_f, mouth, lm_m)
            assert boxes["mouth_box_a" if face is a else "mouth_box_b"] == [x1, y1, x2, y2]
            inside = np.zeros(face.shape[:2], bool)
            inside[y1:y2, x1:x2] = True
            assert np.array_equal(cross[~inside], face[~inside])  # hard paste, nothing else touched
            diff = np.abs(cross[inside].astype(int) - warped[inside])
            assert diff.max() <= 1.0
            # and the box really changed: the other clip's mouth is not this face's mouth
            assert np.abs(cross[inside].astype(int) - face[inside]).mean() > 3.0
        checked += 1
    assert checked >= 2


def test_mouth_swap_canvas_is_the_frame_size():
    """A 128² frame: the box may lie beyond 112 (a 224/256-scaled canvas would cut it off, bug 7)."""
    rng = np.random.default_rng(0)
    lm = np.tile(np.array([[60.0, 60.0]]), (68, 1)) + rng.normal(0, 1, (68, 2))
    lm[36:42] += [-25, -20]
    lm[42:48] += [25, -20]
    lm[48:68] = np.array([90.0, 112.0]) + rng.normal(0, 6, (20, 2))
    face = np.zeros((128, 128, 3), np.uint8)
    mouth = np.full((128, 128, 3), 200, np.uint8)
    out = mouth_swap(face, lm, mouth, lm)
    x1, y1, x2, y2 = mouth_box(lm, 128)
    assert y2 > 115 and np.all(out[y1:y2, x1:x2] == 200)
    out[y1:y2, x1:x2] = 0
    assert not out.any()


def test_items_are_a_function_of_seed_epoch_and_index(synth_trees):
    root = synth_trees["mead"]
    ds = Stage1Items(root, seed=5)
    first = ds[3]
    again = Stage1Items(root, seed=5)[3]
    assert all(torch.equal(first[k], again[k]) for k in first)
    plans0 = [ds.plan(i) for i in range(len(ds))]
    ds.set_epoch(1)
    plans1 = [ds.plan(i) for i in range(len(ds))]
    assert plans0 != plans1
    ds.set_epoch(0)
    assert [ds.plan(i) for i in range(len(ds))] == plans0
    assert [Stage1Items(root, seed=6).plan(i) for i in range(len(ds))] != plans0
    # The global RNGs play no part.
    np.random.seed(0)
    torch.manual_seed(0)
    assert ds.plan(2) == plans0[2]
    p0 = Stage0Pairs(root, seed=5)
    p0.set_epoch(4)
    x, y = p0[1], Stage0Pairs(root, seed=5)
    y.set_epoch(4)
    assert all(torch.equal(x[k], y[1][k]) for k in x)


def test_stage0_mead_sources_are_neutral_clips_of_the_same_speaker(synth_trees):
    root = synth_trees["mead"]
    ds = Stage0Pairs(root, seed=0)
    train = layout.read_split(root, "train")
    assert len(ds) == len(train)
    sources = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            plan = ds.plan(i)
            src, tgt = layout.parse_mead_name(plan["source"][0]), layout.parse_mead_name(plan["target"][0])
            assert src.emotion == "neutral" and src.speaker == tgt.speaker
            assert plan["target"][0] == train[i]
            sources.add(plan["source"][0])
    assert sources == {n for n in train if "#neutral#" in n}  # every neutral clip gets used
    item = ds[0]
    assert set(item) == {"source", "target"} and item["source"].shape == (3, 48, 48)
    assert -1.0 <= float(item["source"].min()) and float(item["source"].max()) <= 1.0


def test_stage0_hdtf_pairs_come_from_one_clip(synth_trees):
    ds = Stage0Pairs(synth_trees["hdtf"], size=32, length=10, seed=2)
    assert len(ds) == 10
    plans = [ds.plan(i) for i in range(10)]
    assert all(p["source"][0] == p["target"][0] for p in plans)
    assert any(p["source"][1] != p["target"][1] for p in plans)
    assert ds[9]["target"].shape == (3, 32, 32)
    with pytest.raises(IndexError):
        ds.plan(10)


class _TrainOnly:
    """A frame reader that fails loudly if a test clip is touched."""

    def __init__(self, inner, test_names):
        self.inner, self.test = inner, set(test_names)

    def num_frames(self, name):
        assert name not in self.test, f"test clip {name} sampled"
        return self.inner.num_frames(name)

    def frame(self, name, index):
        assert name not in self.test, f"test clip {name} sampled"
        return self.inner.frame(name, index)


@pytest.mark.parametrize("kind", ["mead", "hdtf"])
def test_train_split_never_reads_test_clips(synth_trees, kind):
    root = synth_trees[kind]
    test = layout.read_split(root, "test")
    reader = _TrainOnly(store.open_frames(root), test)
    seen = set()
    for cls in (Stage0Pairs, Stage1Items):
        ds = cls(root, split="train", store=reader, length=12)
        for epoch in range(3):
            ds.set_epoch(epoch)
            for i in range(len(ds)):
                seen.update(ref[0] for ref in ds.plan(i).values())
        ds[0]
    assert seen == set(layout.read_split(root, "train"))
    groups = {layout.group_of(n) for n in Stage1Items(root, split="test", store=store.open_frames(root)).names}
    assert groups == {layout.group_of(n) for n in test}


def test_dataloader_workers_give_the_same_items(synth_trees):
    root = synth_trees["hdtf"]
    ds = Stage1Items(root, size=32, seed=9)
    ds.set_epoch(2)
    loader = torch.utils.data.DataLoader(ds, batch_size=len(ds), num_workers=2, multiprocessing_context="fork")
    batch = next(iter(loader))
    for i in range(len(ds)):
        item = ds[i]
        assert all(torch.equal(batch[k][i], item[k]) for k in item)


def test_stage0_over_mead_and_hdtf_roots(synth_trees):
    import os

    mead, hdtf = synth_trees["mead"], synth_trees["hdtf"]
    both = Stage0Pairs(f"{mead}{os.pathsep}{hdtf}", seed=4)
    names = layout.read_split(mead, "train") + layout.read_split(hdtf, "train")
    assert both.names == names and len(both) == len(names)
    for i in range(len(both)):
        plan = both.plan(i)
        if layout.name_kind(plan["target"][0]) == "mead":
            assert "#neutral#" in plan["source"][0]
        else:
            assert plan["source"][0] == plan["target"][0]
    assert both[len(both) - 1]["source"].shape == (3, 48, 48)


def test_a_tree_with_a_frame_store_trains_without_its_videos(synth_trees, tmp_path):
    # A GPU box without ffmpeg gets the LMDB and the side files only: the frame size comes from the store.
    import shutil

    root = tmp_path / "mead"
    shutil.copytree(synth_trees["mead"], root)
    store.build_frame_store(root, progress=False)
    with_videos = Stage1Items(root, size=32, seed=0)[3]
    shutil.rmtree(root / "video")
    items = Stage1Items(root, size=32, seed=0)
    assert items.trees[0].native_size == 48
    for key, value in items[3].items():
        assert torch.equal(torch.as_tensor(value), torch.as_tensor(with_videos[key])), key
