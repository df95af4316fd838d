"""The web UI's server side without a browser: upload checks, form → the pipeline's typed arguments, model
notice and examples, kept pipelines, sessions, presets of the model folder, and who may fetch which file."""
import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from edtalk.errors import EDTalkError, InputError
from edtalk.pipelines.generate import GenerateOptions
from edtalk.pipelines.specs import ExpressionFromSpeech, PoseFromSpeech, Preset
from edtalk.presets import expression_from_spec, preset
from edtalk.video import probe_video
from edtalk.webui import (EXP_BLEND, EXP_FILE, EXP_OWN, EXP_PRESET, EXP_SPEECH, LIMIT_MB, POSE_FIXED, POSE_SPEECH,
                          POSE_VIDEO, Form, ModelCache, WebUI, available_models, call_arguments, check_upload,
                          default_presets, describe_model, example_set, expression_spec, identity_advice,
                          internal_error_message, pose_spec, public_message, startup_line)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
BUNDLED = REPO / "checkpoints" / "synthtalk"


def test_upload_checks_type_by_content_and_extension_and_size(not_an_image, speech, monkeypatch):
    assert check_upload(EXAMPLES / "source.png", ("image", "video"), "Identity") == "image"
    assert check_upload(EXAMPLES / "pose.mp4", ("image", "video"), "Identity") == "video"
    assert check_upload(speech, ("audio",), "Audio") == "audio"
    with pytest.raises(InputError, match=r"^Identity: notes.png is not a readable image$"):
        check_upload(not_an_image, ("image", "video"), "Identity")
    with pytest.raises(InputError, match=r"^Audio: source.png is not audio \(accepted: .*\.wav"):
        check_upload(EXAMPLES / "source.png", ("audio",), "Audio")
    with pytest.raises(InputError, match=r"^Pose video: pose.mp4 is not a readable video$"):
        check_upload(_renamed(speech, not_an_image.parent / "pose.mp4"), ("video",), "Pose video")
    monkeypatch.setitem(LIMIT_MB, "image", 0.05)  # source.png is 93 KB
    with pytest.raises(InputError, match=r"image uploads are limited to 0.05 MB"):
        check_upload(EXAMPLES / "source.png", ("image",), "Identity")


def test_uploads_too_large_in_pixels_or_too_short_are_one_message(huge_image, short_speech, speech):
    """A 400-megapixel PNG of a few hundred bytes, and 0.1 s of speech (2 frames), are refused by name."""
    with pytest.raises(InputError, match=r"^Identity: huge.png has too many pixels: 400 megapixels \(at most 89\)$"):
        check_upload(huge_image, ("image", "video"), "Identity")
    with pytest.raises(InputError, match=r"^Audio: short.wav is 0.10 s long; speech must last at least 0.4 s "):
        check_upload(short_speech, ("audio",), "Audio")
    assert check_upload(speech, ("audio",), "Audio") == "audio"  # 0.48 s is enough


def _renamed(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())  # a WAV named .mp4: ffmpeg reads it, but it has no video stream
    return dst


def test_expression_sources_become_typed_values(tmp_path):
    assert expression_spec(Form()) is None
    assert expression_spec(Form(exp_choice=EXP_PRESET, preset="sad", intensity=1.5)) == Preset({"sad": 1.0}, 1.5)
    spec = expression_spec(Form(exp_choice=EXP_BLEND, preset="happy", preset2="surprised", blend=0.3, intensity=1.5))
    assert spec.weights == pytest.approx({"happy": 0.7, "surprised": 0.3}) and spec.intensity == 1.5
    np.testing.assert_allclose(spec.vector(), 0.7 * preset("happy", 1.5) + 0.3 * preset("surprised", 1.5), rtol=1e-6)
    np.testing.assert_allclose(spec.vector(), expression_from_spec("happy:0.7+surprised:0.3", 1.5), rtol=1e-6)
    assert expression_spec(Form(exp_choice=EXP_BLEND, preset="sad", preset2="sad", blend=0.5)) == Preset({"sad": 1.0})
    with pytest.raises(InputError, match="Expression: upload a video or image"):
        expression_spec(Form(exp_choice=EXP_FILE))
    assert default_presets(["happy", "neutral", "sad", "surprised"]) == ("happy", "surprised")
    assert default_presets(["calm", "neutral", "tense"]) == ("calm", "tense")  # a folder of one's own presets


def test_form_becomes_the_pipelines_arguments(tmp_path):
    form = Form(identity="a.png", audio="s.wav", pose=None, exp_choice=EXP_PRESET, preset="happy", intensity=1.5,
                model="", crop=False, paste_back=True, smoothing="none", batch_size=0)
    assert call_arguments(form) == dict(source="a.png", audio="s.wav", lip=None, pose=None,
                                        exp=Preset({"happy": 1.0}, 1.5), batch_size=None, crop=False,
                                        paste_back=True, smoothing="none", face_sr=False, progress=True)
    assert call_arguments(dataclasses.replace(form, batch_size=3))["batch_size"] == 3


def test_pose_comes_from_the_one_chosen_source(tmp_path):
    """A pose video and "from the speech" cannot both be asked for: the choice is one radio, and the
    video is used (and checked) only when it is the choice."""
    form = Form(identity="a.png", audio="s.wav", pose="p.mp4")
    assert pose_spec(form) is None  # an uploaded video is not the pose unless chosen: the source's own, held still
    assert pose_spec(dataclasses.replace(form, pose_choice=POSE_VIDEO)) == "p.mp4"
    assert pose_spec(dataclasses.replace(form, pose_choice=POSE_SPEECH)) == PoseFromSpeech()
    assert "pose" not in dataclasses.replace(form, pose_choice=POSE_SPEECH).used_uploads()
    with pytest.raises(InputError, match="^Head pose: upload a pose video, or pick another pose source$"):
        pose_spec(dataclasses.replace(form, pose=None, pose_choice=POSE_VIDEO))
    with pytest.raises(InputError, match="^Head pose from the speech needs speech audio"):
        pose_spec(dataclasses.replace(form, audio=None, lip="l.mp4", pose_choice=POSE_SPEECH))


def test_models_listed_from_the_checkpoint_folder(tiny_ckpt_dir, tmp_path):
    assert [Path(p).name for _, p in available_models(tiny_ckpt_dir)] == ["EDTalk.pt", "EDTalk_lip_pose.pt"]
    assert available_models(tmp_path / "missing") == []
    empty = describe_model(tmp_path, ModelCache(), "cpu").notice()
    assert "No generator checkpoint in `" + str(tmp_path) + "`: run `edtalk download`" in empty


def test_the_notice_names_the_model_its_size_faces_and_presets(tiny_ckpt_dir):
    bundled = describe_model(BUNDLED, ModelCache(), "cpu")
    assert bundled.synthtalk and bundled.size == 64 and bundled.pose_flow
    notice = bundled.notice()
    assert notice.startswith("**SynthTalk model, 64×64, cartoon faces only**")
    assert "a real photo comes out as a blurry 64×64 cartoon" in notice and "`edtalk download`" in notice
    assert notice.endswith(f"Expression presets: `{BUNDLED / 'presets'}`.")
    tiny = describe_model(tiny_ckpt_dir, ModelCache(), "cpu")
    assert not tiny.synthtalk and tiny.notice().startswith("**EDTalk (official-format weights), 64×64**")
    assert tiny.notice().endswith("Expression presets: `the official presets`.")
    assert identity_advice(EXAMPLES / "synthtalk_face.png", "image", bundled) == ""
    assert "knows SynthTalk cartoon faces only" in identity_advice(EXAMPLES / "source.png", "image", bundled)
    assert identity_advice(EXAMPLES / "source.png", "image", tiny) == ""


def test_examples_suit_the_loaded_model(tiny_ckpt_dir):
    bundled = example_set(describe_model(BUNDLED, ModelCache(), "cpu"), EXAMPLES, ("happy", "surprised"))
    assert {Path(e.values["identity"]).name for e in bundled} == {"synthtalk_face.png"}
    assert {Path(e.values["audio"]).name for e in bundled} == {"synthtalk_speech.wav"}
    assert all(e.values["crop"] is False for e in bundled)  # SynthTalk frames are aligned crops already
    assert [e.values.get("preset") for e in bundled if e.values["exp_choice"] == EXP_PRESET] == ["happy", "surprised"]
    assert bundled[0].values["pose_choice"] == POSE_SPEECH and bundled[1].values["exp_choice"] == EXP_OWN
    photos = example_set(describe_model(tiny_ckpt_dir, ModelCache(), "cpu"), EXAMPLES, ("happy", "surprised"))
    assert {Path(e.values["identity"]).name for e in photos} == {"source.png", "source_full.png"}
    assert all(e.values["crop"] for e in photos)
    assert all(e.values.get("pose") is None or e.values["pose_choice"] == POSE_VIDEO for e in photos)


def test_the_page_takes_the_model_folders_presets(synthtalk_speech, tmp_path):
    """The bundled model's happy at intensity 1 from the page is the CLI's with --presets DIR, frame for
    frame, and not the official table's (which has other weights for that name)."""
    import numpy as np

    from edtalk.cli import main
    from edtalk.video import read_video

    ui = WebUI(checkpoint_dir=str(BUNDLED), device="cpu", work_dir=tmp_path / "work")
    form = Form(identity=str(EXAMPLES / "synthtalk_face.png"), audio=str(synthtalk_speech), crop=False,
                exp_choice=EXP_PRESET, preset="happy", intensity=1.0)
    page = read_video(ui.run(form, "s").path)[0]
    official = tmp_path / "official"
    official.mkdir()
    from edtalk.presets import PRESETS

    for name, weights in PRESETS.items():
        np.save(official / f"{name}.npy", np.asarray(weights, np.float32)[None])
    outs = {}
    for label, folder in (("model", BUNDLED / "presets"), ("official", official)):
        outs[label] = tmp_path / f"{label}.mp4"
        assert main(["generate", "--checkpoint-dir", str(BUNDLED), "--presets", str(folder), "--no-crop", "--quiet",
                     "--device", "cpu", "--source", str(EXAMPLES / "synthtalk_face.png"), "--audio",
                     str(synthtalk_speech), "--exp", "happy", "--out", str(outs[label])]) == 0
    assert np.array_equal(page, read_video(outs["model"])[0])
    assert np.abs(page.astype(int) - read_video(outs["official"])[0]).max() > 10


def test_model_cache_keeps_one_pipeline_per_model_and_reloads_a_replaced_file(tiny_ckpt_dir, speech):
    cache = ModelCache()
    opts = GenerateOptions(source="face.png", audio=str(speech), exp="happy", checkpoint_dir=str(tiny_ckpt_dir),
                           device="cpu")
    pipe = cache.get(opts)
    assert cache.get(dataclasses.replace(opts, exp="sad", source="other.png")) is pipe  # same model: same pipeline
    assert cache.get(dataclasses.replace(opts, checkpoint=str(tiny_ckpt_dir / "EDTalk.pt"))) is not pipe
    model, audio2lip = pipe.models(expression=True, audio=True)
    assert audio2lip is not None and model.has_expression
    assert pipe.models(expression=True, audio=True)[0] is model and cache.loads == {"EDTalk": 1, "Audio2Lip": 1}
    lip_pose = pipe.models(expression=False)[0]  # the CLI's rule picks EDTalk_lip_pose.pt
    assert not lip_pose.has_expression and cache.loads["EDTalk_lip_pose"] == 1
    ckpt = tiny_ckpt_dir / "EDTalk.pt"
    stat = ckpt.stat()
    os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
    assert pipe.models(expression=True)[0] is not model and cache.loads["EDTalk"] == 2


def test_generation_per_session_reuses_the_model(tiny_ckpt_dir, speech, tmp_path):
    ui = WebUI(checkpoint_dir=str(tiny_ckpt_dir), device="cpu", work_dir=tmp_path / "work")
    form = Form(identity=str(EXAMPLES / "source.png"), audio=str(speech), crop=False, exp_choice=EXP_PRESET)
    path_a, summary, caption = ui.run(form, "session-a", owner="browser-1")
    path_b = ui.run(dataclasses.replace(form, preset="sad"), "session-b", owner="browser-2").path
    again = ui.run(form, "session-a", owner="browser-1").path
    assert ui.models.loads == {"EDTalk": 1, "Audio2Lip": 1}
    assert summary.startswith("**12 frames** (0.48 s at 25 fps), audio mode, edtalk model, made in ")
    assert caption.endswith(" · 12 frames · audio · happy ×1")
    info = probe_video(path_a)
    assert info["frames"] == 12 and info["audio"]
    assert Path(path_a).parent == Path(again).parent != Path(path_b).parent  # a folder per session
    assert Path(path_a).exists() and again != path_a  # earlier results stay for the history
    assert ui.files.may_read(path_a, "browser-1") and not ui.files.may_read(path_a, "browser-2")
    assert not ui.files.may_read(path_b, "browser-1") and not ui.files.may_read(path_b, None)
    ui.end_session("session-a")
    assert not Path(path_a).exists() and not Path(again).exists() and Path(path_b).exists()


def test_mistakes_become_one_message_without_server_paths(tmp_path, speech, not_an_image):
    ui = WebUI(checkpoint_dir=str(tmp_path / "empty"), device="cpu", work_dir=tmp_path / "work")
    form = Form(identity=str(EXAMPLES / "source.png"), audio=str(speech), crop=False)
    with pytest.raises(EDTalkError, match=r"checkpoint not found: .*EDTalk.*\.pt .*edtalk download"):
        ui.run(form, "s")
    with pytest.raises(EDTalkError, match="Nothing drives the mouth"):
        ui.run(Form(identity=str(EXAMPLES / "source.png")), "s")
    bad = Form(identity=str(not_an_image), audio=str(speech))
    with pytest.raises(EDTalkError) as err:
        ui.run(bad, "s")
    assert public_message(InputError(f"cannot read image {not_an_image}: X"), bad) == "cannot read image notes.png: X"
    assert str(not_an_image.parent) not in public_message(err.value, bad)
    bug = internal_error_message(KeyError(f"{not_an_image} frame 3"), bad)
    assert bug.startswith("Generation failed with an internal error (KeyError: 'notes.png frame 3')")
    assert "server log" not in bug and str(not_an_image.parent) not in bug


def test_the_startup_line_names_this_commands_flags():
    line = startup_line("http://127.0.0.1:7860/", "127.0.0.1")
    assert line.startswith("EDTalk web UI: http://127.0.0.1:7860/ (this machine only; --host 0.0.0.0 ")
    assert "--share adds a temporary public link" in line and "share=True" not in line
    assert "public link: https://x.gradio.live" in startup_line("u", "0.0.0.0", "https://x.gradio.live")


def test_generate_errors_name_the_page_fields_not_cli_flags(tiny_ckpt_dir, speech, tmp_path):
    ui = WebUI(checkpoint_dir=str(tiny_ckpt_dir), device="cpu", work_dir=tmp_path / "work")
    dub_with_pose = Form(identity=str(EXAMPLES / "pose.mp4"), audio=str(speech), pose=str(EXAMPLES / "pose.mp4"),
                         pose_choice=POSE_VIDEO)
    with pytest.raises(EDTalkError) as err:
        ui.run(dub_with_pose, "s")
    assert err.value.field == "pose" and "--pose" in str(err.value)  # the command line's message names the flag
    message = public_message(err.value, dub_with_pose)
    assert message == "Head pose: does not apply to dubbing: each frame of the source video gives the pose"
    lip_pose = Form(identity=str(EXAMPLES / "source.png"), audio=str(speech), crop=False, exp_choice=EXP_PRESET,
                    model=str(tiny_ckpt_dir / "EDTalk_lip_pose.pt"))
    with pytest.raises(EDTalkError) as err:
        ui.run(lip_pose, "s")
    assert public_message(err.value, lip_pose) == ("Expression: needs the full EDTalk model, not the lip-pose model; "
                                                   "or keep the source's own expression")
    assert public_message(InputError("cannot read image /tmp/x/face.png: X", field="source"),
                          Form(identity="/tmp/x/face.png")) == "Identity: cannot read image face.png: X"


def test_pose_and_expression_from_the_speech_become_typed_values(tmp_path):
    form = Form(identity="a.png", audio="s.wav", pose="p.mp4", pose_choice=POSE_SPEECH, exp_choice=EXP_SPEECH,
                exp_text="  what a lovely day ")
    values = call_arguments(form)
    assert (values["pose"], values["exp"]) == (PoseFromSpeech(), ExpressionFromSpeech(text="what a lovely day"))
    blank = call_arguments(dataclasses.replace(form, exp_text=" ", pose_choice=POSE_VIDEO))
    assert (blank["pose"], blank["exp"]) == ("p.mp4", ExpressionFromSpeech(text=None))
    other = call_arguments(dataclasses.replace(form, exp_choice=EXP_PRESET))
    assert other["exp"] == Preset({"happy": 1.0})  # the transcript belongs to the speech predictor only
    for bad, field in ((dataclasses.replace(form, audio=None, lip="l.mp4"), "Head pose from the speech"),
                       (dataclasses.replace(form, audio=None, lip="l.mp4", pose_choice=POSE_FIXED),
                        "Expression from the speech")):
        with pytest.raises(InputError, match=field):
            call_arguments(bad)


def test_the_bundled_chain_runs_with_pose_and_expression_from_the_speech(tiny_synthtalk_model, tiny_ckpt_dir,
                                                                          tmp_path):
    out = tiny_synthtalk_model["out"]  # the tiny chain's output folder: EDTalk/, pose_flow/, audio2exp/, ...
    ui = WebUI(checkpoint_dir=str(out), device="cpu", work_dir=tmp_path / "work")
    form = Form(identity=str(EXAMPLES / "synthtalk_face.png"), audio=str(EXAMPLES / "synthtalk_speech.wav"),
                crop=False, pose_choice=POSE_SPEECH, exp_choice=EXP_SPEECH, exp_text="what a lovely day")
    path, summary, _ = ui.run(form, "s")
    assert summary.startswith("**100 frames**") and probe_video(path)["frames"] == 100
    official = WebUI(checkpoint_dir=str(tiny_ckpt_dir), device="cpu", work_dir=tmp_path / "w2")  # no flow/predictor
    for asked, missing in ((form, "an audio2exp/ model in the checkpoint folder"),
                           (dataclasses.replace(form, exp_choice=EXP_PRESET), "a pose_flow/ model in the checkpoint folder")):
        with pytest.raises(EDTalkError) as err:
            official.run(asked, "s")
        message = public_message(err.value, asked)
        assert missing in message and "-checkpoint" not in message, message


def test_only_generators_are_offered_as_models():
    shipped = Path(__file__).resolve().parents[2] / "checkpoints" / "synthtalk"
    assert [label for label, _ in available_models(shipped)] == ["EDTalk/ (saved model)",
                                                                "EDTalk_lip_pose/ (saved model)"]


def test_a_folder_with_an_unreadable_config_is_not_offered(tmp_path):
    from edtalk.checkpoints import saved_model_type

    bad = tmp_path / "Broken"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    (bad / "model.safetensors").write_bytes(b"")
    assert saved_model_type(bad) is None and available_models(tmp_path) == []


def test_uploads_and_results_are_served_to_their_own_browser_only(tmp_path):
    """SessionGuard in front of stand-ins for Gradio's upload and file routes: each browser gets an owner
    cookie; what it uploaded, or what was made for it, is 404 to everyone else; unowned files stay public."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from edtalk.web_access import OWNER_COOKIE, SessionFiles, SessionGuard, owner_id

    uploaded, public = tmp_path / "face.png", tmp_path / "example.png"
    uploaded.write_bytes(b"mine")
    public.write_bytes(b"everyone's")

    async def upload(request):  # the same bytes as an example land at the example's path in Gradio
        return JSONResponse([str(uploaded), str(public)])

    async def serve_file(request):
        return FileResponse(request.path_params["path"])

    files = SessionFiles()
    files.publish(public)  # an example: everyone's, even after someone uploads the same file
    app = Starlette(routes=[Route("/gradio_api/upload", upload, methods=["POST"]),
                            Route("/gradio_api/file={path:path}", serve_file)],
                    middleware=[Middleware(SessionGuard, files=files)])
    alice, bob = TestClient(app), TestClient(app)
    assert alice.get("/gradio_api/file=" + str(public)).status_code == 200  # the first answer sets the cookie
    token = alice.cookies[OWNER_COOKIE]
    assert owner_id(token) is not None and alice.post("/gradio_api/upload").json() == [str(uploaded), str(public)]
    assert alice.get("/gradio_api/file=" + str(uploaded)).content == b"mine"
    assert bob.get("/gradio_api/file=" + str(uploaded)).status_code == 404
    assert TestClient(app).get("/gradio_api/file=" + str(uploaded)).status_code == 404  # no cookie at all
    assert bob.get("/gradio_api/file=" + str(public)).status_code == 200
    result = tmp_path / "edtalk-001.mp4"
    result.write_bytes(b"video")
    files.claim(result, owner_id(token))  # what WebUI.run does with the page request's cookie
    assert alice.get("/gradio_api/file=" + str(result)).status_code == 200
    assert bob.get("/gradio_api/file=" + str(result)).status_code == 404
