"""Frame store for training: every clip's frames as JPEGs in one LMDB (docs/design.md §7.3).

Random access into MP4s means decoding a clip from its start; training reads a few random
frames of many clips, so the frames are stored once, individually, as JPEGs.

Format (compatible with the official loaders): frames RGB, PIL bicubic to the store size, JPEG
quality 75; UTF-8 keys, parts joined with '-', integers zero-filled to 7 digits::

    length            → number of clips in the store (ASCII integer)
    <name>-length     → frame count of the clip
    <name>-0000123    → JPEG bytes of frame 123

A clip is written in one transaction, its ``<name>-length`` key last, so an interrupted build
never leaves a clip that looks complete; rebuilding skips the clips already stored.

Library::

    build_frame_store(tree_root)              # → <root>/frames.lmdb at the tree's native size
    frames = open_frames(tree_root)           # the LMDB if the tree has one, else MP4 decoding
    frames.names, frames.num_frames(name), frames.frame(name, i), frames.frames(name, [0, 5])

Readers open their file lazily in the process that uses them, so a reader made in the main
process is safe to hand to DataLoader workers (fork or spawn) and DDP ranks.

CLI (edtalk/cli.py)::

    edtalk store --root TREE [--size N] [--quality 75] [--out PATH] [--quiet]
"""

from __future__ import annotations

import io
import os
import sys
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from edtalk.data import layout
from edtalk.errors import InputError

__all__ = ["STORE_NAME", "frame_key", "length_key", "encode_frame", "decode_frame", "resize_frame",
           "build_frame_store", "FrameStore", "VideoFrames", "open_frames"]

STORE_NAME = "frames.lmdb"
JPEG_QUALITY = 75
_INITIAL_MAP_SIZE = 1 << 30  # grows on demand (MapFullError → double)
_LENGTH = b"length"


def length_key(name: str) -> bytes:
    return f"{name}-length".encode("utf-8")


def frame_key(name: str, index: int) -> bytes:
    return f"{name}-{int(index):07d}".encode("utf-8")


def resize_frame(frame: np.ndarray, size: Optional[int]) -> np.ndarray:
    """PIL bicubic resize of a uint8 RGB frame to size² (unchanged when it already is)."""
    if size is None or frame.shape[:2] == (size, size):
        return frame
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((size, size), Image.BICUBIC))


def encode_frame(frame: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def decode_frame(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


# --------------------------------------------------------------------------- reading


class FrameStore:
    """Read-only access to a frame LMDB; the environment is opened lazily once per process."""

    def __init__(self, path: os.PathLike):
        self.path = Path(path)
        if not (self.path / "data.mdb").is_file():
            raise InputError(f"not a frame store (no data.mdb): {self.path}")
        self._resolved = str(self.path.resolve())
        self._names = None
        self._lengths: dict = {}

    @property
    def env(self):
        # Looked up per call: never carried across a fork or pickled into DataLoader workers.
        return _open_readonly(self._resolved)

    def _get(self, txn, key: bytes) -> Optional[bytes]:
        value = txn.get(key)
        return None if value is None else bytes(value)

    @property
    def names(self) -> list:
        """Names of the complete clips, in key order (one cursor seek per clip, not per frame)."""
        if self._names is None:
            self._names = _scan_names(self.env)
        return list(self._names)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: str) -> bool:
        try:
            self.num_frames(name)
            return True
        except InputError:
            return False

    def num_frames(self, name: str) -> int:
        if name not in self._lengths:
            with self.env.begin() as txn:
                value = self._get(txn, length_key(name))
            if value is None:
                raise InputError(f"clip {name!r} is not in the frame store {self.path}")
            self._lengths[name] = int(value)
        return self._lengths[name]

    def frames(self, name: str, indices: Iterable[int]) -> np.ndarray:
        """uint8 [len(indices),H,W,3] frames of one clip."""
        indices = [int(i) for i in indices]
        n = self.num_frames(name)
        out = []
        with self.env.begin(buffers=True) as txn:
            for i in indices:
                if not 0 <= i < n:
                    raise IndexError(f"frame {i} out of range for {name!r} ({n} frames)")
                out.append(decode_frame(txn.get(frame_key(name, i))))
        return np.stack(out) if out else np.zeros((0, 0, 0, 3), np.uint8)

    def frame(self, name: str, index: int) -> np.ndarray:
        """uint8 [H,W,3] frame `index` of clip `name`."""
        return self.frames(name, [index])[0]


# py-lmdb allows one environment per file and process: readers of one store share it.
_READ_ENVS: dict = {}


def _open_readonly(path: str):
    import lmdb

    key = (os.getpid(), str(path))
    env = _READ_ENVS.get(key)
    if env is None:
        # A forked child inherits its parent's handle, and py-lmdb refuses a second open of the
        # same file: close the inherited copy (read-only, no lock file: the parent is unaffected).
        for old in [k for k in _READ_ENVS if k[1] == key[1]]:
            _READ_ENVS.pop(old).close()
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False, max_readers=512,
                        subdir=True)
        _READ_ENVS[key] = env
    return env


def _close_readonly(path: str) -> None:
    """Forget this process's reader of `path` (before writing to it; readers reopen on next use)."""
    env = _READ_ENVS.pop((os.getpid(), str(path)), None)
    if env is not None:
        env.close()


def _scan_names(env) -> list:
    """Walk the keys: from a clip's first frame jump straight to its '<name>-length' key."""
    names = []
    with env.begin() as txn:
        cur = txn.cursor()
        ok = cur.first()
        while ok:
            key = bytes(cur.key())
            if key == _LENGTH or b"-" not in key:
                ok = cur.next()
                continue
            name, suffix = key.rsplit(b"-", 1)
            if suffix != b"length":
                if not cur.set_range(name + b"-length"):
                    break
                if bytes(cur.key()) != name + b"-length":
                    continue  # frames without a length key: an incomplete foreign clip
            names.append(name.decode("utf-8"))
            ok = cur.next()
    return names


class VideoFrames:
    """The FrameStore interface over a tree's MP4s (no LMDB): decodes whole clips, keeps the
    `cache_clips` most recently used ones in memory."""

    def __init__(self, root: os.PathLike, cache_clips: int = 4):
        self.root = Path(root)
        self.cache_clips = max(1, int(cache_clips))
        self._cache: OrderedDict = OrderedDict()
        self._names = None
        self._lengths: dict = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()
        return state

    @property
    def names(self) -> list:
        if self._names is None:
            self._names = [n for n in layout.list_clips(self.root) if layout.clip_path(self.root, "video", n).is_file()]
        return list(self._names)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: str) -> bool:
        return layout.clip_path(self.root, "video", name).is_file()

    def _clip(self, name: str) -> np.ndarray:
        if name in self._cache:
            self._cache.move_to_end(name)
            return self._cache[name]
        from edtalk.video import read_video

        path = layout.clip_path(self.root, "video", name)
        if not path.is_file():
            raise InputError(f"clip {name!r} has no video in {self.root}")
        frames, _ = read_video(path)
        self._cache[name] = frames
        while len(self._cache) > self.cache_clips:
            self._cache.popitem(last=False)
        return frames

    def num_frames(self, name: str) -> int:
        if name not in self._lengths:
            # One landmark row per frame (layout contract): the .npy header, not a decode.
            lm = layout.clip_path(self.root, "landmark", name)
            self._lengths[name] = len(np.load(lm, mmap_mode="r")) if lm.is_file() else len(self._clip(name))
        return self._lengths[name]

    def frames(self, name: str, indices: Iterable[int]) -> np.ndarray:
        clip = self._clip(name)
        indices = [int(i) for i in indices]
        for i in indices:
            if not 0 <= i < len(clip):
                raise IndexError(f"frame {i} out of range for {name!r} ({len(clip)} frames)")
        return clip[indices].copy()

    def frame(self, name: str, index: int) -> np.ndarray:
        return self.frames(name, [index])[0]


def open_frames(root: os.PathLike, cache_clips: int = 4):
    """The tree's frame store (<root>/frames.lmdb) if it has one, else an MP4-decoding reader."""
    root = Path(root)
    if (root / STORE_NAME / "data.mdb").is_file():
        return FrameStore(root / STORE_NAME)
    return VideoFrames(root, cache_clips=cache_clips)


# --------------------------------------------------------------------------- building


def _encode_clip(root: Path, name: str, size: Optional[int], quality: int) -> list:
    from edtalk.video import read_video

    frames, _ = read_video(layout.clip_path(root, "video", name))
    return [encode_frame(resize_frame(f, size), quality) for f in frames]


def _stored_names(env) -> set:
    return set(_scan_names(env))


def _check_store_size(env, names: Sequence[str], size: Optional[int], root: Path) -> None:
    """Refuse to mix frame sizes in one store (e.g. rebuilding at another --size)."""
    if not names:
        return
    name = names[0]
    with env.begin() as txn:
        data = txn.get(frame_key(name, 0))
    have = decode_frame(data).shape[:2] if data is not None else None
    if have is None:
        return
    if size is None:
        from edtalk.video import probe_video

        info = probe_video(layout.clip_path(root, "video", name))
        want = (info["height"], info["width"])
    else:
        want = (size, size)
    if tuple(have) != tuple(want):
        raise InputError(f"frame store holds {have[1]}x{have[0]} frames, asked for {want[1]}x{want[0]}; "
                         "delete it or pass --out to build another")


def _put_clip(env, name: str, jpegs: list) -> None:
    import lmdb

    while True:
        try:
            with env.begin(write=True) as txn:
                for i, data in enumerate(jpegs):
                    txn.put(frame_key(name, i), data)
                txn.put(length_key(name), str(len(jpegs)).encode())
            return
        except lmdb.MapFullError:
            env.set_mapsize(env.info()["map_size"] * 2)


def build_frame_store(tree_root: os.PathLike, out: Optional[os.PathLike] = None, size: Optional[int] = None,
                      quality: int = JPEG_QUALITY, names: Optional[Sequence[str]] = None, progress: bool = True,
                      workers: Optional[int] = None) -> Path:
    """Write the frames of a tree's clips (default: train + test) into an LMDB; returns its path.

    `size` None keeps the native frame size, else PIL bicubic to size².  Idempotent: clips already
    stored are skipped.  Clips are decoded and JPEG-encoded by `workers` threads (ffmpeg and PIL
    release the GIL) and written in order from this thread.
    """
    import lmdb

    root = Path(tree_root)
    if not root.is_dir():
        raise InputError(f"data root does not exist: {root}")
    if size is not None and int(size) < 1:
        raise InputError(f"--size must be positive, got {size}")
    if not 1 <= int(quality) <= 100:
        raise InputError(f"JPEG quality must be in 1..100, got {quality}")
    names = list(layout.list_clips(root) if names is None else names)
    missing = [n for n in names if not layout.clip_path(root, "video", n).is_file()]
    if missing:
        raise InputError(f"{len(missing)} clip(s) have no video, e.g. {layout.clip_path(root, 'video', missing[0])}")
    out = Path(out) if out is not None else root / STORE_NAME
    out.mkdir(parents=True, exist_ok=True)
    _close_readonly(str(out.resolve()))
    env = lmdb.open(str(out), map_size=_INITIAL_MAP_SIZE, subdir=True, readahead=False, meminit=False)
    try:
        done = _stored_names(env)
        _check_store_size(env, sorted(done), size, root)
        todo = [n for n in dict.fromkeys(names) if n not in done]
        workers = workers or max(1, min(4, os.cpu_count() or 1))
        bar = _progress_bar(len(todo), progress)
        with ThreadPoolExecutor(workers) as pool:
            # A bounded window of clips in flight keeps memory flat on big trees.
            window = 2 * workers
            pending = [pool.submit(_encode_clip, root, n, size, quality) for n in todo[:window]]
            for k, name in enumerate(todo):
                jpegs = pending[k].result()
                pending[k] = None
                if k + window < len(todo):
                    pending.append(pool.submit(_encode_clip, root, todo[k + window], size, quality))
                _put_clip(env, name, jpegs)
                bar.update(1)
        bar.close()
        with env.begin(write=True) as txn:
            txn.put(_LENGTH, str(len(_scan_names(env))).encode())
    finally:
        env.close()
    return out


def _progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="frame store", unit="clip", disable=not enabled)


if __name__ == "__main__":  # the command moved into the `edtalk` command line
    print("edtalk: error: run `edtalk store ...` (or `python -m edtalk store ...`)", file=sys.stderr)
    sys.exit(2)
