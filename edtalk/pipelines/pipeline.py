"""`EDTalkPipeline`: one object every entry point generates through (docs/design.md §5).

    from edtalk import EDTalkPipeline

    pipe = EDTalkPipeline.from_pretrained("checkpoints/synthtalk", device="cpu")
    res = pipe(source="face.png", audio="speech.wav", exp="happy", exp_intensity=1.5)
    res.frames          # uint8 [T,H,W,3], 25 fps
    res.save("out.mp4")  # with the speech as its sound

The pipeline holds its networks — generator (full and/or lip-pose), Audio2Lip, the audio-to-pose
flow, the audio/text-to-expression predictor — and the preset table, each loaded on first use and
kept (loaded again only when its file changes). `write()` streams a clip straight into an MP4 batch
by batch (memory stays flat; `edtalk generate`, `edtalk batch`, the web page and the evaluation
protocol use it; a binary stream such as stdout gets a fragmented MP4); `__call__` returns the frames
in memory; `stream()` yields them one by one as each batch is rendered, also from speech that is still
arriving (an iterator of PCM chunks, `streaming`; docs/generation.md, "Streaming").

Modes (picked from the inputs): video-driven (`lip` drives the mouth), audio-driven (`audio` drives
the mouth through Audio2Lip), dubbing (the source is a video: each of its frames gives identity and
pose, the audio the mouth), or mouth weights given directly (`lip=Weights(...)`). Which driver frame
fills which slot of which output frame is `drivers.plan_drivers`'s one decision.
"""
from __future__ import annotations

import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

from .. import audio as audio_lib
from ..errors import CheckpointError, EDTalkError, InputError
from ..presets import choose_preset_dir, load_preset_dir, presets_from
from ..runtime import default_batch_size, resolve_device, resolve_dtype
from .audio_drivers import check_expression_predictor, check_pose_flow, predict_expression, sample_pose
from .drivers import DUBBING_POSE_ERROR, EXP_TAIL_TRIM, DriverPlan, expression_frame_count, plan_drivers
from .engine import ENGINES, Drivers, Expression, Generator, ModelFiles, load_audio2lip, load_generator
from .loader_cache import LRU, file_stamp
from .preprocess import PreparedImage, PreparedVideo, VideoSource, is_video_path, open_video, prepare_image
from .specs import (SMOOTHING, ExpressionFromSpeech, PoseFromSpeech, Preset, Weights, check_choice, is_video,
                    number, parse_expression, parse_pose)
from .streaming import LOOKAHEAD_FRAMES, LOOKAHEAD_MS, MouthStream, growing_batches, is_growing_audio
from .writer import Extremes, GenerationResult, MemorySink, Pixels, Sound, VideoSink, check_output_path, \
    has_audio_track, is_binary_stream, write_frames

OUTPUT_TYPES = ("uint8", "pt")


@dataclass
class PipelineOutput:
    """One generated clip: `frames` uint8 [T,H,W,3] (the model's [T,3,H,W], unclamped, for output_type="pt"),
    at `fps`, with `audio` its sound (the driving file, kept at its own quality; 16 kHz samples; or None)."""

    frames: Any
    fps: float
    audio: Sound
    mode: str
    variant: str

    def __len__(self) -> int:
        return len(self.frames)

    def save(self, path) -> Path:
        """Write an MP4 (H.264 + AAC) with the sound cut or padded to the clip; nothing is left at
        `path` if writing fails."""
        if isinstance(self.frames, torch.Tensor):
            raise InputError("save() writes uint8 frames: generate with output_type='uint8'", field="output_type")
        return write_frames(path, self.frames, self.audio)


@dataclass
class _Request:
    """One call's inputs, checked and typed."""

    source: Any
    mode: str  # 'audio', 'video', 'weights' (mouth weights given) or 'dubbing'
    audio: Any = None
    lip: Any = None
    pose: Any = None
    exp: Any = None
    exp_intensity: float = 1.0
    crop: bool = True
    paste_back: bool = False
    smoothing: str = "edge"
    parity: bool = False
    legacy_normalize: bool = False
    face_sr: bool = False
    face_sr_weights: Optional[str] = None
    face_backend: str = "dlib"
    batch_size: Optional[int] = None
    progress: bool = False


@dataclass
class _Job:
    """A prepared clip: `batches()` renders it, yielding (float frames [b,3,H,W], paste-back or None)
    a batch at a time; `plan` gives its length (None for a growing audio source)."""

    batches: Callable[[], Iterator]
    plan: Optional[DriverPlan]
    sound: Sound
    mode: str
    variant: str
    device: Any
    batch_size: int

    def render(self, on_batch: Callable) -> None:
        """Render every batch into `on_batch(frames, paste)`."""
        for frames, paste in self.batches():
            on_batch(frames, paste)


@contextmanager
def concerning(name: str):
    """Errors raised inside name the input `name` unless they name one already."""
    try:
        yield
    except EDTalkError as exc:
        if exc.field is None:
            exc.field = name
        raise


class EDTalkPipeline:
    """Talking-head generation from one model folder's networks (see the module docstring)."""

    def __init__(self, files: Optional[ModelFiles] = None, device: Optional[str] = None, dtype: Optional[str] = None,
                 *, generator=None, audio2lip=None, presets=None, batch_size: Optional[int] = None,
                 progress: bool = False):
        """`files`: where the networks are. `device` (auto, cpu, cuda, cuda:N, mps) and `dtype` (fp32,
        fp16, bf16): where the loaded networks run (default: auto and fp32, or the given generator's).
        `generator` / `audio2lip`: networks already loaded (used for every call; the pose flow and
        expression predictor still come from `files`). `presets`: a folder of `<name>.npy` presets
        (default: the model folder's presets/, else $EDTALK_PRESETS, else the official table)."""
        self.files = files or ModelFiles(Path("checkpoints"))
        if self.files.engine not in ENGINES:
            raise InputError(f"unknown --engine {self.files.engine!r} (use torch or onnx)", field="engine")
        self.device_name = str(device or "auto")
        self.device = resolve_device(self.device_name) if device is not None or generator is None else generator.device
        self.dtype = resolve_dtype(str(dtype or "fp32"), self.device) if dtype is not None or generator is None \
            else generator.dtype
        if self.files.engine == "onnx":
            self._check_onnx_export(str(dtype or "fp32"))
        self.presets = Path(presets) if presets is not None else None
        if self.presets is not None:
            with concerning("presets"):
                load_preset_dir(self.presets)  # a bad folder fails here, before any work
        self.batch_size = _batch_size(batch_size)
        self.progress = bool(progress)
        self._given = (generator, audio2lip)
        self._store = LRU(capacity=8)
        self.loads: Counter = Counter()  # what was read from disk: {"EDTalk": 1, "Audio2Lip": 1, ...}

    @classmethod
    def from_pretrained(cls, folder="checkpoints", *, device: str = "auto", dtype: str = "fp32", engine: str = "torch",
                        checkpoint=None, audio2lip=None, pose_flow=None, audio2exp=None, presets=None,
                        batch_size: Optional[int] = None, progress: bool = False) -> "EDTalkPipeline":
        """A pipeline over a model folder: official files (`EDTalk.pt`, `EDTalk_lip_pose.pt`,
        `Audio2Lip.pt`) or saved model folders (`EDTalk/`, `EDTalk_lip_pose/`, `Audio2Lip/`), with
        `pose_flow/`, `audio2exp/` and `presets/` when it has them (e.g. `checkpoints/synthtalk`);
        with engine="onnx", an `edtalk export-onnx` folder run by onnxruntime.

        `checkpoint`, `audio2lip`, `pose_flow`, `audio2exp` replace the folder's own networks; a saved
        generator folder itself (`model.save_pretrained(dir)`) is taken as `checkpoint`.
        Networks load on first use (a video-driven call never reads Audio2Lip)."""
        from ..checkpoints import saved_model_type

        if checkpoint is None and str(engine or "torch").lower() == "torch" and saved_model_type(folder) == "edtalk":
            checkpoint = folder
        opt = lambda p: Path(p) if p is not None else None  # noqa: E731
        files = ModelFiles(Path(folder), opt(checkpoint), opt(audio2lip), opt(pose_flow), opt(audio2exp),
                           str(engine or "torch").lower())
        return cls(files, device, dtype, presets=presets, batch_size=batch_size, progress=progress)

    def __repr__(self) -> str:
        return (f"EDTalkPipeline(folder={str(self.files.folder)!r}, engine={self.files.engine!r}, "
                f"device={str(self.device)!r}, dtype={str(self.dtype).replace('torch.', '')!r})")

    # ------------------------------------------------------------------ the networks, loaded once

    def _load(self, key: tuple, name: str, build: Callable):
        def counted():
            value = build()
            self.loads[name] += 1
            return value

        return self._store.get(key, counted)

    def _check_onnx_export(self, dtype: str) -> None:
        from ..onnx.runtime import read_metadata

        if not self.files.folder.is_dir():
            raise InputError(f"--onnx-dir not found: {self.files.folder}", field="checkpoint")
        if dtype.lower() not in ("fp32", "float32"):
            raise InputError("--engine onnx runs the exported float32 graphs: leave --dtype at fp32", field="dtype")
        read_metadata(self.files.folder)

    def models(self, expression: bool = True, audio: bool = False):
        """(generator, Audio2Lip or None): the generator a call with (`expression`) or without an
        expression driver uses, and Audio2Lip when the mouth follows speech (`audio`)."""
        generator, audio2lip = self._given
        if generator is not None:
            return generator, audio2lip
        if self.files.engine == "onnx":
            return self._onnx_models(expression, audio)
        path = self.files.generator(expression)
        with concerning("checkpoint"):
            generator = self._load(("generator", file_stamp(path) or str(path), str(self.device), str(self.dtype)),
                                   Path(path).stem, lambda: load_generator(path, self.device, self.dtype))
            if audio:
                a2l = self.files.audio2lip_path()
                audio2lip = self._load(("audio2lip", file_stamp(a2l) or str(a2l), str(self.device)), Path(a2l).stem,
                                       lambda: load_audio2lip(a2l, self.device))
        return generator, audio2lip

    def _onnx_models(self, expression: bool, audio: bool):
        from ..onnx.runtime import load_onnx_models

        folder = self.files.folder
        with concerning("checkpoint"):
            generator = self._load(("onnx-generator", file_stamp(folder), expression), "EDTalk (onnx)",
                                   lambda: load_onnx_models(folder, expression, False, self.device_name)[0])
            audio2lip = None
            if audio:
                audio2lip = self._load(("onnx-audio2lip", file_stamp(folder)), "Audio2Lip (onnx)",
                                       lambda: load_onnx_models(folder, False, True, self.device_name)[1])
        return generator, audio2lip

    def _pose_flow(self):
        """(flow, its Audio2Lip) of the audio-to-pose model."""
        path = self.files.pose_flow_path()
        check_pose_flow(path)
        if self.files.engine == "onnx":
            from ..onnx.runtime import load_onnx_pose_flow as load
        else:
            from ..networks.pose_flow import load_pose_flow as load
        return self._load(("pose_flow", file_stamp(path)), "pose_flow", lambda: load(path))

    def _expression_predictor(self):
        """(predictor, its Audio2Lip, text encoder name) of the audio/text-to-expression model."""
        path = self.files.audio2exp_path()
        check_expression_predictor(path)
        if self.files.engine == "onnx":
            from ..onnx.runtime import load_onnx_expression_predictor as load
        else:
            from ..networks.expression_predictor import load_expression_predictor as load
        return self._load(("audio2exp", file_stamp(path)), "audio2exp", lambda: load(path))

    @property
    def preset_dir(self) -> Optional[Path]:
        """The preset folder calls use (None: the official table)."""
        return choose_preset_dir(self.presets, self.files.preset_anchor())

    @contextmanager
    def _preset_table(self):
        folder = self.preset_dir
        table = None
        if folder is not None:
            with concerning("presets"):
                table = self._load(("presets", file_stamp(folder) or str(folder)), "presets",
                                   lambda: load_preset_dir(folder))
        with presets_from(folder, table):
            yield folder

    # ------------------------------------------------------------------ generation

    def __call__(self, source, audio=None, lip=None, pose=None, exp=None, *, exp_intensity: float = 1.0,
                 exp_text: Optional[str] = None, seed: int = 0, pose_temperature: float = 0.7, crop: bool = True,
                 paste_back: bool = False, smoothing: str = "edge", parity: bool = False,
                 legacy_normalize: bool = False, face_sr: bool = False, face_sr_weights: Optional[str] = None,
                 face_backend: str = "dlib", batch_size: Optional[int] = None, progress: Optional[bool] = None,
                 output_type: str = "uint8") -> PipelineOutput:
        """Generate one clip in memory.

        Args:
            source: the identity: a face image (file, uint8 [H,W,3], or a model image [1,3,S,S] in
                [-1,1]), or a video file to dub.
            audio: speech (a file ffmpeg reads, or 16 kHz mono samples): drives the mouth unless `lip`
                does; also the clip's sound.
            lip: what drives the mouth: a video (file, uint8 frames [T,H,W,3] of aligned crops, or
                model images [T,3,S,S]) or `Weights` [T,20].
            pose: None or "fixed" (the source's own pose), a video, `Weights` [T,6], or "audio" /
                `PoseFromSpeech` (sampled from the speech with `pose_temperature` and `seed`).
            exp: None or "none" (the source's own expression; the lip-pose model when the folder has
                it), a preset or blend ("happy", "happy:0.7+sad:0.3", `Preset`), a video or image of
                a face, `Weights` [10] / [T,10] or an .npy of them, or "audio" / `ExpressionFromSpeech`.
            exp_intensity: the strength of a preset or predicted expression named by a string (0 neutral,
                1 the preset); `Preset` and `ExpressionFromSpeech` carry their own.
            exp_text: a transcript whose emotion words drive the expression (alone, or with exp="audio").
            crop: find and crop the face (False: inputs are aligned crops at the model's size).
            paste_back: paste the generated face back into the full source frame.
            smoothing: "edge" (default), "official" or "none" for the audio mouth weights.
            parity: the official per-demo driver rules; legacy_normalize: the official min–max pixels.
            face_sr: GFPGAN ×2 on every frame (weights `face_sr_weights` or $EDTALK_GFPGAN_WEIGHTS).
            output_type: "uint8" (frames [T,H,W,3]) or "pt" (the model's own frames [T,3,H,W], unclamped,
                on its device in its dtype).

        Errors: an `InputError` / `CheckpointError` whose `field` names the argument at fault.
        """
        output_type = check_choice(output_type, OUTPUT_TYPES, "output_type", "output_type")
        _whole_audio_only(audio)
        with self._preset_table():
            request = self._request(source, audio, lip, pose, exp, exp_intensity=exp_intensity, exp_text=exp_text,
                                    seed=seed, pose_temperature=pose_temperature, crop=crop, paste_back=paste_back,
                                    smoothing=smoothing, parity=parity, legacy_normalize=legacy_normalize,
                                    face_sr=face_sr, face_sr_weights=face_sr_weights, face_backend=face_backend,
                                    batch_size=batch_size, progress=progress)
            _check_output_type(output_type, request)
            job = self._prepare(request)
            sink = MemorySink(None if output_type == "pt" else self._pixels(job, request))
            job.render(sink.write)
        return PipelineOutput(sink.frames(), float(audio_lib.FPS), job.sound, job.mode, job.variant)

    def write(self, out, source, audio=None, lip=None, pose=None, exp=None, *, save_frames=None,
              **options) -> GenerationResult:
        """Generate one clip straight into an MP4 at `out`, batch by batch (memory does not grow with
        the clip); `save_frames`: also a folder of PNGs. Other arguments as for calling the pipeline.
        Nothing is left at `out` (or `save_frames`) when it fails.

        `out` may also be a binary stream with a file descriptor (e.g. `sys.stdout.buffer`): a
        fragmented MP4 goes into it as the frames are made, for a player or another program to read
        while it is written (`edtalk generate --out -`)."""
        _whole_audio_only(audio)
        with self._preset_table():
            request = self._request(source, audio, lip, pose, exp, **options)
            stream = is_binary_stream(out)
            if not stream and hasattr(out, "write"):
                raise InputError("out is a path, or a binary stream with a file descriptor (e.g. sys.stdout.buffer)",
                                 field="out")
            if not stream:
                out = Path(out)
                check_output_path(out)
            job = self._prepare(request)
            pixels = self._pixels(job, request)
            with VideoSink(out, len(job.plan), job.sound, pixels, save_frames) as sink:
                job.render(sink.write)
        return GenerationResult(Path("-") if stream else out, job.mode, len(job.plan), job.variant)

    STREAM_LOOKAHEAD_FRAMES = LOOKAHEAD_FRAMES  # a growing audio source: frames of audio past a frame before it is made
    STREAM_LOOKAHEAD_MS = LOOKAHEAD_MS  # the same in milliseconds (default smoothing; one frame less without)

    def stream(self, source, audio=None, lip=None, pose=None, exp=None, *, sample_rate: Optional[int] = None,
               output_type: str = "uint8", **options) -> Iterator:
        """Generate one clip frame by frame: an iterator of uint8 frames [H,W,3] (paste-back and the
        rest applied) in order, each batch as the engine renders it — the first frame comes after one
        batch, not the whole clip. The frames are those of calling the pipeline with the same arguments.

        Arguments as for calling the pipeline, and `audio` may be a growing source: an iterator of
        PCM chunks (float in [-1,1], or int16/int32; mono [n] or [n, channels]) at `sample_rate` Hz
        (default 16000; other rates are resampled as a whole recording would be). Frame i is then
        made once the audio through frame i + `STREAM_LOOKAHEAD_FRAMES` is in; the clip ends with the
        source. The mouth follows the speech, from a face image, with a still pose, a pose video or
        weights, and any expression but one predicted from the speech (those read the whole utterance).

        Everything before rendering (checks, networks, the source, file drivers) happens in this
        call, so a mistake raises here; chunks are read and frames rendered as they are taken.
        `output_type="pt"` yields the model's own frames [3,H,W].
        """
        output_type = check_choice(output_type, OUTPUT_TYPES, "output_type", "output_type")
        with self._preset_table():
            request = self._request(source, audio, lip, pose, exp, **options)
            _check_output_type(output_type, request)
            if is_growing_audio(audio):
                _check_growing(request)
            elif sample_rate is not None:
                raise InputError("sample_rate is the rate of a growing audio source's chunks; a file or array "
                                 "is read at its own rate (arrays at 16 kHz)", field="sample_rate",
                                 plain="applies to audio given as chunks only")
            job = self._prepare(request, sample_rate=audio_lib.SAMPLE_RATE if sample_rate is None else sample_rate)
            pixels = None if output_type == "pt" else self._pixels(job, request)
        return _frames_of(job, pixels)

    # ------------------------------------------------------------------ checking a call

    def _request(self, source, audio=None, lip=None, pose=None, exp=None, *, exp_intensity=1.0, exp_text=None,
                 seed=0, pose_temperature=0.7, crop=True, paste_back=False, smoothing="edge", parity=False,
                 legacy_normalize=False, face_sr=False, face_sr_weights=None, face_backend="dlib",
                 batch_size=None, progress=None) -> _Request:
        mode = _mode_of(source, audio, lip)
        pose = parse_pose(pose, pose_temperature, seed)
        if mode == "dubbing" and pose is not None:
            raise InputError(DUBBING_POSE_ERROR, field="pose",
                             plain="does not apply to dubbing: each frame of the source video gives the pose")
        exp = parse_expression(exp, exp_intensity, exp_text)
        if isinstance(exp, ExpressionFromSpeech):
            if exp.audio and audio is None:
                raise InputError("--exp audio needs --audio (the speech whose emotion is read)", field="exp",
                                 plain="from the speech needs speech audio")
            if mode == "dubbing":
                raise InputError("--exp audio / --exp-text are not available in dubbing; use a preset", field="exp",
                                 plain="from the speech is not available in dubbing; use a preset")
        if mode == "dubbing" and exp is not None and not isinstance(exp, Preset):
            raise InputError("in dubbing, --exp takes a preset (or none to keep each frame's own expression)",
                             field="exp", plain="in dubbing, only a preset (or each frame's own expression)")
        if isinstance(pose, PoseFromSpeech) and audio is None:
            raise InputError("--pose audio needs --audio (the speech that drives the head)", field="pose",
                             plain="from the speech needs speech audio")
        return _Request(source, mode, audio, lip, pose, exp, number(exp_intensity, "exp_intensity", "--exp-intensity"),
                        bool(crop), bool(paste_back), check_choice(smoothing, SMOOTHING, "smoothing", "--smoothing"),
                        bool(parity), bool(legacy_normalize), bool(face_sr), face_sr_weights, face_backend,
                        _batch_size(batch_size), self.progress if progress is None else bool(progress))

    # ------------------------------------------------------------------ preparing a clip

    def _prepare(self, request: _Request, sample_rate: int = audio_lib.SAMPLE_RATE) -> _Job:
        """Everything before rendering: checks that need files, speech, networks, drivers, the plan
        (`sample_rate`: the rate of a growing audio source's chunks)."""
        if request.face_sr:  # a missing gfpgan package or weights file fails before any work
            from ..face.restore import check_face_restoration

            with concerning("face_sr"):
                check_face_restoration(request.face_sr_weights)
        if isinstance(request.exp, ExpressionFromSpeech):
            check_expression_predictor(self.files.audio2exp_path())
        if isinstance(request.pose, PoseFromSpeech):
            check_pose_flow(self.files.pose_flow_path())
        wav = None
        if request.audio is not None and not is_growing_audio(request.audio):
            # The 16 kHz mono copy feeds the mel features; the output gets the file.
            with concerning("audio"):
                wav = audio_lib.load_audio(request.audio)
                audio_lib.check_audio(wav, request.audio if isinstance(request.audio, (str, Path)) else "audio")
        model, audio2lip = self.models(expression=request.exp is not None,
                                       audio=request.mode in ("audio", "dubbing"))
        if request.exp is not None and not model.has_expression:
            raise CheckpointError("expression driving needs the full EDTalk checkpoint (EDTalk.pt), "
                                  "not the lip-pose model; or use --exp none", field="exp",
                                  plain="needs the full EDTalk model, not the lip-pose model; or keep the "
                                        "source's own expression")
        gen = Generator(model, audio2lip, request.batch_size or self.batch_size or default_batch_size(model.device),
                        request.progress)
        videos = _VideoStore(model.config.size, request)
        smoothing = "official" if request.parity else request.smoothing
        if request.mode == "dubbing":
            batches, plan = self._dubbing(request, gen, videos, wav, smoothing)
            sound = request.audio
        else:
            batches, plan, sound = self._from_image(request, gen, videos, wav, smoothing, sample_rate)
        return _Job(batches, plan, sound, request.mode, model.variant, model.device, gen.batch_size)

    def _pixels(self, job: _Job, request: _Request) -> Pixels:
        restore = None
        if request.face_sr:
            from ..face.restore import FaceRestorer

            restore = FaceRestorer(request.face_sr_weights, device=job.device, batch_size=job.batch_size)
        if request.legacy_normalize:  # the official per-clip min–max needs the clip's extremes: a first pass
            extremes = Extremes()
            job.render(extremes.update)
            return Pixels.legacy(extremes, restore)
        return Pixels(restore=restore)

    def _from_image(self, request: _Request, gen: Generator, videos: "_VideoStore", wav, smoothing: str,
                    sample_rate: int = audio_lib.SAMPLE_RATE):
        """Audio-, video- or weights-driven generation from a face image: (batches(), plan, sound)."""
        model = gen.model
        with concerning("source"):
            source = _source_image(request.source, model.config.size, request)
            latent, feats = gen.encode(source.tensor)
        own = gen.heads(latent, ("pose", "exp"))
        sound = request.audio
        paste = source.paste_back if request.paste_back else None
        if is_growing_audio(request.audio):
            return self._growing(request, gen, videos, latent, feats, own, smoothing, sample_rate, paste), None, None
        if request.mode == "audio":
            mouth = gen.mouth_from_audio(wav, smoothing)
        elif request.mode == "weights":
            mouth = request.lip.tensor(model_dims(model)["mouth"], "lip")
        else:
            with concerning("lip"):
                mouth = gen.heads(gen.video_latents(videos.get(request.lip)), ("mouth",))["mouth"]
            if sound is None and isinstance(request.lip, (str, Path)) and has_audio_track(request.lip):
                sound = str(request.lip)
        with concerning("pose"):
            pose = self._pose_sequence(request, gen, videos, wav, own["pose"])
        with concerning("exp"):
            exp = self._expression(request, gen, videos, own.get("exp"), wav)
        plan = plan_drivers("audio" if request.mode == "weights" else request.mode, len(mouth),
                            pose_frames=None if pose is None else len(pose),
                            exp_frames=None if exp.sequence is None else len(exp.sequence), parity=request.parity,
                            lip_pose_model=not model.has_expression, exp_trim=exp.trim)
        drivers = Drivers.from_plan(plan, mouth.to(model.device), own["pose"], pose, exp.sequence, exp.constant)

        def batches():
            for frames in gen.render_batches(latent, feats, drivers):
                yield frames, paste

        return batches, plan, sound

    def _growing(self, request: _Request, gen: Generator, videos: "_VideoStore", latent, feats, own, smoothing: str,
                 sample_rate: int, paste):
        """batches() of a face image whose mouth follows a growing audio source (`request.audio`)."""
        model = gen.model
        with concerning("pose"):
            pose = self._pose_sequence(request, gen, videos, None, own["pose"])
        with concerning("exp"):
            exp = self._expression(request, gen, videos, own.get("exp"), None)
        with concerning("audio"):
            mouths = MouthStream(gen, smoothing, sample_rate)
        # One expression for every frame or not, decided on the whole driver as a call decides it.
        constant_exp = None
        if exp.sequence is not None:
            used = exp.sequence[:expression_frame_count(len(exp.sequence), exp.trim) if exp.trim else len(exp.sequence)]
            constant_exp = bool((used == used[:1]).all())

        def drivers_for(first: int, mouth: torch.Tensor) -> Drivers:
            plan = plan_drivers("audio", first + len(mouth), pose_frames=None if pose is None else len(pose),
                                exp_frames=None if exp.sequence is None else len(exp.sequence),
                                parity=request.parity, lip_pose_model=not model.has_expression, exp_trim=exp.trim,
                                first=first)
            drivers = Drivers.from_plan(replace(plan, lip=plan.lip - first), mouth.to(model.device), own["pose"],
                                        pose, exp.sequence, exp.constant)
            if constant_exp is not None:
                drivers.exp_constant = constant_exp
            return drivers

        return lambda: growing_batches(gen, latent, feats, mouths, request.audio, drivers_for, paste)

    def _pose_sequence(self, request: _Request, gen: Generator, videos: "_VideoStore", wav,
                       own_pose: torch.Tensor) -> Optional[torch.Tensor]:
        """Pose weights [N,6] of the pose driver, or None when the source's own pose is held."""
        pose = request.pose
        if pose is None:
            return None
        if isinstance(pose, PoseFromSpeech):
            flow, audio2lip = self._pose_flow()
            return sample_pose(flow, audio2lip, wav, own_pose, pose.temperature, pose.seed)
        if isinstance(pose, Weights):
            return pose.tensor(6, "pose").to(own_pose.device, torch.float32)
        return gen.heads(gen.video_latents(videos.get(pose)), ("pose",))["pose"]

    def _expression(self, request: _Request, gen: Generator, videos: "_VideoStore", own_exp, wav) -> Expression:
        """The expression slot's driver; constant None (and no sequence) for the lip-pose model."""
        exp, model = request.exp, gen.model
        if exp is None:
            # With only the full model, "none" keeps the source's own expression (docs/design.md §5.1 [D]).
            return Expression(constant=own_exp if model.has_expression else None)
        if isinstance(exp, ExpressionFromSpeech):  # one α_e for the utterance, used like a preset
            net, audio2lip, text_encoder = self._expression_predictor()
            return Expression(constant=predict_expression(net, audio2lip, text_encoder, wav, exp.audio, exp.text,
                                                          exp.intensity, model.device))
        if isinstance(exp, Weights):  # taken as given (no tail trim)
            return Expression(sequence=exp.tensor(10, "exp").to(model.device, torch.float32))
        if isinstance(exp, Preset):
            return Expression(constant=torch.from_numpy(exp.vector()).to(model.device)[None])
        if not is_video(exp):  # a single image drives a constant expression
            image = _source_image(exp, model.config.size, request)
            with torch.inference_mode():
                latent = model.encode_latent(gen.to_model(image.tensor))
            return Expression(constant=gen.heads(latent, ("exp",))["exp"])
        if request.exp_intensity != 1.0:
            warnings.warn("--exp-intensity applies to presets only; ignored for an expression video")
        video = videos.get(exp)
        return Expression(sequence=gen.heads(gen.video_latents(video), ("exp",))["exp"], trim=EXP_TAIL_TRIM)

    def _dubbing(self, request: _Request, gen: Generator, videos: "_VideoStore", wav, smoothing: str):
        """Dubbing: frame plan.source[i] of the source video is identity and pose; audio drives lips."""
        model = gen.model
        mouth = gen.mouth_from_audio(wav, smoothing).to(model.device)
        with concerning("source"):
            video = videos.get(request.source, keep_original=request.paste_back)
        plan = plan_drivers("dubbing", len(mouth), source_frames=len(video), parity=request.parity)
        preset = None
        if request.exp is not None:  # a Preset (checked with the request); the model has an expression space
            preset = torch.from_numpy(request.exp.vector()).to(model.device)

        @torch.inference_mode()
        def batches():
            done = 0
            source_batches = video.frames_for(plan.source, gen.batch_size)
            if gen.progress and len(plan) > gen.batch_size:
                from tqdm.auto import tqdm

                source_batches = tqdm(source_batches, desc="dubbing", unit="batch", leave=False,
                                      total=-(-len(plan) // gen.batch_size))
            for index, images, crops, originals in source_batches:
                latent, feats = gen.encode(images)
                own = gen.heads(latent, ("pose", "exp"))
                exp = None
                if model.has_expression:
                    exp = preset[None].expand(latent.shape[0], -1) if preset is not None else own["exp"]
                lips = mouth[plan.lip[done:done + len(index)]]
                done += len(index)
                paste = None
                if originals is not None and video.crop is not None:
                    paste = _video_paster(video, originals, crops, index)
                yield model.render(latent, feats, lips, own["pose"], exp), paste

        return batches, plan


# ----------------------------------------------------------------------------- helpers

def _frames_of(job: _Job, pixels: Optional[Pixels]):
    """Each frame of a job, as its batch is rendered: uint8 [H,W,3] through `pixels`, or the model's [3,H,W]."""
    for frames, paste in job.batches():
        yield from (pixels(frames, paste) if pixels is not None else frames.detach())


def _check_output_type(output_type: str, request: _Request) -> None:
    if output_type == "pt" and (request.paste_back or request.face_sr or request.legacy_normalize):
        raise InputError("output_type='pt' gives the model's own frames: paste_back, face_sr and "
                         "legacy_normalize need output_type='uint8'", field="output_type")


def _whole_audio_only(audio) -> None:
    if is_growing_audio(audio):
        raise InputError("audio given as an iterator of chunks is for stream(); give a file or an array of "
                         "samples here", field="audio", plain="audio given as chunks can only be streamed")


def _check_growing(request: _Request) -> None:
    """What a growing audio source can drive: the mouth of a face image, frame by frame."""
    if request.mode == "dubbing":
        raise InputError("dubbing reads the audio as a file or an array: a growing audio source drives a face "
                         "image", field="audio", plain="dubbing needs the whole audio; stream from a face image")
    if request.mode != "audio":
        raise InputError("a growing audio source drives the mouth: leave lip out", field="lip",
                         plain="the streamed audio drives the mouth: leave this empty")
    if isinstance(request.pose, PoseFromSpeech):
        raise InputError("pose from speech samples the whole utterance at once: with a growing audio source use "
                         "a still pose, a pose video or pose weights", field="pose",
                         plain="from the speech needs the whole utterance: not with streamed audio")
    if isinstance(request.exp, ExpressionFromSpeech) and request.exp.audio:
        raise InputError("an expression from the speech reads the whole utterance: with a growing audio source "
                         "use a preset, an image or video, weights, or a transcript (exp_text) alone",
                         field="exp", plain="from the speech needs the whole utterance: not with streamed audio")
    if request.legacy_normalize:
        raise InputError("legacy_normalize needs the whole clip's extremes before the first frame: not with a "
                         "growing audio source", field="legacy_normalize",
                         plain="needs the whole clip first: not with streamed audio")


def _batch_size(value) -> Optional[int]:
    if value is None:
        return None
    size = number(value, "batch_size", "--batch-size", int)
    if size < 1:
        raise InputError("--batch-size must be at least 1", field="batch_size", plain="must be at least 1")
    return size


def _mode_of(source, audio, lip) -> str:
    if source is None:
        raise InputError("no --source: give a face image (or a talking-head video to dub)", field="source",
                         plain="give a face image (or a talking-head video to dub)")
    if isinstance(source, np.ndarray) and source.ndim == 4:
        raise InputError("a source video to dub is given as a file", field="source")
    if isinstance(source, (str, Path)) and is_video_path(source):
        if audio is None:
            raise InputError("dubbing a source video needs --audio", field="audio",
                             plain="dubbing a source video needs speech audio")
        return "dubbing"
    if lip is not None:
        return "weights" if isinstance(lip, Weights) else "video"
    if audio is not None:
        return "audio"
    raise InputError("nothing drives the mouth: give --lip VIDEO (video-driven) or --audio FILE (audio-driven)",
                     field="audio", plain="nothing drives the mouth: give speech audio or a lip video")


def model_dims(model) -> dict:
    config = model.config
    return {"mouth": getattr(config, "mouth_dim", 20), "pose": getattr(config, "pose_dim", 6)}


def _source_image(image, size: int, request: _Request) -> PreparedImage:
    """A face image as the model's input: a file or uint8 [H,W,3] (cropped unless request.crop is off),
    or a model image [1,3,S,S] / [3,S,S] in [-1,1] taken as it is."""
    if isinstance(image, torch.Tensor):
        tensor = image[None] if image.dim() == 3 else image
        if tensor.dim() != 4 or tensor.shape[0] != 1 or tuple(tensor.shape[1:]) != (3, size, size):
            raise InputError(f"an image tensor must be [1,3,{size},{size}] in [-1,1], got {tuple(image.shape)}")
        return PreparedImage(tensor, original=None)
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise InputError(f"an image array must be uint8 [H,W,3], got {image.dtype} {image.shape}")
    return prepare_image(image if isinstance(image, np.ndarray) else str(image), size, crop=request.crop,
                         backend=request.face_backend)


class _VideoStore:
    """Video inputs, opened (face tube found) once per file or array within one call."""

    def __init__(self, size: int, request: _Request):
        self.size, self.request, self.cache = size, request, {}

    def get(self, video, keep_original: bool = False):
        """`keep_original` decodes full-size frames (only a dubbed source needs them, for paste-back).
        Arrays are aligned face crops: uint8 [T,H,W,3] or model images [T,3,S,S] in [-1,1]."""
        if isinstance(video, (np.ndarray, torch.Tensor)):
            key = ("array", id(video))
            if key not in self.cache:
                self.cache[key] = (_prepared_frames(video, self.size), video)  # keeps the array alive: ids stay unique
            return self.cache[key][0]
        key = ("file", str(Path(video).resolve()))
        if key not in self.cache:
            if not is_video_path(video):
                raise InputError(f"not a video file: {video} (use .mp4, .mov, .avi, .mkv, .webm, ...)")
            r = self.request
            self.cache[key] = (open_video(video, self.size, crop=r.crop, backend=r.face_backend,
                                          keep_original=keep_original, progress=r.progress), None)
        return self.cache[key][0]


def _prepared_frames(frames, size: int) -> PreparedVideo:
    if isinstance(frames, torch.Tensor):
        if frames.dim() != 4 or frames.shape[1] != 3 or len(frames) == 0:
            raise InputError(f"video frames must be [T,3,{size},{size}] in [-1,1], got {tuple(frames.shape)}")
        return PreparedVideo(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise InputError(f"video frames must be uint8 [T,H,W,3], got {frames.dtype} {frames.shape}")
    return PreparedVideo(frames, size=size)


def _video_paster(video: VideoSource, originals: np.ndarray, crops: np.ndarray, index: np.ndarray):
    def paste(faces: np.ndarray) -> np.ndarray:
        from ..face import paste_back

        points = video.crop_landmarks(crops, index)
        if points is not None and faces.shape[1] != crops.shape[1]:  # --face-sr made the faces larger
            k = faces.shape[1] / crops.shape[1]
            points = (points + 0.5) * k - 0.5  # pixel-centre aligned, as the resizes
        return paste_back(originals, faces, video.crop, landmarks=points)

    return paste


__all__ = ["EDTalkPipeline", "PipelineOutput", "GenerationResult", "ModelFiles", "Preset", "Weights",
           "PoseFromSpeech", "ExpressionFromSpeech", "concerning"]
