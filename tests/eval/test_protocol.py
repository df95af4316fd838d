"""`edtalk evaluate`: pairing, alignment, the two protocols, the report files, and one-line errors."""
import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edtalk.cli import main
from edtalk.eval.metrics import MetricStatus
from edtalk.eval.protocol import Pair, align_frames, load_clip, pair_videos
from edtalk.eval.report import markdown_table
from edtalk.video import write_video

FACE = Path(__file__).resolve().parents[2] / "examples" / "source.png"
SAME, SHIFTED = "M003#happy#level_3#001", "M003#sad#level_3#002"


@pytest.fixture(scope="module")
def face_videos(tmp_path_factory):
    """GT: 4 frames of a real face; pred: one clip identical (same file), one shifted by (3, 2) px."""
    root = tmp_path_factory.mktemp("videos")
    face = np.asarray(Image.open(FACE).convert("RGB").resize((128, 128), Image.BICUBIC))
    gt = np.repeat(face[None], 4, axis=0)
    (root / "gt").mkdir()
    (root / "pred").mkdir()
    for name in (SAME, SHIFTED):
        write_video(root / "gt" / f"{name}.mp4", gt)
    shutil.copy(root / "gt" / f"{SAME}.mp4", root / "pred" / f"{SAME}.mp4")
    write_video(root / "pred" / f"{SHIFTED}.mp4", np.roll(gt, (2, 3), axis=(1, 2)))
    return root


def _rows(path):
    with open(path) as f:
        return {r["name"]: r for r in csv.DictReader(f)}


def test_native_protocol_writes_csv_json_table_and_plots_with_known_values(face_videos, tmp_path, capsys):
    out = tmp_path / "report"
    rc = main(["evaluate", "--pred", str(face_videos / "pred"), "--gt", str(face_videos / "gt"), "--out", str(out),
               "--protocol", "native", "--metrics", "psnr,ssim,m_lmd,f_lmd,csim,fid", "--quiet"])
    assert rc == 0
    rows = _rows(out / "per_clip.csv")
    same, shifted = rows[SAME], rows[SHIFTED]
    assert float(same["psnr"]) == float("inf") and float(same["ssim"]) == 1.0  # identical frames: no cap
    assert float(same["m_lmd"]) == 0.0 and float(same["f_lmd"]) == 0.0 and float(same["csim"]) == pytest.approx(1.0)
    # a pure shift costs pixels but (nearly) no landmark distance: each set is centred by its own mean
    assert float(shifted["psnr"]) < 30 and float(shifted["f_lmd"]) < 1.0 and float(shifted["csim"]) > 0.9
    assert same["emotion"] == "happy" and int(same["frames"]) == 4
    summary = json.loads((out / "summary.json").read_text())
    m = summary["metrics"]
    assert summary["protocol"] == "native" and summary["protocol_requested"] == "native"
    assert m["psnr"]["value"] == "inf" and not m["psnr"]["comparable"]  # strict JSON: inf as a string
    assert {s["name"] for s in m["psnr"]["steps"] if not s["match"]} == {"crop", "resolution", "sampling", "clips"}
    assert m["csim"]["ok"] and not m["csim"]["comparable"] and m["m_lmd"]["ok"]
    assert not m["fid"]["ok"] and "--fid-weights" in m["fid"]["reason"]
    assert m["lpips"]["reason"] == "not requested (--metrics)"
    assert m["ssim"]["reference"].startswith("yuangan/evaluation_eat code/test_psnr_ssim.py")
    table = (out / "table.md").read_text()
    assert table.startswith("protocol: native")
    assert "| EDTalk-V (paper, MEAD) | 22.771 | 0.769 | 1.102 | 15.548 | 68.85 % |" in table
    ours = next(line for line in table.splitlines() if line.startswith("| this run |"))
    assert "| inf† |" in ours and f"{m['csim']['value']:.3f}†" in ours
    assert "- PSNR†, SSIM†: not comparable to the paper — crop: full frames" in table
    assert "network: dlib face-recognition ResNet (face-recognition-models)" in table
    assert "- FID: skipped — no weights: pass --fid-weights" in table
    for png in ("per_clip.png", "per_emotion.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert table in capsys.readouterr().out


def test_eat_protocol_crops_undo_a_head_shift_and_record_the_clips(face_videos, tmp_path):
    """The default for MEAD names: EAT's aligned crops.  A generated clip that is the GT moved by
    (3, 2) px loses most of its PSNR on full frames, little of it on EAT's crops."""
    out = tmp_path / "eat"
    rc = main(["evaluate", "--pred", str(face_videos / "pred"), "--gt", str(face_videos / "gt"), "--out", str(out),
               "--metrics", "psnr,ssim,m_lmd,f_lmd", "--quiet"])
    assert rc == 0
    rows = _rows(out / "per_clip.csv")
    same, shifted = rows[SAME], rows[SHIFTED]
    assert float(same["psnr"]) == float("inf") and float(same["m_lmd"]) == 0.0
    native = main(["evaluate", "--pred", str(face_videos / "pred"), "--gt", str(face_videos / "gt"), "--out",
                   str(tmp_path / "native"), "--protocol", "native", "--metrics", "psnr", "--quiet"])
    assert native == 0
    assert float(shifted["psnr"]) > float(_rows(tmp_path / "native" / "per_clip.csv")[SHIFTED]["psnr"]) + 5
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"] == "eat" and summary["protocol_requested"] == "auto"
    psnr = summary["metrics"]["psnr"]
    # the stand-in template (no --eat-template) and 2 of the official test clips: both named
    assert {s["name"] for s in psnr["steps"] if not s["match"]} == {"crop", "clips"}
    assert "not base_68.npy" in psnr["differences"]
    clips = {c["name"]: c for c in summary["evaluated_clips"]}
    assert set(clips) == {SAME, SHIFTED}
    assert clips[SAME]["pred_sha256"] == clips[SAME]["gt_sha256"] == hashlib.sha256(
        (face_videos / "gt" / f"{SAME}.mp4").read_bytes()).hexdigest()
    assert summary["clip_names_sha256"] == hashlib.sha256("\n".join(sorted([SAME, SHIFTED])).encode()).hexdigest()
    table = (out / "table.md").read_text()
    assert table.startswith("protocol: eat")
    assert "- clips: 2 clips (all videos in" in table and "every value above is †" in table


def test_eat_template_files_make_the_crop_step_match(face_videos, tmp_path):
    from edtalk.eval.metrics.align import stand_in_eat_templates

    t = stand_in_eat_templates().open_eyes
    np.save(tmp_path / "base_68.npy", t)
    np.save(tmp_path / "base_68_close.npy", t)
    names = tmp_path / "clips.npy"
    np.save(names, np.array(["M003_M003_hap_3_001"]))  # EAT's naming in its 100-clip list
    out = tmp_path / "r"
    rc = main(["evaluate", "--pred", str(face_videos / "pred"), "--gt", str(face_videos / "gt"), "--out", str(out),
               "--metrics", "psnr,ssim", "--eat-template", str(tmp_path / "base_68.npy"), "--clip-list", str(names),
               "--quiet"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [c["name"] for c in summary["evaluated_clips"]] == [SAME]
    assert summary["clip_selection"].startswith(f"clip list {names}, sha256 ")
    assert summary["metrics"]["psnr"]["comparable"] and summary["metrics"]["ssim"]["comparable"]
    ours = next(line for line in (out / "table.md").read_text().splitlines() if line.startswith("| this run |"))
    assert "| inf | 1.000 |" in ours  # no dagger: every step matches


def test_clip_list_naming_a_missing_clip_is_one_error_line(face_videos, tmp_path, capsys):
    (tmp_path / "list.txt").write_text(f"{SAME}\nM030#sad#level_1#009\n")
    rc = main(["evaluate", "--pred", str(face_videos / "pred"), "--gt", str(face_videos / "gt"), "--out",
               str(tmp_path / "r"), "--clip-list", str(tmp_path / "list.txt")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "M030#sad#level_1#009" in err
    assert not (tmp_path / "r").exists()


def test_unpaired_generated_video_is_one_error_line_and_no_report(face_videos, tmp_path, capsys):
    pred = tmp_path / "pred"
    shutil.copytree(face_videos / "pred", pred)
    shutil.copy(pred / f"{SAME}.mp4", pred / "stray.mp4")
    rc = main(["evaluate", "--pred", str(pred), "--gt", str(face_videos / "gt"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and err == f"edtalk: error: generated videos without ground truth in {face_videos / 'gt'}: stray\n"
    assert not (tmp_path / "r").exists()


def test_missing_weight_file_is_a_skip_reason_not_a_traceback(face_videos, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDTALK_SYNCNET", str(tmp_path / "nowhere"))
    rc = main(["evaluate", "--pred", str(face_videos / "pred"), "--gt", str(face_videos / "gt"), "--out",
               str(tmp_path / "r"), "--metrics", "psnr,lse_c,lse_d", "--protocol", "native", "--quiet"])
    assert rc == 0
    table = (tmp_path / "r" / "table.md").read_text()
    assert f"- LSE-C, LSE-D: skipped — --syncnet/EDTALK_SYNCNET points to a missing file: {tmp_path / 'nowhere'}" in table


def test_alignment_resamples_to_25fps_and_matches_count_and_size(tmp_path):
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (25, 32, 32, 3), dtype=np.uint8)
    write_video(tmp_path / "gt.mp4", gt, fps=25)
    write_video(tmp_path / "pred.mp4", np.repeat(gt, 2, axis=0)[:, ::1][:, :, :], fps=50)
    clip = load_clip(Pair("x", tmp_path / "pred.mp4", tmp_path / "gt.mp4"), need_audio=False)
    assert clip.pred.shape == clip.gt.shape == (25, 32, 32, 3)
    pred, big = align_frames(gt[:20], np.repeat(np.repeat(gt, 2, axis=1), 2, axis=2))
    assert pred.shape == big.shape == (20, 32, 32, 3)


def test_pairs_from_a_layout_tree_use_its_split_and_audio(tmp_path):
    root = tmp_path / "tree"
    for d in ("video", "audio"):
        (root / d).mkdir(parents=True)
    (root / "test.json").write_text(json.dumps([SAME]))
    (root / "train.json").write_text(json.dumps([SHIFTED]))
    for name in (SAME, SHIFTED):
        (root / "video" / f"{name}.mp4").write_bytes(b"")
        (root / "audio" / f"{name}.wav").write_bytes(b"")
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred" / f"{SAME}.mp4").write_bytes(b"")
    pairs = pair_videos(tmp_path / "pred", root)
    assert [(p.name, p.gt, p.audio) for p in pairs] == [(SAME, root / "video" / f"{SAME}.mp4",
                                                         root / "audio" / f"{SAME}.wav")]


def test_table_marks_differing_steps_and_uses_the_hdtf_reference_row():
    step = {"name": "network", "ours": "SyncNet expert", "reference": "syncnet_v2", "match": False}
    summary = {"psnr": {"ok": True, "value": 25.0, "comparable": True, "steps": []},
               "lse_c": {"ok": True, "value": 3.0, "comparable": False, "steps": [step], "clips": 2,
                         "skipped": {"a": "no driving audio"}},
               "fid": {"ok": False, "reason": "no weights"}}
    table = markdown_table(summary, "hdtf", protocol="eat")
    lines = table.splitlines()
    assert lines[0].startswith("protocol: eat")
    assert lines[4].startswith("| EDTalk-A (paper, HDTF) | 25.156 |") and "| this run | 25.000 |" in table
    assert "| 3.000† |" in lines[6] and "- LSE-C†: not comparable to the paper — network: SyncNet expert" in table
    assert "- LSE-C: 1 of 3 clips have no value (no driving audio)" in table
    assert "- FID: skipped — no weights" in table
    assert isinstance(MetricStatus(True), MetricStatus)


def test_evaluate_generates_the_test_split_first_with_a_checkpoint(tmp_path, capsys):
    from edtalk.data.synthtalk import generate
    from edtalk.testing import write_tiny_checkpoints

    ckpt = write_tiny_checkpoints(tmp_path / "ckpt")["EDTalk.pt"]
    generate(tmp_path / "synth", kind="mead", size=64, seed=0, speakers=2, emotions=["happy"], levels=[3], frames=6,
             quiet=True)
    data, out = tmp_path / "synth" / "mead", tmp_path / "eval"
    name = json.loads((data / "test.json").read_text())[0]
    rc = main(["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out), "--limit", "1",
               "--metrics", "psnr,ssim", "--protocol", "native", "--device", "cpu", "--quiet"])
    assert rc == 0
    source = np.asarray(Image.open(out / "sources" / f"{name}.png"))
    from edtalk.video import probe_video, read_video

    assert np.array_equal(source, read_video(data / "video" / f"{name}.mp4", max_frames=1)[0][0])
    info = probe_video(out / "pred" / f"{name}.mp4")
    assert info["frames"] == 6 and info["audio"]  # the layout WAV is the soundtrack LSE listens to
    rows = _rows(out / "per_clip.csv")
    assert list(rows) == [name] and 0 < float(rows[name]["psnr"]) < 100
    assert "| EDTalk-V (this run) |" in (out / "table.md").read_text()
    assert json.loads((out / "summary.json").read_text())["generated"]["mode"] == "video"
