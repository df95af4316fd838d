"""`edtalk webui`: a Gradio page for every generation mode.

The page is a form over `GenerateOptions`; the work is the same `generate()` the CLI runs (no
second code path). What the page adds around it:
- models are loaded once and kept (`ModelCache`, handed to `generate(opts, model=, audio2lip=)`);
- every upload is checked for type (by extension and by content) and size before any work;
- mistakes (bad upload, missing checkpoint, no face) show as one message in the page;
- requests queue, one generation at a time (the CPU is the bottleneck);
- each browser session writes into its own temporary folder, deleted when the tab closes, and
  Gradio serves only its own upload/cache folder (a fresh private one per server).
"""
import dataclasses
import functools
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import EDTalkError, InputError
from .pipelines.generate import (EDTALK_FILE, LIP_POSE_FILE, GenerateOptions, generate, load_models, mode_of,
                                 resolve_audio2lip, resolve_checkpoint, resolve_device, resolve_dtype)
from .pipelines.preprocess import IMAGE_EXTS, VIDEO_EXTS, load_image
from .presets import preset_names

log = logging.getLogger(__name__)

AUDIO_EXTS = {".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac"}
EXTENSIONS = {"image": IMAGE_EXTS, "video": VIDEO_EXTS, "audio": AUDIO_EXTS}
LIMIT_MB = {"image": 20, "audio": 50, "video": 200}  # per upload; Gradio itself refuses anything larger
SERVER_MAX_UPLOAD = f"{max(LIMIT_MB.values())}mb"
REPO_EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXP_OWN, EXP_PRESET, EXP_BLEND, EXP_FILE = ("source's own", "preset", "blend of two presets",
                                            "from a video or image")
EXP_SPEECH = "from the speech (and text)"  # the audio/text-to-expression predictor (--exp audio, --exp-text)
AUTO_MODEL = ""  # the dropdown value for "pick like the CLI does"
UPLOADS = {  # upload box: (its name in messages, accepted kinds)
    "identity": ("Identity", ("image", "video")), "audio": ("Audio", ("audio",)), "lip": ("Lip video", ("video",)),
    "pose": ("Pose video", ("video",)), "exp_file": ("Expression", ("video", "image")),
}


# ----------------------------------------------------------------------------- uploads

def kind_of(path) -> Optional[str]:
    suffix = Path(str(path)).suffix.lower()
    return next((kind for kind, exts in EXTENSIONS.items() if suffix in exts), None)


def _check_image(path) -> None:
    load_image(path)  # decodes the pixels: a renamed text file fails here


def _check_media(kind: str):
    def check(path) -> None:
        from .video import probe_video

        info = probe_video(path)
        if not info[kind]:
            raise InputError(f"no {kind} stream")
    return check


CONTENT_CHECKS = {"image": _check_image, "video": _check_media("video"), "audio": _check_media("audio")}


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
    except InputError:
        raise InputError(f"{label}: {name} is not a readable {kind}") from None
    return kind


# ----------------------------------------------------------------------------- form → options

@dataclass
class Form:
    """What the page sends: upload paths (None when empty) and the option widgets' values."""

    identity: Optional[str] = None
    audio: Optional[str] = None
    lip: Optional[str] = None
    pose: Optional[str] = None
    exp_choice: str = EXP_OWN
    preset: str = "happy"
    intensity: float = 1.0
    preset2: str = "surprised"
    blend: float = 0.3
    exp_file: Optional[str] = None
    exp_text: str = ""          # with EXP_SPEECH: an optional sentence whose emotion words also count
    pose_from_speech: bool = False  # the audio-to-pose flow samples the head motion (--pose audio)
    model: str = AUTO_MODEL
    crop: bool = True
    paste_back: bool = False
    smoothing: str = "edge"
    batch_size: int = 0
    face_sr: bool = False

    def uploads(self) -> Dict[str, str]:
        """{box: path} of the boxes that hold a file."""
        return {box: getattr(self, box) for box in UPLOADS if getattr(self, box)}


def expression_spec(form: Form) -> str:
    """The `--exp` value for the chosen expression source."""
    if form.exp_choice == EXP_PRESET:
        return form.preset
    if form.exp_choice == EXP_BLEND:
        if form.preset == form.preset2:
            return form.preset
        w = min(max(float(form.blend), 0.0), 1.0)
        return f"{form.preset}:{1 - w:g}+{form.preset2}:{w:g}"
    if form.exp_choice == EXP_FILE:
        if not form.exp_file:
            raise InputError("Expression: upload a video or image of a face, or pick another expression source")
        return form.exp_file
    if form.exp_choice == EXP_SPEECH:
        if not form.audio:
            raise InputError("Expression from the speech needs speech audio; upload it or pick another source")
        return "audio"
    return "none"


def pose_spec(form: Form) -> str:
    """The `--pose` value: sampled from the speech, a pose video, or the source's own pose."""
    if form.pose_from_speech:
        if not form.audio:
            raise InputError("Head pose from the speech needs speech audio; upload it or untick the box")
        return "audio"
    return form.pose or "fixed"


def check_form(form: Form) -> None:
    """Every upload checked before any work; the combination must name a mode."""
    if not form.identity:
        raise InputError("Identity: upload a face image (or a talking-head video to dub)")
    for box, path in form.uploads().items():
        if box != "exp_file" or form.exp_choice == EXP_FILE:  # an unused expression upload is ignored
            label, kinds = UPLOADS[box]
            check_upload(path, kinds, label)
    if not (form.audio or form.lip):
        raise InputError("Nothing drives the mouth: upload speech audio, a lip video, or both")


def build_options(form: Form, out: Path, checkpoint_dir: str, device: str) -> GenerateOptions:
    values = dict(
        source=form.identity, out=str(out), lip=form.lip, audio=form.audio, pose=pose_spec(form),
        exp=expression_spec(form), exp_intensity=float(form.intensity),
        exp_text=((form.exp_text or "").strip() or None) if form.exp_choice == EXP_SPEECH else None,
        checkpoint=form.model or None, checkpoint_dir=checkpoint_dir, device=device,
        batch_size=int(form.batch_size) if form.batch_size and form.batch_size > 0 else None,
        crop=bool(form.crop), paste_back=bool(form.paste_back), smoothing=form.smoothing, face_sr=bool(form.face_sr),
        progress=True,
    )
    # Only options this version of generate() has (it grows new fields, all with defaults).
    return GenerateOptions(**{k: v for k, v in values.items() if option_exists(k)})


def option_exists(name: str) -> bool:
    return name in {f.name for f in dataclasses.fields(GenerateOptions)}


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


def _stamp(path: Optional[Path]):
    return (str(path.resolve()), path.stat().st_mtime_ns) if path is not None and path.exists() else None


class ModelCache:
    """Loaded (generator, Audio2Lip) pairs, loaded once per checkpoint file and kept (LRU).

    The key holds each file's modification time, so a replaced checkpoint is reloaded. Audio2Lip
    is loaded with the generator whenever its file exists, so one entry serves every mode.
    """

    def __init__(self, capacity: int = 2):
        self.capacity = capacity
        self.entries: "OrderedDict[tuple, tuple]" = OrderedDict()
        self.loads = 0
        self.lock = threading.Lock()

    def get(self, opts: GenerateOptions):
        ckpt = resolve_checkpoint(opts)
        a2l = resolve_audio2lip(opts)
        need_audio = mode_of(opts) in ("audio", "dubbing") or a2l.exists()
        device = resolve_device(opts.device)
        dtype = resolve_dtype(opts.dtype, device)
        key = (_stamp(ckpt), _stamp(a2l) if need_audio else None, str(device), str(dtype))
        with self.lock:
            if key not in self.entries:
                self.entries[key] = load_models(opts, need_audio=need_audio, device=device, dtype=dtype)
                self.loads += 1
                while len(self.entries) > self.capacity:
                    self.entries.popitem(last=False)
            self.entries.move_to_end(key)
            return self.entries[key]


# ----------------------------------------------------------------------------- the app

@dataclass
class WebUI:
    """Server-side state: where checkpoints are, the model cache, per-session output folders."""

    checkpoint_dir: str = "checkpoints"
    device: str = "auto"
    examples_dir: Optional[Path] = None
    work_dir: Path = dataclasses.field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="edtalk-webui-")))
    models: ModelCache = dataclasses.field(default_factory=ModelCache)

    def session_path(self, session: str) -> Path:
        """The session's folder; Gradio's session hash, reduced to characters safe in a file name."""
        return self.work_dir / (re.sub(r"[^A-Za-z0-9_-]", "", session or "") or "anonymous")

    def session_dir(self, session: str) -> Path:
        path = self.session_path(session)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def end_session(self, session: str) -> None:
        shutil.rmtree(self.session_path(session), ignore_errors=True)

    def run(self, form: Form, session: str):
        """Check, generate into the session's folder; (video path, one-line summary). EDTalkError on mistakes."""
        check_form(form)
        folder = self.session_dir(session)
        for old in folder.glob("*.mp4"):  # Gradio has its own copy of earlier results
            old.unlink(missing_ok=True)
        out = folder / f"edtalk-{time.strftime('%H%M%S')}.mp4"
        opts = build_options(form, out, self.checkpoint_dir, self.device)
        model, audio2lip = self.models.get(opts)
        start = time.perf_counter()
        result = generate(opts, model=model, audio2lip=audio2lip)
        seconds = time.perf_counter() - start
        summary = (f"**{result.num_frames} frames** ({result.num_frames / 25:.2f} s at 25 fps), "
                   f"{result.mode} mode, {result.variant} model, made in {seconds:.1f} s")
        return str(result.path), summary


# generate() speaks in CLI flags; the page names its own fields.
FLAG_NAMES = {"--exp none": "the source's own expression", "--exp-intensity": "the intensity",
              "--exp": "the expression", "--source": "the identity", "--audio": "the audio", "--lip": "the lip video",
              "--pose": "the pose video", "--checkpoint-dir": "the checkpoint folder", "--checkpoint": "the model",
              "--batch-size": "the batch size", "--paste-back": "paste-back", "--no-crop": "no face crop",
              "--pose audio": "head pose from the speech", "--exp audio": "expression from the speech",
              "--exp-text": "the transcript", "--pose-flow-checkpoint": "a pose_flow/ model in the checkpoint folder",
              "--exp-predictor-checkpoint": "an audio2exp/ model in the checkpoint folder"}
FLAG_PATTERN = re.compile("|".join(re.escape(f) + r"(?![\w-])" for f in FLAG_NAMES))


def public_message(exc: BaseException, form: Form) -> str:
    """The error text for the page: upload paths become file names, CLI flags the page's field names."""
    text = str(exc)
    for path in form.uploads().values():
        text = text.replace(str(path), Path(path).name)
    return FLAG_PATTERN.sub(lambda m: FLAG_NAMES[m.group(0)], text)


def checkpoint_notice(checkpoint_dir) -> str:
    if available_models(checkpoint_dir):
        return ""
    return (f"⚠️ No generator checkpoint in `{checkpoint_dir}`: run `edtalk download` (or start the page "
            "with `--checkpoint-dir DIR`; `--checkpoint-dir checkpoints/synthtalk` is the bundled model for "
            "SynthTalk cartoon faces), then reload this page.")


def _theme():
    import gradio as gr

    # Local fonts only: the page must not fetch anything from the internet.
    return gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


MODEL_AUTO_CHOICE = ("auto (like the CLI: the lip-pose model for the source's own expression)", AUTO_MODEL)


def build_app(ui: WebUI):
    # Imported here, after `serve` has pointed Gradio at its private upload folder. This module has
    # no `from __future__ import annotations`: Gradio must see the real `gr.Request` annotations.
    import gradio as gr

    def upload_box(name: str, label: str):
        exts = sorted(set().union(*(EXTENSIONS[k] for k in UPLOADS[name][1])))
        return gr.File(label=label, file_types=exts, type="filepath", elem_id=name.replace("_", "-"), height=130)

    with gr.Blocks(title="EDTalk", analytics_enabled=False, delete_cache=(900, 3600)) as demo:
        gr.Markdown("# EDTalk talking heads\nOne face image; the mouth, head pose and expression each from its own "
                    "source. Same engine as `edtalk generate`; one request runs at a time, others wait in line.")
        notice = gr.Markdown(checkpoint_notice(ui.checkpoint_dir), elem_id="notice")
        with gr.Row():
            with gr.Column():
                boxes = {"identity": upload_box("identity", "Identity: a face image, or a talking-head video to dub")}
                with gr.Row():
                    boxes["audio"] = upload_box("audio", "Mouth: speech audio (also the soundtrack)")
                    boxes["lip"] = upload_box("lip", "Mouth: lip video (instead of, or with, audio)")
                boxes["pose"] = upload_box("pose", "Head pose: a video (empty: the source's own pose, fixed)")
                pose_from_speech = gr.Checkbox(False, label="head pose from the speech (audio-to-pose flow; "
                                                            "needs pose_flow/ in the checkpoint folder)",
                                               elem_id="pose-from-speech")
                upload_info = gr.Markdown(elem_id="upload-info")
                exp_choice = gr.Radio([EXP_OWN, EXP_PRESET, EXP_BLEND, EXP_FILE, EXP_SPEECH], value=EXP_OWN,
                                      label="Expression", elem_id="exp-choice")
                names = preset_names()  # the active table: official, or $EDTALK_PRESETS
                first, second = default_presets(names)
                with gr.Row(visible=False) as preset_row:
                    preset = gr.Dropdown(names, value=first, label="preset")
                    intensity = gr.Slider(0, 2, value=1, step=0.05, label="intensity",
                                          info="0 neutral, 1 the preset, >1 stronger")
                with gr.Row(visible=False) as blend_row:
                    preset2 = gr.Dropdown(names, value=second, label="second preset")
                    blend = gr.Slider(0, 1, value=0.3, step=0.05, label="weight of the second preset")
                with gr.Row(visible=False) as exp_file_row:
                    boxes["exp_file"] = upload_box("exp_file", "Expression: a video or image of a face")
                with gr.Row(visible=False) as exp_text_row:
                    exp_text = gr.Textbox(label="transcript (optional): its emotion words count too",
                                          placeholder="what a lovely day", elem_id="exp-text")
                with gr.Accordion("Model and options", open=False):
                    model = gr.Dropdown([MODEL_AUTO_CHOICE] + available_models(ui.checkpoint_dir), value=AUTO_MODEL,
                                        label="model (from the checkpoint folder)", elem_id="model")
                    with gr.Row():
                        crop = gr.Checkbox(True, label="detect and crop the face (off: aligned 256² crops)")
                        paste_back = gr.Checkbox(False, label="paste the face back into the full frame")
                    with gr.Row():
                        smoothing = gr.Dropdown(["edge", "official", "none"], value="edge",
                                                label="smoothing of the audio mouth motion")
                        batch_size = gr.Number(0, precision=0, minimum=0, label="batch size (0: 2 on CPU, 8 on GPU)")
                    face_sr = gr.Checkbox(False, label="restore faces with GFPGAN (×2; needs the face-sr extra and "
                                                       "its weights)", visible=option_exists("face_sr"))
            with gr.Column():
                button = gr.Button("Generate", variant="primary", elem_id="generate")
                video = gr.Video(label="Result", elem_id="result", interactive=False, buttons=["download"], height=420)
                summary = gr.Markdown(elem_id="summary")

        components = dict(boxes, exp_choice=exp_choice, preset=preset, intensity=intensity, preset2=preset2,
                          blend=blend, exp_text=exp_text, pose_from_speech=pose_from_speech, model=model, crop=crop,
                          paste_back=paste_back, smoothing=smoothing, batch_size=batch_size, face_sr=face_sr)

        def on_generate(values: dict, request: gr.Request, progress=gr.Progress(track_tqdm=True)):
            form = Form(**{name: values[box] for name, box in components.items()})
            progress(0, desc="checking the inputs, loading the model")
            try:
                return ui.run(form, request.session_hash)
            except EDTalkError as exc:
                raise gr.Error(public_message(exc, form), print_exception=False) from None
            except Exception as exc:  # a bug: the server log keeps the traceback, the page gets one line
                log.exception("generation failed")
                raise gr.Error(f"generation failed ({exc.__class__.__name__}); see the server log") from None

        def on_upload(path, name: str):
            """Check an upload at once: a bad file is removed from its box, with the reason."""
            label, kinds = UPLOADS[name]
            try:
                kind = check_upload(path, kinds, label)
            except EDTalkError as exc:
                message = public_message(exc, Form(**{name: path}))
                gr.Warning(message)
                return None, f"⚠️ {message}"
            return path, f"{label}: {Path(path).name} ({kind}) ✓"

        for name, box in boxes.items():
            box.upload(functools.partial(on_upload, name=name), box, [box, upload_info], concurrency_limit=None,
                       show_progress="hidden")

        def show_expression_widgets(choice: str):
            return (gr.Row(visible=choice in (EXP_PRESET, EXP_BLEND)), gr.Row(visible=choice == EXP_BLEND),
                    gr.Row(visible=choice == EXP_FILE), gr.Row(visible=choice == EXP_SPEECH))

        exp_choice.change(show_expression_widgets, exp_choice, [preset_row, blend_row, exp_file_row, exp_text_row],
                          concurrency_limit=None, show_progress="hidden")
        button.click(on_generate, set(components.values()), [video, summary], concurrency_id="generate")

        def refresh():  # checkpoints placed after the server started show up on reload
            choices = [MODEL_AUTO_CHOICE] + available_models(ui.checkpoint_dir)
            return gr.Dropdown(choices=choices), checkpoint_notice(ui.checkpoint_dir)

        def end_session(request: gr.Request):
            ui.end_session(request.session_hash)

        demo.load(refresh, None, [model, notice], concurrency_limit=None)
        demo.unload(end_session)

        examples = example_rows(ui.examples_dir, (first, second))
        if examples:
            gr.Examples(examples, [boxes["identity"], boxes["audio"], boxes["pose"], exp_choice, preset, intensity],
                        label="Examples (bundled public-domain inputs; pick one, then Generate)")
    return demo


def default_presets(names: Sequence[str]) -> Tuple[str, str]:
    """The dropdowns' first choices: happy and surprised when the table has them."""
    emotions = [n for n in names if n != "neutral"] or list(names)
    first = "happy" if "happy" in names else emotions[0]
    second = "surprised" if "surprised" in names else next((n for n in emotions if n != first), first)
    return first, second


def example_rows(folder: Optional[Path], presets: Tuple[str, str] = ("happy", "surprised")) -> List[list]:
    """Ready-made inputs from `examples/`: [identity, audio, pose, expression, preset, intensity]."""
    if folder is None:
        return []
    f = {name: str(Path(folder) / name) for name in ("source.png", "source_full.png", "speech.wav", "pose.mp4")}
    if not all(Path(p).is_file() for p in f.values()):
        return []
    first, second = presets
    return [[f["source.png"], f["speech.wav"], f["pose.mp4"], EXP_PRESET, first, 1.0],
            [f["source_full.png"], f["speech.wav"], None, EXP_OWN, first, 1.0],
            [f["source.png"], f["speech.wav"], f["pose.mp4"], EXP_PRESET, second, 1.5]]


def serve(host: str = "127.0.0.1", port: int = 7860, share: bool = False, checkpoint_dir: str = "checkpoints",
          device: str = "auto", examples_dir: Optional[str] = None) -> None:
    """Build the page and serve it until interrupted (Ctrl-C or kill); then remove its temporary folders."""
    import importlib.util

    from .runtime import keep_freed_memory

    resolve_device(device)  # a wrong --device fails here, not on the first request
    if importlib.util.find_spec("gradio") is None:
        raise EDTalkError("the web UI needs gradio: pip install 'gradio>=6,<7'")
    examples = Path(examples_dir) if examples_dir else (REPO_EXAMPLES if REPO_EXAMPLES.is_dir() else None)
    ui = WebUI(checkpoint_dir=checkpoint_dir, device=device, examples_dir=examples)
    try:
        # A private upload/cache folder per server, set before Gradio reads it: nothing else is served.
        os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="gradio-", dir=ui.work_dir)
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        keep_freed_memory()
        demo = build_app(ui)
        demo.queue(default_concurrency_limit=1)
        stop_on_sigterm()
        try:
            demo.launch(server_name=host, server_port=port, share=share, allowed_paths=[],
                        blocked_paths=[str(Path(checkpoint_dir).resolve())], max_file_size=SERVER_MAX_UPLOAD,
                        ssr_mode=False, footer_links=[], theme=_theme(), show_error=True)
        except OSError as exc:  # port taken, address not on this machine
            if "empty port" in str(exc):
                raise EDTalkError(f"port {port} on {host} is in use: pick another with --port") from None
            raise EDTalkError(f"cannot serve on {host}:{port}: {exc}") from None
    finally:
        shutil.rmtree(ui.work_dir, ignore_errors=True)


def stop_on_sigterm() -> None:
    """`kill` stops the server like Ctrl-C does, so the temporary folders are removed."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


__all__ = ["WebUI", "Form", "ModelCache", "build_app", "serve", "check_upload", "expression_spec",
           "available_models"]
