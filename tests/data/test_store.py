"""LMDB frame store: key format, pixels, resizing, idempotent builds, fallback reader, fork safety."""

import io
import shutil
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch
from PIL import Image

from edtalk.cli import main as edtalk_main
from edtalk.data import layout, store
from edtalk.errors import InputError
from edtalk.video import read_video


@pytest.fixture(scope="module")
def mead_store(synth_trees):
    root = synth_trees["mead"]
    return root, store.build_frame_store(root, progress=False)


def _raw(path):
    store._close_readonly(str(path.resolve()))  # py-lmdb allows one open per file and process
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return {bytes(k): bytes(v) for k, v in txn.cursor()}
    finally:
        env.close()


def _pil_jpeg(frame, quality=75):
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def test_keys_follow_the_official_format(mead_store):
    root, path = mead_store
    names = layout.list_clips(root)
    raw = _raw(path)
    assert raw[b"length"] == str(len(names)).encode()
    for name in names:
        t = len(np.load(layout.clip_path(root, "landmark", name)))
        assert raw[f"{name}-length".encode()] == str(t).encode()
        assert f"{name}-{t - 1:07d}".encode() in raw and f"{name}-{t:07d}".encode() not in raw
        with Image.open(io.BytesIO(raw[f"{name}-0000000".encode()])) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
    assert len(raw) == 1 + sum(1 + int(raw[f"{n}-length".encode()]) for n in names)


def test_frames_match_the_videos(mead_store):
    root, path = mead_store
    frames = store.FrameStore(path)
    assert sorted(frames.names) == sorted(layout.list_clips(root))
    name = frames.names[1]
    video, _ = read_video(layout.clip_path(root, "video", name))
    assert frames.num_frames(name) == len(video)
    got = frames.frames(name, range(len(video)))
    assert got.shape == video.shape and got.dtype == np.uint8
    # Exactly what PIL's JPEG at quality 75 makes of video frame k.
    assert all(np.array_equal(got[k], _pil_jpeg(video[k])) for k in range(len(video)))
    assert not np.array_equal(got[1], _pil_jpeg(video[0]))
    assert np.array_equal(frames.frame(name, 3), got[3])
    with pytest.raises(InputError):
        frames.num_frames("M999#happy#level_1#001")
    with pytest.raises(IndexError):
        frames.frame(name, len(video))


def test_resized_store_uses_pil_bicubic(synth_trees, tmp_path):
    root = synth_trees["mead"]
    name = layout.read_split(root, "train")[0]
    path = store.build_frame_store(root, out=tmp_path / "small.lmdb", size=24, names=[name], progress=False)
    frames = store.FrameStore(path)
    assert frames.names == [name]
    video, _ = read_video(layout.clip_path(root, "video", name))
    want = _pil_jpeg(np.asarray(Image.fromarray(video[2]).resize((24, 24), Image.BICUBIC)))
    assert np.array_equal(frames.frame(name, 2), want)
    bilinear = _pil_jpeg(np.asarray(Image.fromarray(video[2]).resize((24, 24), Image.BILINEAR)))
    assert not np.array_equal(frames.frame(name, 2), bilinear)
    with pytest.raises(InputError, match="24x24"):
        store.build_frame_store(root, out=path, size=32, progress=False)


def test_rebuild_skips_stored_clips_and_completes_interrupted_ones(synth_trees, tmp_path, monkeypatch):
    root = synth_trees["hdtf"]
    names = layout.list_clips(root)
    monkeypatch.setattr(store, "_INITIAL_MAP_SIZE", 64 * 1024)  # the map must grow (MapFullError path)
    path = store.build_frame_store(root, out=tmp_path / "f.lmdb", names=names[:2], progress=False)
    calls = []
    real = store._encode_clip
    monkeypatch.setattr(store, "_encode_clip", lambda r, n, *a: calls.append(n) or real(r, n, *a))
    store.build_frame_store(root, out=path, progress=False)
    assert sorted(calls) == sorted(names[2:])
    calls.clear()
    # An interrupted clip (frames written, no length key) is not complete and is written again.
    store._close_readonly(str(path.resolve()))
    env = lmdb.open(str(path))
    with env.begin(write=True) as txn:
        txn.delete(f"{names[0]}-length".encode())
        txn.put(b"length", b"0")
    env.close()
    assert names[0] not in store.FrameStore(path).names
    store.build_frame_store(root, out=path, progress=False)
    assert calls == [names[0]]
    frames = store.FrameStore(path)
    assert sorted(frames.names) == sorted(names)
    assert _raw(path)[b"length"] == str(len(names)).encode()


def test_open_frames_falls_back_to_video_decoding(synth_trees, mead_store, tmp_path):
    root, _ = mead_store
    lmdb_reader = store.open_frames(root)
    assert isinstance(lmdb_reader, store.FrameStore)
    # A copy without a store: other tests may build one in the shared session tree, in any order.
    hdtf = Path(shutil.copytree(synth_trees["hdtf"], tmp_path / "hdtf", ignore=shutil.ignore_patterns(store.STORE_NAME)))
    reader = store.open_frames(hdtf, cache_clips=1)
    assert isinstance(reader, store.VideoFrames)
    name = layout.read_split(hdtf, "train")[0]
    video, _ = read_video(layout.clip_path(hdtf, "video", name))
    assert reader.num_frames(name) == len(video) == 125
    assert np.array_equal(reader.frames(name, [0, 124, 7]), video[[0, 124, 7]])
    assert sorted(reader.names) == sorted(layout.list_clips(hdtf))


def _read_in_worker(index):
    return torch.from_numpy(_READER.frame(_NAME, index))


def test_reader_made_before_fork_works_in_dataloader_workers(mead_store):
    global _READER, _NAME
    root, path = mead_store
    _READER = store.FrameStore(path)
    _NAME = _READER.names[0]
    expected = [torch.from_numpy(_READER.frame(_NAME, i)) for i in range(4)]  # opened in the parent
    loader = torch.utils.data.DataLoader(list(range(4)), batch_size=None, num_workers=2,
                                         collate_fn=_read_in_worker, multiprocessing_context="fork")
    got = list(loader)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert torch.equal(torch.from_numpy(_READER.frame(_NAME, 0)), expected[0])  # parent still reads


def test_cli(synth_trees, tmp_path, capsys):
    root = synth_trees["mead"]
    assert edtalk_main(["store", "--root", str(root), "--out", str(tmp_path / "c.lmdb"), "--size", "16", "--quiet"]) == 0
    assert f"{len(layout.list_clips(root))} clips" in capsys.readouterr().out
    assert edtalk_main(["store", "--root", str(tmp_path / "nope"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edtalk: error: data root does not exist")
