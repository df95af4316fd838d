"""`edtalk webui`: a Gradio page for every generation mode.

The page is a form over `EDTalkPipeline`: it calls the same pipeline the CLI runs (no second code
path) with typed values (`Preset`, `PoseFromSpeech`, ...), and a mistake in one input is shown by
that input's name (the error's `field`). What the page adds around it:
- a line naming the loaded model, its output size and the faces it knows, and examples (with
  thumbnails) made for that model: the SynthTalk face and speech for the bundled model, the photos
  for real-face weights;
- models are loaded once and kept (one pipeline per model, `ModelCache`); the model folder's presets/ are the preset table,
  as in the CLI (`--presets DIR` overrides);
- every upload is checked at once for type (by extension and by content), file size, pixel count
  and, for speech, length; a bad one leaves its box with one message; good ones are previewed;
- one explicit choice of head-pose source; mistakes (bad upload, missing checkpoint, no face) are
  one message in the page, never a stack trace;
- requests queue, one generation at a time (the CPU is the bottleneck);
- each browser tab keeps a history of its results; uploads and results are served only to the
  browser that made them (`edtalk.web_access`), and a tab's results are deleted when it closes;
  Gradio serves only its own upload/cache folder (a fresh private one per server).
"""
import dataclasses
import functools
import hashlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from .bundled import is_synthtalk_model, shown_path
from .errors import EDTalkError, InputError
from .pipelines.audio_drivers import AUDIO2EXP_DIR, POSE_FLOW_DIR
from .pipelines.engine import EDTALK_FILE, LIP_POSE_FILE, ModelFiles, model_part
from .pipelines.model_cache import ModelCache
from .pipelines.pipeline import EDTalkPipeline
from .pipelines.preprocess import IMAGE_EXTS, MAX_IMAGE_PIXELS, VIDEO_EXTS, ImageTooLargeError, load_image
from .pipelines.specs import ExpressionFromSpeech, PoseFromSpeech, Preset
from .presets import choose_preset_dir, describe_preset_dir, preset_names, presets_from
from .runtime import resolve_device
from .web_access import SessionFiles, SessionGuard, owner_of

log = logging.getLogger(__name__)

AUDIO_EXTS = {".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac"}
EXTENSIONS = {"image": IMAGE_EXTS, "video": VIDEO_EXTS, "audio": AUDIO_EXTS}
LIMIT_MB = {"image": 20, "audio": 50, "video": 200}  # per upload; Gradio itself refuses anything larger
SERVER_MAX_UPLOAD = f"{max(LIMIT_MB.values())}mb"
MIN_AUDIO_SECONDS = 0.4  # 10 video frames: shorter speech makes a clip too short to play or judge
REPO_EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HISTORY_LIMIT = 24  # results kept in a tab's history (newest first)

EXP_OWN, EXP_PRESET, EXP_BLEND, EXP_FILE = ("source's own", "preset", "blend of two presets",
                                            "from a video or image")
EXP_SPEECH = "from the speech (and text)"  # the audio/text-to-expression predictor (--exp audio, --exp-text)
POSE_FIXED, POSE_VIDEO, POSE_SPEECH = "the source's own, held still", "from a video", "from the speech"
AUTO_MODEL = ""  # the dropdown value for "pick like the CLI does"
UPLOADS = {  # upload box: (its name in messages, accepted kinds)
    "identity": ("Identity", ("image", "video")), "audio": ("Audio", ("audio",)), "lip": ("Lip video", ("video",)),
    "pose": ("Pose video", ("video",)), "exp_file": ("Expression", ("video", "image")),
}
PREVIEWS = {"identity": ("image", "video"), "audio": ("audio",), "lip": ("video",), "pose": ("video",),
            "exp_file": ("image", "video")}


# ----------------------------------------------------------------------------- uploads

def kind_of(path) -> Optional[str]:
    suffix = Path(str(path)).suffix.lower()
    return next((kind for kind, exts in EXTENSIONS.items() if suffix in exts), None)


class Unfit(Exception):
    """An upload that was read but does not fit: its text completes "<label>: <file> ..."."""


def _check_image(path) -> None:
    try:
        load_image(path)  # decodes the pixels: a renamed text file fails here
    except ImageTooLargeError as exc:
        raise Unfit(f"has too many pixels: {exc.megapixels} megapixels (at most {MAX_IMAGE_PIXELS / 1e6:.0f})") \
            from None


def _media_info(path, kind: str) -> dict:
    from .video import probe_video

    info = probe_video(path)
    if not info[kind]:
        raise InputError(f"no {kind} stream")
    return info


def _check_audio(path) -> None:
    seconds = _media_info(path, "audio")["duration"]
    if seconds < MIN_AUDIO_SECONDS:
        raise Unfit(f"is {seconds:.2f} s long; speech must last at least {MIN_AUDIO_SECONDS:g} s "
                    f"({round(MIN_AUDIO_SECONDS * 25)} video frames)")


CONTENT_CHECKS = {"image": _check_image, "video": lambda path: _media_info(path, "video"), "audio": _check_audio}


def check_upload(path, allowed: Sequence[str], label: str) -> str:
    """The kind ('image', 'video' or 'audio') of an uploaded file after checking its extension,
    size and content; InputError with a message for the page otherwise."""
    name = Path(str(path)).name
    kind = kind_of(name)
    if kind not in allowed:
        exts = " ".join(sorted(set().union(*(EXTENSIONS[k] for k in allowed))))
        raise InputError(f"{label}: {name} is not {' or '.join(allowed)} (accepted: {exts})")
    size_mb = os.path.getsize(path) / 2 ** 20
    if size_mb > LIMIT_MB[kind]:
        raise InputError(f"{label}: {name} is {size_mb:.0f} MB; {kind} uploads are limited to {LIMIT_MB[kind]} MB")
    try:
        CONTENT_CHECKS[kind](path)
    except Unfit as unfit:
        raise InputError(f"{label}: {name} {unfit}") from None
    except InputError:
        raise InputError(f"{label}: {name} is not a readable {kind}") from None
    return kind


# ----------------------------------------------------------------------------- form → pipeline arguments

@dataclass
class Form:
    """What the page sends: upload paths (None when empty) and the option widgets' values."""

    identity: Optional[str] = None
    audio: Optional[str] = None
    lip: Optional[str] = None
    pose: Optional[str] = None
    pose_choice: str = POSE_FIXED
    exp_choice: str = EXP_OWN
    preset: str = "happy"
    intensity: float = 1.0
    preset2: str = "surprised"
    blend: float = 0.3
    exp_file: Optional[str] = None
    exp_text: str = ""          # with EXP_SPEECH: an optional sentence whose emotion words also count
    model: str = AUTO_MODEL
    crop: bool = True
    paste_back: bool = False
    smoothing: str = "edge"
    batch_size: int = 0
    face_sr: bool = False

    def uploads(self) -> Dict[str, str]:
        """{box: path} of the boxes that hold a file."""
        return {box: getattr(self, box) for box in UPLOADS if getattr(self, box)}

    def used_uploads(self) -> Dict[str, str]:
        """The uploads the chosen options use (a pose video only as the pose source, and so on)."""
        unused = {"exp_file"} if self.exp_choice != EXP_FILE else set()
        if self.pose_choice != POSE_VIDEO:
            unused.add("pose")
        return {box: path for box, path in self.uploads().items() if box not in unused}


def expression_spec(form: Form):
    """The pipeline's `exp` for the chosen expression source: None (the source's own), a Preset (one, or
    a blend of two), an uploaded file, or ExpressionFromSpeech (with the transcript, when given)."""
    intensity = float(form.intensity)
    if form.exp_choice == EXP_PRESET:
        return Preset({form.preset: 1.0}, intensity)
    if form.exp_choice == EXP_BLEND:
        if form.preset == form.preset2:
            return Preset({form.preset: 1.0}, intensity)
        w = min(max(float(form.blend), 0.0), 1.0)
        return Preset({form.preset: 1 - w, form.preset2: w}, intensity)
    if form.exp_choice == EXP_FILE:
        if not form.exp_file:
            raise InputError("Expression: upload a video or image of a face, or pick another expression source")
        return form.exp_file
    if form.exp_choice == EXP_SPEECH:
        if not form.audio:
            raise InputError("Expression from the speech needs speech audio; upload it or pick another source")
        return ExpressionFromSpeech(audio=True, text=(form.exp_text or "").strip() or None, intensity=intensity)
    return None


def pose_spec(form: Form):
    """The pipeline's `pose` for the one chosen pose source: a video, PoseFromSpeech, or None (held still)."""
    if form.pose_choice == POSE_VIDEO:
        if not form.pose:
            raise InputError("Head pose: upload a pose video, or pick another pose source")
        return form.pose
    if form.pose_choice == POSE_SPEECH:
        if not form.audio:
            raise InputError("Head pose from the speech needs speech audio; upload it or pick another pose source")
        return PoseFromSpeech()
    return None


def check_form(form: Form) -> None:
    """Every upload in use checked before any work; the combination must name a mode."""
    if not form.identity:
        raise InputError("Identity: upload a face image (or a talking-head video to dub)")
    for box, path in form.used_uploads().items():
        label, kinds = UPLOADS[box]
        check_upload(path, kinds, label)
    if not (form.audio or form.lip):
        raise InputError("Nothing drives the mouth: upload speech audio, a lip video, or both")


def call_arguments(form: Form) -> dict:
    """The form as the arguments of one `EDTalkPipeline` call."""
    return dict(source=form.identity, audio=form.audio, lip=form.lip, pose=pose_spec(form), exp=expression_spec(form),
                batch_size=int(form.batch_size) if form.batch_size and form.batch_size > 0 else None,
                crop=bool(form.crop), paste_back=bool(form.paste_back), smoothing=form.smoothing,
                face_sr=bool(form.face_sr), progress=True)


def expression_words(form: Form) -> str:
    """The chosen expression in a few words (for the history's captions)."""
    if form.exp_choice == EXP_PRESET:
        return f"{form.preset} ×{float(form.intensity):g}"
    if form.exp_choice == EXP_BLEND:
        return f"{form.preset}+{form.preset2}"
    return {EXP_FILE: "expression from a file", EXP_SPEECH: "expression from the speech"}.get(form.exp_choice,
                                                                                             "own expression")


# ----------------------------------------------------------------------------- models

def available_models(checkpoint_dir) -> List[Tuple[str, str]]:
    """(label, path) of the generators in the folder: official files and saved model folders."""
    folder = Path(checkpoint_dir)
    labels = {EDTALK_FILE: "full: mouth + pose + expression", LIP_POSE_FILE: "lip-pose: no expression space"}
    found = [(f"{name} ({what})", str(folder / name)) for name, what in labels.items() if (folder / name).is_file()]
    if folder.is_dir():
        found += [(f"{d.name}/ (saved model)", str(d)) for d in sorted(folder.iterdir()) if _is_saved_generator(d)]
    return found


def _is_saved_generator(folder: Path) -> bool:
    """A saved EDTalk generator folder (not Audio2Lip/, pose_flow/, audio2exp/ or syncnet/ beside it)."""
    from .checkpoints import saved_model_type

    return saved_model_type(folder) == "edtalk"


@dataclass
class ModelInfo:
    """What the page says about the model folder it serves."""

    folder: Path
    generator: Optional[Path] = None  # the full model when there is one, else the lip-pose model
    size: Optional[int] = None  # output frames are size × size
    synthtalk: bool = False  # trained on SynthTalk: it knows those cartoon faces only
    pose_flow: bool = False
    audio2exp: bool = False
    preset_dir: Optional[Path] = None
    problem: str = ""  # why the generator could not be loaded

    def notice(self) -> str:
        where = shown_path(self.folder)
        if self.generator is None:
            return (f"⚠️ No generator checkpoint in `{where}`: run `edtalk download` (or start the page "
                    "with `--checkpoint-dir DIR`; `--checkpoint-dir checkpoints/synthtalk` is the bundled model for "
                    "SynthTalk cartoon faces), then reload this page.")
        if self.problem:
            return f"⚠️ The model in `{where}` cannot be loaded: {self.problem}"
        size = f"{self.size}×{self.size}"
        presets = f" Expression presets: `{describe_preset_dir(self.preset_dir)}`."
        if self.synthtalk:
            return (f"**SynthTalk model, {size}, cartoon faces only** (`{where}`). It knows SynthTalk's cartoon "
                    f"faces, like the examples below; a real photo comes out as a blurry {size} cartoon. For "
                    "real faces: `edtalk download`, then `edtalk webui`." + presets)
        kind = "EDTalk (official-format weights)" if self.generator.is_file() else "EDTalk (saved model)"
        faces = (" Real faces: a photo or video of one face, found and cropped automatically."
                 if self.size >= 256 else "")
        return f"**{kind}, {size}** (`{where}`).{faces}" + presets


def model_pipeline(models: ModelCache, checkpoint_dir, device: str = "auto", checkpoint: Optional[str] = None,
                   presets: Optional[str] = None) -> EDTalkPipeline:
    """The kept pipeline of the folder's model (the CLI's choice), or of one chosen generator."""
    files = ModelFiles(Path(checkpoint_dir), Path(checkpoint) if checkpoint else None)
    return models.pipeline(files, device, presets=presets)


def describe_model(checkpoint_dir, models: ModelCache, device: str = "auto",
                   presets: Optional[str] = None) -> ModelInfo:
    """The folder's generator (loaded through `models`, so the first Generate finds it loaded)."""
    folder = Path(checkpoint_dir)
    full = model_part(folder, EDTALK_FILE)
    generator = full or model_part(folder, LIP_POSE_FILE)
    info = ModelInfo(folder, generator, synthtalk=is_synthtalk_model(folder),
                     pose_flow=(folder / POSE_FLOW_DIR).exists(), audio2exp=(folder / AUDIO2EXP_DIR).exists(),
                     preset_dir=choose_preset_dir(presets, generator or folder / EDTALK_FILE))
    if generator is not None:
        try:
            model, _ = model_pipeline(models, folder, device, presets=presets).models(expression=full is not None)
            info.size = model.config.size
        except EDTalkError as exc:
            info.problem = str(exc)
    return info


# ----------------------------------------------------------------------------- examples

class Example(NamedTuple):
    label: str
    values: Dict[str, object]  # Form fields


def example_set(info: ModelInfo, folder: Optional[Path], presets: Tuple[str, str]) -> List[Example]:
    """Ready-made inputs that suit the model: the SynthTalk face and speech for a SynthTalk model,
    the photos (with the pose clip) for real-face weights; [] when the files are not there."""
    if folder is None:
        return []
    first, second = presets
    if info.synthtalk:
        face, speech = Path(folder) / "synthtalk_face.png", Path(folder) / "synthtalk_speech.wav"
        if not (face.is_file() and speech.is_file()):
            return []
        moving = POSE_SPEECH if info.pose_flow else POSE_FIXED
        common = dict(identity=str(face), audio=str(speech), crop=False)
        return [Example(f"{first}, pose from the speech",
                        dict(common, pose_choice=moving, exp_choice=EXP_PRESET, preset=first, intensity=1.0)),
                Example("own expression, head still",
                        dict(common, pose_choice=POSE_FIXED, exp_choice=EXP_OWN)),
                Example(f"{second} ×1.5, pose from the speech",
                        dict(common, pose_choice=moving, exp_choice=EXP_PRESET, preset=second, intensity=1.5))]
    f = {name: Path(folder) / name for name in ("source.png", "source_full.png", "speech.wav", "pose.mp4")}
    if not all(p.is_file() for p in f.values()):
        return []
    common = dict(audio=str(f["speech.wav"]), crop=True)
    return [Example(f"{first}, pose from a video",
                    dict(common, identity=str(f["source.png"]), pose=str(f["pose.mp4"]), pose_choice=POSE_VIDEO,
                         exp_choice=EXP_PRESET, preset=first, intensity=1.0)),
            Example("uncropped photo, own expression",
                    dict(common, identity=str(f["source_full.png"]), pose_choice=POSE_FIXED, exp_choice=EXP_OWN)),
            Example(f"{second} ×1.5, pose from a video",
                    dict(common, identity=str(f["source.png"]), pose=str(f["pose.mp4"]), pose_choice=POSE_VIDEO,
                         exp_choice=EXP_PRESET, preset=second, intensity=1.5))]


def default_presets(names: Sequence[str]) -> Tuple[str, str]:
    """The dropdowns' first choices: happy and surprised when the table has them."""
    emotions = [n for n in names if n != "neutral"] or list(names)
    first = "happy" if "happy" in names else emotions[0]
    second = "surprised" if "surprised" in names else next((n for n in emotions if n != first), first)
    return first, second


def copy_examples(examples: List[Example], target: Path, files: Optional[SessionFiles] = None) -> List[Example]:
    """The examples with their files copied into `target` (Gradio serves files of its own folder as they
    are, never the repository's), published to every visitor. Copies that are gone (Gradio's cache
    expiry) are made again."""
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for example in examples:
        values = dict(example.values)
        for box in UPLOADS:
            if values.get(box):
                dst = target / Path(values[box]).name
                if not dst.exists():
                    shutil.copy2(values[box], dst)
                if files is not None:
                    files.publish(dst)
                values[box] = str(dst)
        copied.append(Example(example.label, values))
    return copied


# ----------------------------------------------------------------------------- the app

class Result(NamedTuple):
    path: str
    summary: str  # one line for the page
    caption: str  # a few words for the history


@dataclass
class WebUI:
    """Server-side state: where checkpoints are, the model cache, per-session result folders, file owners."""

    checkpoint_dir: str = "checkpoints"
    device: str = "auto"
    examples_dir: Optional[Path] = None
    presets: Optional[str] = None
    work_dir: Path = dataclasses.field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="edtalk-webui-")))
    models: ModelCache = dataclasses.field(default_factory=ModelCache)
    files: SessionFiles = dataclasses.field(default_factory=SessionFiles)
    results_dir: Optional[Path] = None  # where results go (serve() puts it inside Gradio's folder)
    public_dir: Optional[Path] = None  # the examples' copies (serve(): inside Gradio's folder too)

    def session_path(self, session: str) -> Path:
        """The session's result folder, named by a hash of Gradio's session id."""
        name = hashlib.sha256((session or "anonymous").encode()).hexdigest()[:20]
        return (self.results_dir or self.work_dir / "results") / name

    def end_session(self, session: str) -> None:
        folder = self.session_path(session)
        self.files.forget(folder.glob("*"))
        shutil.rmtree(folder, ignore_errors=True)

    def model_info(self) -> ModelInfo:
        return describe_model(self.checkpoint_dir, self.models, self.device, self.presets)

    def run(self, form: Form, session: str, owner: Optional[str] = None) -> Result:
        """Check, generate into the session's folder (served to `owner` only). EDTalkError on mistakes."""
        check_form(form)
        folder = self.session_path(session)
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"edtalk-{len(list(folder.glob('edtalk-*.mp4'))) + 1:03d}.mp4"
        arguments = call_arguments(form)
        pipe = model_pipeline(self.models, self.checkpoint_dir, self.device, form.model or None, self.presets)
        start = time.perf_counter()
        result = pipe.write(out, **arguments)
        seconds = time.perf_counter() - start
        self.files.claim(result.path, owner)
        summary = (f"**{result.num_frames} frames** ({result.num_frames / 25:.2f} s at 25 fps), "
                   f"{result.mode} mode, {result.variant} model, made in {seconds:.1f} s")
        caption = (f"{time.strftime('%H:%M:%S')} · {result.num_frames} frames · {result.mode} · "
                   f"{expression_words(form)}")
        return Result(str(result.path), summary, caption)


# The page's names of the pipeline's arguments (an error's `field`).
FIELD_LABELS = {"source": "Identity", "audio": "Audio", "lip": "Lip video", "pose": "Head pose", "exp": "Expression",
                "exp_text": "Transcript", "exp_intensity": "Intensity", "checkpoint": "Model", "presets": "Presets",
                "batch_size": "Batch size", "smoothing": "Smoothing", "face_sr": "Face restoration",
                "pose_temperature": "Head pose", "seed": "Head pose"}


def public_message(exc: BaseException, form: Form) -> str:
    """The error text for the page: the input it concerns by the page's name, then the message in
    words (no command-line flags); upload paths become file names."""
    text = exc.plain if isinstance(exc, EDTalkError) else str(exc)
    for path in form.uploads().values():
        text = text.replace(str(path), Path(path).name)
    label = FIELD_LABELS.get(getattr(exc, "field", None))
    return f"{label}: {text}" if label else text


def internal_error_message(exc: BaseException, form: Form) -> str:
    """A bug, in words a page visitor can act on (the traceback goes to the server's log)."""
    detail = " ".join(public_message(exc, form).split())[:200]
    return (f"Generation failed with an internal error ({exc.__class__.__name__}: {detail}). This is a bug in "
            "EDTalk, not a problem with your inputs; please report it with the inputs you used.")


def identity_advice(path, kind: str, info: ModelInfo) -> str:
    """A warning when an identity does not suit the model (a photo for the cartoon-face model)."""
    if not info.synthtalk or kind != "image" or info.size is None:
        return ""
    from PIL import Image

    with Image.open(path) as im:
        if im.size == (info.size, info.size):
            return ""
        width, height = im.size
    return (f"this model knows SynthTalk cartoon faces only, at {info.size}×{info.size}; a {width}×{height} "
            f"image comes out as a blurry cartoon")


def _theme():
    import gradio as gr

    # Local fonts only: the page must not fetch anything from the internet.
    return gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


MODEL_AUTO_CHOICE = ("auto (like the CLI: the lip-pose model for the source's own expression)", AUTO_MODEL)
CSS = ("#examples .thumbnail-item { max-width: 220px; }"
       " #examples .caption-label { max-width: 96%; white-space: normal; overflow: visible; }")


def build_app(ui: WebUI):
    # Imported here, after `serve` has pointed Gradio at its private upload folder. This module has
    # no `from __future__ import annotations`: Gradio must see the real `gr.Request` annotations.
    import gradio as gr

    info = ui.model_info()
    with presets_from(info.preset_dir):
        names = preset_names()  # the model folder's table (or --presets, $EDTALK_PRESETS, the official one)
    first, second = default_presets(names)
    originals = example_set(info, ui.examples_dir, (first, second))
    examples = copy_examples(originals, ui.public_dir or ui.work_dir / "examples", ui.files)

    def upload_box(name: str, label: str, **kwargs):
        exts = sorted(set().union(*(EXTENSIONS[k] for k in UPLOADS[name][1])))
        return gr.File(label=label, file_types=exts, type="filepath", elem_id=name.replace("_", "-"), height=110,
                       **kwargs)

    def preview_boxes(name: str) -> Dict[str, object]:
        """Hidden players/viewers that show an upload once it is checked."""
        make = {"image": lambda **k: gr.Image(type="filepath", height=150, **k),
                "video": lambda **k: gr.Video(height=150, **k), "audio": lambda **k: gr.Audio(type="filepath", **k)}
        return {kind: make[kind](visible=False, interactive=False, show_label=False,
                                 elem_id=f"{name.replace('_', '-')}-{kind}-preview")
                for kind in PREVIEWS[name]}

    with gr.Blocks(title="EDTalk", analytics_enabled=False, delete_cache=(900, 3600)) as demo:
        gr.Markdown("# EDTalk talking heads\nOne face image; the mouth, head pose and expression each from its own "
                    "source. Same engine as `edtalk generate`; one request runs at a time, others wait in line.")
        notice = gr.Markdown(info.notice(), elem_id="notice")
        boxes, previews = {}, {}
        with gr.Row():
            with gr.Column():
                boxes["identity"] = upload_box("identity", "Identity: a face image, or a talking-head video to dub")
                previews["identity"] = preview_boxes("identity")
                with gr.Row():
                    with gr.Column(min_width=200):
                        boxes["audio"] = upload_box("audio", "Mouth: speech audio (also the soundtrack)")
                        previews["audio"] = preview_boxes("audio")
                    with gr.Column(min_width=200):
                        boxes["lip"] = upload_box("lip", "Mouth: lip video (instead of, or with, audio)")
                        previews["lip"] = preview_boxes("lip")
                pose_choice = gr.Radio([POSE_FIXED, POSE_VIDEO, POSE_SPEECH], value=POSE_FIXED, label="Head pose",
                                       elem_id="pose-choice",
                                       info="from the speech: the audio-to-pose flow (needs pose_flow/ in the "
                                            "checkpoint folder)" + ("" if info.pose_flow else "; this folder has none"))
                with gr.Column(visible=False) as pose_column:
                    boxes["pose"] = upload_box("pose", "Head pose: a video")
                    previews["pose"] = preview_boxes("pose")
                upload_info = gr.Markdown(elem_id="upload-info")
                exp_choice = gr.Radio([EXP_OWN, EXP_PRESET, EXP_BLEND, EXP_FILE, EXP_SPEECH], value=EXP_OWN,
                                      label="Expression", elem_id="exp-choice")
                with gr.Row(visible=False) as preset_row:
                    preset = gr.Dropdown(names, value=first, label="preset", elem_id="preset")
                    intensity = gr.Slider(0, 2, value=1, step=0.05, label="intensity", elem_id="intensity",
                                          info="0 neutral, 1 the preset, >1 stronger")
                with gr.Row(visible=False) as blend_row:
                    preset2 = gr.Dropdown(names, value=second, label="second preset")
                    blend = gr.Slider(0, 1, value=0.3, step=0.05, label="weight of the second preset")
                with gr.Column(visible=False) as exp_file_row:
                    boxes["exp_file"] = upload_box("exp_file", "Expression: a video or image of a face")
                    previews["exp_file"] = preview_boxes("exp_file")
                with gr.Row(visible=False) as exp_text_row:
                    exp_text = gr.Textbox(label="transcript (optional): its emotion words count too",
                                          placeholder="what a lovely day", elem_id="exp-text")
                with gr.Accordion("Model and options", open=False):
                    model = gr.Dropdown([MODEL_AUTO_CHOICE] + available_models(ui.checkpoint_dir), value=AUTO_MODEL,
                                        label="model (from the checkpoint folder)", elem_id="model")
                    with gr.Row():
                        crop = gr.Checkbox(not info.synthtalk, elem_id="crop",
                                           label="detect and crop the face (off: aligned crops at the model's size; "
                                                 "SynthTalk faces are aligned already)")
                        paste_back = gr.Checkbox(False, label="paste the face back into the full frame")
                    with gr.Row():
                        smoothing = gr.Dropdown(["edge", "official", "none"], value="edge",
                                                label="smoothing of the audio mouth motion")
                        batch_size = gr.Number(0, precision=0, minimum=0, label="batch size (0: 2 on CPU, 8 on GPU)")
                    face_sr = gr.Checkbox(False, label="restore faces with GFPGAN (×2; needs the face-sr extra and "
                                                       "its weights)")
            with gr.Column():
                button = gr.Button("Generate", variant="primary", elem_id="generate")
                video = gr.Video(label="Result", elem_id="result", interactive=False, buttons=["download"], height=380)
                summary = gr.Markdown(elem_id="summary")
                history = gr.State([])
                gallery = gr.Gallery(label="This tab's results (newest first; kept for an hour, deleted when the "
                                           "tab closes)", elem_id="history", columns=4, height=260,
                                     object_fit="contain", allow_preview=True, interactive=False)
        example_gallery = gr.Gallery([(e.values["identity"], e.label) for e in examples], elem_id="examples",
                                     label="Examples for this model (pick one, then Generate)", columns=3,
                                     height=230, object_fit="contain", allow_preview=False, interactive=False,
                                     buttons=[], visible=bool(examples))

        components = dict(boxes, pose_choice=pose_choice, exp_choice=exp_choice, preset=preset, intensity=intensity,
                          preset2=preset2, blend=blend, exp_text=exp_text, model=model, crop=crop,
                          paste_back=paste_back, smoothing=smoothing, batch_size=batch_size, face_sr=face_sr)

        def on_generate(values: dict, request: gr.Request, progress=gr.Progress(track_tqdm=True)):
            form = Form(**{name: values[box] for name, box in components.items()})
            progress(0, desc="checking the inputs, loading the model")
            try:
                result = ui.run(form, request.session_hash, owner_of(request))
            except EDTalkError as exc:
                raise gr.Error(public_message(exc, form), print_exception=False) from None
            except Exception as exc:  # a bug: the server log keeps the traceback, the page gets one message
                log.exception("generation failed")
                raise gr.Error(internal_error_message(exc, form), print_exception=False) from None
            entries = [(result.path, result.caption)] + list(values[history])[:HISTORY_LIMIT - 1]
            return result.path, result.summary, entries, entries

        def preview_updates(name: str, path=None, kind=None) -> list:
            return [gr.update(value=path if shown == kind else None, visible=shown == kind)
                    for shown in PREVIEWS[name]]

        def on_upload(path, name: str):
            """Check an upload at once: a bad file leaves its box, with the reason; a good one is previewed."""
            label, kinds = UPLOADS[name]
            try:
                kind = check_upload(path, kinds, label)
                advice = identity_advice(path, kind, info) if name == "identity" else ""
            except EDTalkError as exc:
                message = public_message(exc, Form(**{name: path}))
            except Exception as exc:  # an unreadable file the checks did not expect: still one message
                log.exception("upload check failed")
                message = f"{label}: {Path(path).name} cannot be read ({exc.__class__.__name__})"
            else:
                if advice:
                    gr.Warning(f"{label}: {advice}")
                line = f"{label}: {Path(path).name} ({kind}) ✓" + (f" ⚠️ {advice}" if advice else "")
                return [path, line, *preview_updates(name, path, kind)]
            gr.Warning(message)
            return [None, f"⚠️ {message}", *preview_updates(name)]

        for name, box in boxes.items():
            box.upload(functools.partial(on_upload, name=name), box, [box, upload_info, *previews[name].values()],
                       concurrency_limit=None, show_progress="hidden")
            box.clear(functools.partial(preview_updates, name), None, list(previews[name].values()),
                      concurrency_limit=None, show_progress="hidden")

        def show_expression_widgets(choice: str):
            return (gr.Row(visible=choice in (EXP_PRESET, EXP_BLEND)), gr.Row(visible=choice == EXP_BLEND),
                    gr.Column(visible=choice == EXP_FILE), gr.Row(visible=choice == EXP_SPEECH))

        exp_choice.change(show_expression_widgets, exp_choice, [preset_row, blend_row, exp_file_row, exp_text_row],
                          concurrency_limit=None, show_progress="hidden")
        pose_choice.change(lambda choice: gr.Column(visible=choice == POSE_VIDEO), pose_choice, pose_column,
                           concurrency_limit=None, show_progress="hidden")
        button.click(on_generate, set(components.values()) | {history}, [video, summary, history, gallery],
                     concurrency_id="generate")

        filled = [boxes[b] for b in UPLOADS] + [pose_choice, exp_choice, preset, intensity, crop]
        shown = [p for b in UPLOADS for p in previews[b].values()]

        def pick_example(event: gr.SelectData):
            """Fill the form from an example (its files previewed like uploads)."""
            values = copy_examples([originals[event.index]], ui.public_dir or ui.work_dir / "examples",
                                   ui.files)[0].values
            files = [values.get(b) for b in UPLOADS]
            settings = [values.get("pose_choice", POSE_FIXED), values.get("exp_choice", EXP_OWN),
                        values.get("preset", first), values.get("intensity", 1.0), values.get("crop", True)]
            views = [u for b in UPLOADS for u in preview_updates(b, values.get(b), kind_of(values.get(b) or ""))]
            return [*files, *settings, *views, f"Example: {examples[event.index].label}"]

        example_gallery.select(pick_example, None, [*filled, *shown, upload_info], concurrency_limit=None,
                               show_progress="hidden")

        def refresh():  # checkpoints placed after the server started show up on reload
            choices = [MODEL_AUTO_CHOICE] + available_models(ui.checkpoint_dir)
            return gr.Dropdown(choices=choices), ui.model_info().notice()

        def end_session(request: gr.Request):
            ui.end_session(request.session_hash)

        demo.load(refresh, None, [model, notice], concurrency_limit=None, show_progress="hidden")
        demo.unload(end_session)
    return demo


def serve(host: str = "127.0.0.1", port: int = 7860, share: bool = False, checkpoint_dir: str = "checkpoints",
          device: str = "auto", examples_dir: Optional[str] = None, presets: Optional[str] = None) -> None:
    """Build the page and serve it until interrupted (Ctrl-C or kill); then remove its temporary folders."""
    import importlib.util

    from .runtime import keep_freed_memory

    resolve_device(device)  # a wrong --device fails here, not on the first request
    if importlib.util.find_spec("gradio") is None:
        raise EDTalkError("the web UI needs gradio: pip install 'gradio>=6,<7'")
    examples = Path(examples_dir) if examples_dir else (REPO_EXAMPLES if REPO_EXAMPLES.is_dir() else None)
    ui = WebUI(checkpoint_dir=checkpoint_dir, device=device, examples_dir=examples, presets=presets)
    try:
        # A private upload/cache folder per server, set before Gradio reads it: nothing else is served.
        gradio_dir = Path(tempfile.mkdtemp(prefix="gradio-", dir=ui.work_dir))
        os.environ["GRADIO_TEMP_DIR"] = str(gradio_dir)
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        ui.results_dir = gradio_dir / "results"  # served where they are (no copy), to their owner only
        ui.public_dir = gradio_dir / "examples"  # served where they are, to everyone
        keep_freed_memory()
        demo = build_app(ui)
        demo.queue(default_concurrency_limit=1)
        stop_on_sigterm()
        _launch(demo, ui, host, port, share, checkpoint_dir)
    finally:
        shutil.rmtree(ui.work_dir, ignore_errors=True)


def _launch(demo, ui: WebUI, host: str, port: int, share: bool, checkpoint_dir: str) -> None:
    from starlette.middleware import Middleware

    try:
        demo.launch(server_name=host, server_port=port, share=share, allowed_paths=[],
                    blocked_paths=[str(Path(checkpoint_dir).resolve())], max_file_size=SERVER_MAX_UPLOAD,
                    ssr_mode=False, footer_links=[], theme=_theme(), css=CSS, show_error=True, quiet=True,
                    prevent_thread_lock=True,
                    app_kwargs={"middleware": [Middleware(SessionGuard, files=ui.files)]})
    except OSError as exc:  # port taken, address not on this machine
        if "empty port" in str(exc):
            raise EDTalkError(f"port {port} on {host} is in use: pick another with --port") from None
        raise EDTalkError(f"cannot serve on {host}:{port}: {exc}") from None
    print(startup_line(demo.local_url, host, demo.share_url), flush=True)
    demo.block_thread()


def startup_line(url: str, host: str, share_url: Optional[str] = None) -> str:
    """What the terminal shows once the page is up (the flags are this command's, not Gradio's)."""
    reach = ("this machine only; --host 0.0.0.0 serves your network" if host in ("127.0.0.1", "localhost")
             else f"listening on {host}")
    public = f"; public link: {share_url}" if share_url else "; --share adds a temporary public link"
    return f"EDTalk web UI: {url} ({reach}{public}). Ctrl-C stops it."


def stop_on_sigterm() -> None:
    """`kill` stops the server like Ctrl-C does, so the temporary folders are removed."""
    import signal
    import threading

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


__all__ = ["WebUI", "Form", "ModelCache", "ModelInfo", "build_app", "serve", "check_upload", "expression_spec",
           "pose_spec", "call_arguments", "model_pipeline", "available_models", "describe_model", "example_set",
           "startup_line"]
