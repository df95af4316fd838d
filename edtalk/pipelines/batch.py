"""`edtalk batch JOBS.jsonl`: many generations from one file, for one process or many (torchrun).

Each line of JOBS.jsonl is one JSON object whose keys are `edtalk generate`'s option names (`exp_intensity`
or `exp-intensity`; `no_crop: true` or `crop: false`); flags given after the file name are defaults for
every job. Relative paths in a job are relative to the jobs file; those of the defaults, to the working
folder.

- Models load once per process: jobs run through one `EDTalkPipeline` per model setting (`ModelCache`),
  which loads each network once.
- A job whose output exists is skipped, and outputs are written atomically, so a rerun resumes.
- A failed job is one line on stderr and the list goes on; a summary comes last; the exit code is 1
  if any job failed (2 only for a missing or empty jobs file).
- Under torchrun (RANK / WORLD_SIZE in the environment, one node or many) job i runs on rank
  i mod WORLD_SIZE, so each runs exactly once; the ranks add up their counts at the end (gloo), rank 0
  prints the total, and every rank exits with the same code.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, TextIO

from ..errors import EDTalkError, InputError

# Options whose values are files or folders (resolved against the jobs file's folder).
PATH_OPTIONS = {"source", "lip", "audio", "out", "save_frames", "checkpoint", "audio2lip_checkpoint", "checkpoint_dir",
                "pose_flow_checkpoint", "exp_predictor_checkpoint", "face_sr_weights", "presets"}
POSE_WORDS = {"fixed", "source", "none", "audio"}
EXP_FILE_SUFFIXES = {".npy", ".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".mp4", ".mov", ".avi",
                     ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif"}
NOT_JOB_OPTIONS = {"help", "jobs", "command"}
WAIT_FOR_OTHER_RANKS = timedelta(days=7)  # the final count waits for the slowest rank's last job


@dataclass
class Job:
    line: int  # 1-based line of the jobs file
    options: Optional[object] = None  # GenerateOptions, or None when the line is not a valid job
    error: Optional[str] = None

    @property
    def out(self) -> Optional[Path]:
        return None if self.options is None else Path(self.options.out)


@dataclass
class Tally:
    written: int = 0
    skipped: int = 0
    failed: List[int] = field(default_factory=list)  # line numbers

    @property
    def total(self) -> int:
        return self.written + self.skipped + len(self.failed)


# ----------------------------------------------------------------------------- reading jobs

def _flag_table(flags: Sequence[argparse.Action]) -> Dict[str, argparse.Action]:
    """Every name a job may use for an option: its dest and its long flags, with `_` for `-`."""
    table = {}
    for action in flags:
        if action.dest in NOT_JOB_OPTIONS or action.dest is argparse.SUPPRESS:
            continue
        table[action.dest] = action
        for flag in action.option_strings:
            if flag.startswith("--"):
                table[flag[2:].replace("-", "_")] = action
    return table


def _is_switch(action: argparse.Action) -> bool:
    return isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))


def _value(key: str, value, action: argparse.Action):
    """A job's JSON value for one option, checked like argparse checks a flag's value."""
    flag = next((f for f in action.option_strings if f.startswith("--")), key)
    if _is_switch(action):
        if not isinstance(value, bool):
            raise InputError(f'"{key}" must be true or false, got {json.dumps(value)}')
        if key == action.dest:  # the option's own value ("crop": false)
            return value
        return action.const if value else action.default  # the flag ("no_crop": true)
    if value is None:
        return None
    if isinstance(value, (dict, list, bool)):
        raise InputError(f'"{key}" ({flag}) takes a {"number" if action.type in (int, float) else "string"}, '
                         f"got {json.dumps(value)}")
    if action.type is int and isinstance(value, float) and not value.is_integer():
        raise InputError(f'"{key}" ({flag}) must be a whole number, got {value}')
    try:
        value = action.type(value) if action.type else str(value)
    except (TypeError, ValueError):
        raise InputError(f'"{key}" ({flag}): invalid value {json.dumps(value)}') from None
    if action.choices is not None and value not in action.choices:
        raise InputError(f'"{key}" ({flag}) must be one of {", ".join(map(str, action.choices))}, got {value!r}')
    return value


def _is_path_value(dest: str, value) -> bool:
    if not isinstance(value, str) or not value:
        return False
    if dest in PATH_OPTIONS:
        return True
    if dest == "pose":
        return value.strip().lower() not in POSE_WORDS
    if dest == "exp":  # a file, not a preset name, a blend, none, audio or text
        return Path(value).suffix.lower() in EXP_FILE_SUFFIXES or "/" in value
    return False


def job_namespace(job: dict, defaults: argparse.Namespace, flags: Sequence[argparse.Action], base: Path):
    """The defaults with a job's values on top (paths resolved against `base`); InputError for a bad key/value."""
    if not isinstance(job, dict):
        raise InputError(f"a job is a JSON object, got {type(job).__name__}")
    table = _flag_table(flags)
    unknown = sorted(k for k in job if k.replace("-", "_").lstrip("_") not in table)
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(map(repr, unknown))}; use generate's option names "
                         "(see `edtalk generate --help`)")
    ns = copy.copy(defaults)
    for key, raw in job.items():
        name = key.replace("-", "_").lstrip("_")
        action = table[name]
        value = _value(name, raw, action)
        if _is_path_value(action.dest, value):
            value = str(base / Path(value).expanduser()) if not Path(value).expanduser().is_absolute() \
                else str(Path(value).expanduser())
        setattr(ns, action.dest, value)
    if not ns.source:
        raise InputError('no "source" (the face image or video)')
    if not ns.out:
        raise InputError('no "out" (the output video; an existing one is skipped)')
    return ns


def read_jobs(path, defaults: argparse.Namespace, flags: Sequence[argparse.Action],
              to_options: Callable[[argparse.Namespace], object]) -> List[Job]:
    """Every non-blank line of the jobs file as a Job: options, or the one-line reason it cannot run.
    A second job writing the same output as an earlier one is an error (it would be skipped or race)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"jobs file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read jobs file {path}: {exc}") from None
    base = path.resolve().parent
    jobs, first_line_of = [], {}
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        job = Job(number)
        try:
            try:
                values = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
            job.options = to_options(job_namespace(values, defaults, flags, base))
            key = str(job.out.resolve())
            if key in first_line_of:
                raise InputError(f"same out as line {first_line_of[key]} ({job.out})")
            first_line_of[key] = number
        except EDTalkError as exc:
            job.options, job.error = None, str(exc)
        jobs.append(job)
    if not jobs:
        raise InputError(f"no jobs in {path} (one JSON object a line)")
    return jobs


# ----------------------------------------------------------------------------- ranks

@dataclass
class Rank:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> "Rank":
        """torchrun's RANK / WORLD_SIZE / LOCAL_RANK (one process when they are absent)."""
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError:
            raise InputError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers") from None
        if world < 1 or not 0 <= rank < world:
            raise InputError(f"RANK {rank} is outside WORLD_SIZE {world}")
        return cls(rank, world, local)

    def shard(self, jobs: List[Job]) -> List[Job]:
        return jobs[self.rank::self.world]

    def device(self, requested: str) -> str:
        """With --device auto and GPUs, each process of a node takes its own (LOCAL_RANK)."""
        import torch

        if requested == "auto" and self.world > 1 and torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return requested

    @property
    def prefix(self) -> str:
        return f"[rank {self.rank}/{self.world}] " if self.world > 1 else ""


def _join_ranks(rank: Rank) -> bool:
    """Join torchrun's process group (gloo, over TCP); False for a single process."""
    if rank.world == 1:
        return False
    import torch.distributed as dist

    if not dist.is_initialized():
        try:
            dist.init_process_group("gloo", rank=rank.rank, world_size=rank.world, timeout=WAIT_FOR_OTHER_RANKS)
        except (ValueError, RuntimeError) as exc:
            raise EDTalkError(f"cannot join the other batch processes (run under torchrun): {exc}") from None
    return True


def _total(tally: Tally, joined: bool) -> Tally:
    """Everyone's counts added up (every rank gets the total)."""
    if not joined:
        return tally
    import torch.distributed as dist

    parts: List[Optional[Tally]] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, tally)
    total = Tally(sum(p.written for p in parts), sum(p.skipped for p in parts),
                  sorted(line for p in parts for line in p.failed))
    dist.destroy_process_group()
    return total


# ----------------------------------------------------------------------------- running

def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def run_job(job: Job, models, rank: Rank, out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> str:
    """'written', 'skipped' or 'failed'; prints one line either way. Never raises for a bad job."""
    from .generate import generate

    out, err = out or sys.stdout, err or sys.stderr

    if job.error is not None:
        print(f"edtalk: batch: {rank.prefix}line {job.line} failed: {job.error}", file=err, flush=True)
        return "failed"
    if job.out.exists():
        print(f"{rank.prefix}line {job.line}: skipped, {job.out} exists", file=out, flush=True)
        return "skipped"
    opts = replace(job.options, progress=False, device=rank.device(job.options.device))
    start = time.perf_counter()
    try:
        result = generate(opts, pipeline=models.get(opts))  # the process's EDTalkPipeline for this model
    except EDTalkError as exc:
        reason = str(exc)
    except Exception as exc:  # noqa: BLE001 (out of GPU memory, a bug): it stops this job, not the list
        reason = f"{exc.__class__.__name__}: {exc}"
    else:
        print(f"{rank.prefix}line {job.line}: wrote {result.path} ({result.num_frames} frames, {result.mode} mode, "
              f"{result.variant} model) in {time.perf_counter() - start:.1f} s", file=out, flush=True)
        return "written"
    print(f"edtalk: batch: {rank.prefix}line {job.line} failed: {_one_line(reason)}", file=err, flush=True)
    return "failed"


def summary_line(tally: Tally, world: int = 1) -> str:
    where = f" on {world} processes" if world > 1 else ""
    text = (f"batch: {tally.total} job{'s' if tally.total != 1 else ''}{where}: {tally.written} written, "
            f"{tally.skipped} skipped (output exists), {len(tally.failed)} failed")
    if tally.failed:
        shown = ", ".join(map(str, tally.failed[:20])) + (", ..." if len(tally.failed) > 20 else "")
        text += f" (line{'s' if len(tally.failed) > 1 else ''} {shown})"
    return text


def run_jobs(jobs: List[Job], rank: Rank, models=None, out: Optional[TextIO] = None,
             err: Optional[TextIO] = None) -> Tally:
    """This rank's share of `jobs`, in file order."""
    from .model_cache import ModelCache

    models = models or ModelCache()
    tally = Tally()
    for job in rank.shard(jobs):
        status = run_job(job, models, rank, out, err)
        if status == "written":
            tally.written += 1
        elif status == "skipped":
            tally.skipped += 1
        else:
            tally.failed.append(job.line)
    return tally


def run_batch(jobs_file, defaults: argparse.Namespace, flags: Sequence[argparse.Action],
              to_options: Callable[[argparse.Namespace], object]) -> int:
    """The `edtalk batch` command: 0 when every job was written or skipped, 1 when any failed."""
    from ..runtime import keep_freed_memory

    rank = Rank.from_environment()
    to_options(_with_placeholders(defaults))  # bad defaults (e.g. --batch-size 0) are a usage error, before any job
    jobs = read_jobs(jobs_file, defaults, flags, to_options)
    joined = _join_ranks(rank)
    keep_freed_memory()
    mine = run_jobs(jobs, rank)
    if rank.world > 1:
        print(f"{rank.prefix}{summary_line(mine)}", flush=True)
    total = _total(mine, joined)
    if rank.rank == 0:
        print(summary_line(total, rank.world), flush=True)
    return 1 if total.failed else 0


def _with_placeholders(defaults: argparse.Namespace) -> argparse.Namespace:
    """The defaults with stand-in source/out, to check the remaining flags once up front."""
    ns = copy.copy(defaults)
    ns.source, ns.out = ns.source or "source.png", ns.out or "out.mp4"
    return ns


__all__ = ["Job", "Tally", "Rank", "read_jobs", "job_namespace", "run_job", "run_jobs", "run_batch", "summary_line"]
