"""Fetching the released checkpoints (EDTalk.pt, EDTalk_lip_pose.pt, Audio2Lip.pt).

The files come from the authors' Hugging Face repository and carry the authors' terms: the
EDTalk weights descend from LIA (CC BY-NC 4.0), so treat them as non-commercial.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional

from .errors import EDTalkError

REPO_ID = "tanhshuai0219/EDTalk"
FILES = ("EDTalk.pt", "EDTalk_lip_pose.pt", "Audio2Lip.pt")
TERMS = (
    "The EDTalk checkpoints are released by their authors (Tan et al., ECCV 2024) under their own terms; "
    "they build on LIA (CC BY-NC 4.0): research and non-commercial use only. By downloading you accept them."
)
MANUAL_HELP = (
    "Download them by hand from the Hugging Face repository {repo} (or the Google Drive / OpenXLab links in the "
    "official EDTalk README) and place {files} in {dest}/ — or run `edtalk download --from FOLDER` to copy "
    "them from a folder you already have."
)


def _hub_fetch(repo_id: str, names: Iterable[str], dest: Path) -> Dict[str, Path]:
    """Find each file anywhere in the repo (e.g. under ckpts/) and download it into dest."""
    from huggingface_hub import HfApi, hf_hub_download

    remote = HfApi().list_repo_files(repo_id)
    found = {}
    for name in names:
        matches = sorted((p for p in remote if p.split("/")[-1] == name), key=len)
        if not matches:
            raise EDTalkError(f"{name} is not in the Hugging Face repository {repo_id}")
        cached = hf_hub_download(repo_id, matches[0])
        found[name] = _install(Path(cached), dest / name)
    return found


def _install(src: Path, target: Path) -> Path:
    tmp = target.with_name(target.name + ".part")
    shutil.copyfile(src, tmp)
    tmp.replace(target)
    return target


def copy_from_folder(folder: Path, names: Iterable[str], dest: Path) -> Dict[str, Path]:
    folder = Path(folder)
    out = {}
    for name in names:
        hits = sorted(folder.rglob(name), key=lambda p: len(p.parts))
        if not hits:
            raise EDTalkError(f"{name} not found under {folder}")
        out[name] = _install(hits[0], dest / name)
    return out


def download(dest="checkpoints", names: Optional[List[str]] = None, repo_id: str = REPO_ID,
             from_folder: Optional[str] = None, force: bool = False,
             fetch: Callable = _hub_fetch, log=print) -> Dict[str, Path]:
    """Place the released checkpoints in `dest`; skip the ones already there unless `force`."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    wanted = [n for n in (names or FILES) if force or not (dest / n).is_file()]
    log(TERMS)
    if not wanted:
        log(f"all checkpoints already in {dest}/")
        return {n: dest / n for n in (names or FILES)}
    if from_folder:
        got = copy_from_folder(Path(from_folder), wanted, dest)
    else:
        try:
            got = fetch(repo_id, wanted, dest)
        except EDTalkError:
            raise
        except Exception as exc:  # network errors come in many types; all mean "do it by hand"
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise EDTalkError(f"could not download from {repo_id} ({reason}). "
                              + MANUAL_HELP.format(repo=repo_id, files=", ".join(wanted), dest=dest)) from None
    for name, path in got.items():
        log(f"  {name} -> {path}")
    return {n: dest / n for n in (names or FILES)}
