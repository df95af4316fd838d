"""The web UI's server side without a browser: upload checks, form → options, model cache, sessions."""
import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from edtalk.errors import EDTalkError, InputError
from edtalk.pipelines.generate import GenerateOptions
from edtalk.presets import expression_from_spec, preset
from edtalk.video import probe_video
from edtalk.webui import (EXP_BLEND, EXP_FILE, EXP_PRESET, EXP_SPEECH, LIMIT_MB, Form, ModelCache, WebUI,
                          available_models, build_options, check_upload, checkpoint_notice, default_presets,
                          expression_spec, public_message)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


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


def _renamed(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())  # a WAV named .mp4: ffmpeg reads it, but it has no video stream
    return dst


def test_expression_sources_map_to_the_cli_values(tmp_path):
    assert expression_spec(Form()) == "none"
    assert expression_spec(Form(exp_choice=EXP_PRESET, preset="sad")) == "sad"
    spec = expression_spec(Form(exp_choice=EXP_BLEND, preset="happy", preset2="surprised", blend=0.3))
    assert spec == "happy:0.7+surprised:0.3"
    np.testing.assert_allclose(expression_from_spec(spec, 1.5),
                               0.7 * preset("happy", 1.5) + 0.3 * preset("surprised", 1.5), rtol=1e-6)
    assert expression_spec(Form(exp_choice=EXP_BLEND, preset="sad", preset2="sad", blend=0.5)) == "sad"
    with pytest.raises(InputError, match="Expression: upload a video or image"):
        expression_spec(Form(exp_choice=EXP_FILE))
    assert default_presets(["happy", "neutral", "sad", "surprised"]) == ("happy", "surprised")
    assert default_presets(["calm", "neutral", "tense"]) == ("calm", "tense")  # a folder of one's own presets


def test_form_becomes_the_cli_options(tmp_path):
    form = Form(identity="a.png", audio="s.wav", pose=None, exp_choice=EXP_PRESET, preset="happy", intensity=1.5,
                model="", crop=False, paste_back=True, smoothing="none", batch_size=0)
    opts = build_options(form, tmp_path / "o.mp4", "ckpts", "cpu")
    assert isinstance(opts, GenerateOptions)
    expected = GenerateOptions(source="a.png", out=str(tmp_path / "o.mp4"), audio="s.wav", pose="fixed", exp="happy",
                               exp_intensity=1.5, checkpoint=None, checkpoint_dir="ckpts", device="cpu",
                               batch_size=None, crop=False, paste_back=True, smoothing="none")
    assert dataclasses.asdict(opts) == dataclasses.asdict(expected)
    assert build_options(dataclasses.replace(form, batch_size=3, model="x/EDTalk.pt"), tmp_path / "o.mp4", "c",
                         "cpu").batch_size == 3


def test_models_listed_from_the_checkpoint_folder(tiny_ckpt_dir, tmp_path):
    assert [Path(p).name for _, p in available_models(tiny_ckpt_dir)] == ["EDTalk.pt", "EDTalk_lip_pose.pt"]
    assert available_models(tmp_path / "missing") == []
    assert checkpoint_notice(tiny_ckpt_dir) == ""
    assert "No generator checkpoint in `" + str(tmp_path) + "`: run `edtalk download`" in checkpoint_notice(tmp_path)


def test_model_cache_loads_once_and_reloads_a_replaced_file(tiny_ckpt_dir, speech):
    cache = ModelCache()
    opts = GenerateOptions(source="face.png", audio=str(speech), exp="happy", checkpoint_dir=str(tiny_ckpt_dir),
                           device="cpu")
    model, audio2lip = cache.get(opts)
    assert audio2lip is not None and model.has_expression
    assert cache.get(dataclasses.replace(opts, exp="sad"))[0] is model  # same file: no reload
    assert cache.loads == 1
    lip_pose = cache.get(dataclasses.replace(opts, exp="none"))[0]  # the CLI's rule picks EDTalk_lip_pose.pt
    assert not lip_pose.has_expression and cache.loads == 2
    ckpt = tiny_ckpt_dir / "EDTalk.pt"
    stat = ckpt.stat()
    os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
    assert cache.get(opts)[0] is not model and cache.loads == 3


def test_generation_per_session_reuses_the_model(tiny_ckpt_dir, speech, tmp_path):
    ui = WebUI(checkpoint_dir=str(tiny_ckpt_dir), device="cpu", work_dir=tmp_path / "work")
    form = Form(identity=str(EXAMPLES / "source.png"), audio=str(speech), crop=False, exp_choice=EXP_PRESET)
    path_a, summary = ui.run(form, "session-a")
    path_b, _ = ui.run(dataclasses.replace(form, preset="sad"), "session-b")
    assert ui.models.loads == 1
    assert summary.startswith("**12 frames** (0.48 s at 25 fps), audio mode, edtalk model, made in ")
    info = probe_video(path_a)
    assert info["frames"] == 12 and info["audio"]
    assert Path(path_a).parent.name == "session-a" and Path(path_b).parent.name == "session-b"
    ui.end_session("session-a")
    assert not Path(path_a).exists() and Path(path_b).exists()


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


def test_generate_errors_name_the_page_fields_not_cli_flags(tiny_ckpt_dir, speech, tmp_path):
    ui = WebUI(checkpoint_dir=str(tiny_ckpt_dir), device="cpu", work_dir=tmp_path / "work")
    dub_with_pose = Form(identity=str(EXAMPLES / "pose.mp4"), audio=str(speech), pose=str(EXAMPLES / "pose.mp4"))
    with pytest.raises(EDTalkError) as err:
        ui.run(dub_with_pose, "s")
    assert "--pose" in str(err.value)  # generate() speaks CLI
    message = public_message(err.value, dub_with_pose)
    assert message.startswith("the pose video does not apply to dubbing") and "--" not in message
    assert public_message(EDTalkError("use --exp none; --exp-intensity and --checkpoint-dir"), Form()) == \
        "use the source's own expression; the intensity and the checkpoint folder"


def test_pose_and_expression_from_the_speech_map_to_the_cli_values(tmp_path):
    form = Form(identity="a.png", audio="s.wav", pose="p.mp4", pose_from_speech=True, exp_choice=EXP_SPEECH,
                exp_text="  what a lovely day ")
    opts = build_options(form, tmp_path / "o.mp4", "ckpts", "cpu")
    assert (opts.pose, opts.exp, opts.exp_text) == ("audio", "audio", "what a lovely day")
    blank = build_options(dataclasses.replace(form, exp_text=" ", pose_from_speech=False), tmp_path / "o.mp4", "c", "cpu")
    assert (blank.pose, blank.exp, blank.exp_text) == ("p.mp4", "audio", None)
    other = build_options(dataclasses.replace(form, exp_choice=EXP_PRESET), tmp_path / "o.mp4", "c", "cpu")
    assert other.exp_text is None  # the transcript belongs to the speech predictor only
    for bad, field in ((dataclasses.replace(form, audio=None, lip="l.mp4"), "Head pose from the speech"),
                       (dataclasses.replace(form, audio=None, lip="l.mp4", pose_from_speech=False),
                        "Expression from the speech")):
        with pytest.raises(InputError, match=field):
            build_options(bad, tmp_path / "o.mp4", "c", "cpu")


def test_the_bundled_chain_runs_with_pose_and_expression_from_the_speech(tiny_synthtalk_model, tiny_ckpt_dir,
                                                                          tmp_path):
    out = tiny_synthtalk_model["out"]  # the tiny chain's output folder: EDTalk/, pose_flow/, audio2exp/, ...
    ui = WebUI(checkpoint_dir=str(out), device="cpu", work_dir=tmp_path / "work")
    form = Form(identity=str(EXAMPLES / "synthtalk_face.png"), audio=str(EXAMPLES / "synthtalk_speech.wav"),
                crop=False, pose_from_speech=True, exp_choice=EXP_SPEECH, exp_text="what a lovely day")
    path, summary = ui.run(form, "s")
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
