"""scripts/train_synthtalk_model.py, the SynthTalk recipe, --preset tiny: every phase runs once in the official
order (stage 0 before stage 1, stage 1 initialised from stage 0's export, the gate before stage 2), the gate
writes the stage-1 encoder's held-out wa → expression R², --strict-gate stops, a --max-minutes stop
resumes, the output folder is what `edtalk generate` reads, and a second invocation skips every phase.
The chain itself runs once per session (tests/conftest.py: tiny_synthtalk_model, about two minutes)."""
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "train_synthtalk_model.py"
PHASES = ("data", "ceiling", "stage0", "stage1", "gate", "stage2", "syncnet", "motion", "audio2lip", "pose_flow", "audio2exp",
          "presets", "collect", "probe")
GENERATOR_STAGES = ("stage0", "stage1", "stage2")
EXPRESSION_FACTORS = ("brow_raise", "brow_furrow", "eyelid", "cheek", "corner_curve", "corner_asym")
MODEL_FILES = ("EDTalk/model.safetensors", "EDTalk_lip_pose/config.json", "Audio2Lip/model.safetensors",
               "pose_flow/config.json", "pose_flow/model.safetensors", "audio2exp/config.json",
               "audio2exp/model.safetensors", "syncnet/config.json", "syncnet/model.safetensors",
               "presets/presets.json", "training.json", "probe.json", "probe.md")
EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")


def run_script(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)


def tiny(work, *args) -> subprocess.CompletedProcess:
    return run_script("--preset", "tiny", "--work", work, "--device", "cpu", "--threads", 1, *args)


def started(stdout: str):
    """The phases in the order their `[phase] start` lines appear."""
    return [line[1:line.index("]")] for line in stdout.splitlines() if line.startswith("[") and "] start" in line]


def records(run_dir: Path):
    return [json.loads(line) for line in (run_dir / "probes.jsonl").read_text().splitlines() if line.strip()]


def one_error_line(result, code=2) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code and len(lines) == 1 and lines[0].startswith("edtalk: error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def trained(tiny_synthtalk_model):
    return tiny_synthtalk_model


def test_every_phase_runs_once_in_the_official_order(trained):
    stdout, work, tree = trained["stdout"], trained["work"], trained["tree"]
    assert started(stdout) == list(PHASES)
    for phase in PHASES:
        assert stdout.count(f"[{phase}] start") == 1 and f"[{phase}] done in " in stdout, phase
    assert (tree / "test.json").is_file() and (tree / "frames.lmdb").exists() and any((tree / "mel").iterdir())
    for stage in GENERATOR_STAGES:
        assert list((work / "runs" / stage / "export").glob("*.pt")), stage
    assert (work / "runs" / "syncnet" / "export" / "model" / "config.json").is_file()
    assert (work / "runs" / "audio2lip" / "export" / "Audio2Lip.pt").is_file()
    assert (work / "runs" / "pose_flow" / "export" / "pose_flow" / "config.json").is_file()
    assert (work / "runs" / "audio2exp" / "export" / "audio2exp" / "config.json").is_file()
    clips = sorted(p.stem for p in (tree / "video").glob("*.mp4"))
    for cache in ("EDTalk_lip_feature", "EDTalk_pose_feature", "EDTalk_exp_feature"):
        assert sorted(p.stem for p in (tree / cache).glob("*.npy")) == clips, cache
    assert sorted(p.stem for p in (work / "presets").glob("*.npy")) == sorted(EMOTIONS)


def test_the_tree_has_the_recipes_data_options(trained):
    """The tiny tree is made with the proof preset's options (wide pose, expression changing in a clip)."""
    from edtalk.data import layout

    meta = json.loads((trained["work"] / "chain.json").read_text())
    args = meta["synthtalk_args"]
    for option, value in (("--pose-range", "1.5"), ("--exp-change", "0.3"), ("--pose-drift", "2.5"),
                          ("--speakers", "2"), ("--frames", "16")):
        assert args[args.index(option) + 1] == value, option
    assert "--emotional-voice" in args
    names = layout.list_clips(trained["tree"])
    assert {layout.parse_mead_name(n).emotion for n in names} == set(EMOTIONS)


def test_the_ceiling_is_measured_first_and_every_probe_reads_it(trained):
    """The factor net's held-out R² per factor lands in the tree before stage 0, so every generator
    record also carries each R² as a fraction of its ceiling."""
    tree, work = trained["tree"], trained["work"]
    ceiling = json.loads((tree / "ceiling.json").read_text())
    assert ceiling == json.loads((work / "ceiling" / "ceiling.json").read_text())
    assert {"mouth_open", "yaw", "roll", "tx", "brow_raise", "cheek"} <= set(ceiling)
    run = json.loads((work / "ceiling" / "ceiling_run.json").read_text())
    assert run["complete"] and run["step"] == 4
    first = records(work / "runs" / "stage0")[0]
    for name, factor in (("mouth_open", "mouth_open"), ("roll", "roll"), ("wa_open", "mouth_open")):
        frac = first[f"probe/{name}_frac"]  # null where 4 steps left the ceiling below 0.05
        if ceiling[factor] >= 0.05:
            assert frac == pytest.approx(first[f"probe/{name}_r2"] / ceiling[factor], rel=1e-3)
        else:
            assert frac is None


def test_stage1_starts_from_stage0s_export(trained):
    from omegaconf import OmegaConf

    runs = trained["work"] / "runs"
    cfg = OmegaConf.load(runs / "stage1" / "config.yaml")
    assert cfg.model.init == "pretrained"
    assert cfg.model.init_path == str(runs / "stage0" / "export" / "model")
    assert float(cfg.data.cross_clip_rate) == 0.5  # the recipe's stage-1 pairs
    assert OmegaConf.load(runs / "stage0" / "config.yaml").model.init == "scratch"
    # ... and it really did: stage 1's step-0 probe is stage 0's final one, number for number,
    # while stage 0 itself moved from its untrained start.
    s0, s1 = records(runs / "stage0"), records(runs / "stage1")
    for key in ("probe/wa_open_r2", "probe/wa_roll_r2", "probe/mouth_open_r2", "probe/yaw_r2"):
        assert s1[0][key] == pytest.approx(s0[-1][key], abs=1e-9), key
    assert any(s0[0][k] != s0[-1][k] for k in ("probe/wa_open_r2", "probe/wa_roll_r2"))


def test_generator_stages_record_their_probe_curves(trained):
    runs = trained["work"] / "runs"
    steps = {"stage0": 8, "stage1": 12, "stage2": 8}
    for stage in GENERATOR_STAGES:
        found = records(runs / stage)
        assert [r["step"] for r in found] == [0, steps[stage]], stage
        assert "probe/mouth_open_r2" in found[-1] and "probe/wa_cheek_r2" in found[-1]
    assert "probe/exp_cheek_r2" in records(runs / "stage2")[-1]  # the full model's expression weights


def test_gate_writes_the_stage1_wa_expression_r2(trained):
    work, stdout = trained["work"], trained["stdout"]
    gate = json.loads((work / "gate.json").read_text())
    assert gate["model"] == str(sorted((work / "runs" / "stage1" / "export").glob("*.pt"))[-1])
    assert tuple(gate["wa_expression_r2"]) == EXPRESSION_FACTORS
    last = records(work / "runs" / "stage1")[-1]  # the trainer's own probe of the final stage-1 model
    for factor, value in gate["wa_expression_r2"].items():
        assert value == pytest.approx(last[f"probe/wa_{factor}_r2"], abs=1e-9), factor
    known = [v for v in gate["wa_expression_r2"].values() if v is not None]
    assert known and gate["wa_expression_mean_r2"] == pytest.approx(sum(known) / len(known))
    assert gate["threshold"] == 0.2 and gate["passed"] is (gate["wa_expression_mean_r2"] >= 0.2)
    assert gate["clips"] >= 2 and gate["split"].startswith("test")
    warned = [line for line in stdout.splitlines() if line.startswith("[gate] WARNING:")]
    assert len(warned) == (0 if gate["passed"] else 1)
    assert stdout.index("[gate] done in") < stdout.index("[stage2] start")
    training = json.loads((trained["out"] / "training.json").read_text())
    assert training["order"] == list(PHASES)
    assert training["gate"]["wa_expression_mean_r2"] == gate["wa_expression_mean_r2"]


def test_strict_gate_stops_before_stage2_with_one_line(trained, tmp_path):
    work = trained["work"]
    measured = (work / "gate.json").read_text()
    result = tiny(work, "--strict-gate", "--gate-threshold", 1)  # an R² below 1: the gate fails
    line = one_error_line(result)
    assert line.startswith("edtalk: error: gate: ") and "--strict-gate" in line and "gate.json" in line
    assert "[gate] skip" in result.stdout and "[stage2]" not in result.stdout
    assert json.loads((work / "gate.json").read_text())["passed"] is False
    result = tiny(work, "--strict-gate", "--gate-threshold", -1e12)  # passes: the chain goes on
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[gate] passed" in result.stdout and "[stage2] skip" in result.stdout and "WARNING" not in result.stdout
    assert json.loads((work / "gate.json").read_text())["wa_expression_r2"] == json.loads(measured)["wa_expression_r2"]
    (work / "gate.json").write_text(measured)  # the session's chain as it was
    # --strict-gate with --only stage2 needs a measured gate first
    fresh = tmp_path / "fresh"
    line = one_error_line(tiny(fresh, "--only", "stage2", "--strict-gate"))
    assert "stage1" in line and not fresh.exists()


def test_until_and_only_pick_phases(trained, tmp_path):
    result = tiny(trained["work"], "--until", "gate")
    assert result.returncode == 0, result.stderr[-2000:]
    assert [line[1:line.index("]")] for line in result.stdout.splitlines() if "] skip" in line] == list(PHASES[:5])
    assert "[stage2]" not in result.stdout
    result = tiny(trained["work"], "--only", "gate,presets")
    assert result.returncode == 0 and "[gate] skip" in result.stdout and "[presets] skip" in result.stdout
    assert "[stage1]" not in result.stdout and "[data]" not in result.stdout
    line = one_error_line(tiny(tmp_path / "w", "--only", "stage2"))
    assert "--only stage2" in line and "stage1" in line
    assert "each phase must be one of" in one_error_line(tiny(tmp_path / "w", "--only", "stage3"))
    assert "--skip" in one_error_line(tiny(tmp_path / "w", "--skip", "stage1"))
    assert "--only" in one_error_line(tiny(tmp_path / "w", "--only", "gate", "--until", "gate"))


def test_a_budget_stop_exits_75_and_a_rerun_resumes(trained, tmp_path):
    """--max-minutes stops the running stage with a checkpoint (exit 75); rerunning continues it."""
    src, work = trained["work"], tmp_path / "work"
    shutil.copytree(src / "synth", work / "synth")
    shutil.copytree(src / "runs" / "stage0", work / "runs" / "stage0")
    shutil.copy(src / "chain.json", work / "chain.json")
    result = tiny(work, "--only", "stage0", "--stage0-steps", 400, "--max-minutes", 0.2)
    assert result.returncode == 75, result.stdout[-2000:] + result.stderr[-2000:]
    assert "[stage0] start:" in result.stdout and "from step 8" in result.stdout
    stop = [line for line in result.stdout.splitlines() if line.startswith("[stage0] stopped at step")]
    assert len(stop) == 1 and "rerun the same command to continue" in stop[0]
    reached = int(stop[0].split("step ")[1].split()[0])
    assert 8 < reached < 400
    ckpts = sorted(p.name for p in (work / "runs" / "stage0" / "checkpoints").glob("step_*.pt"))
    assert ckpts[-1] == f"step_{reached:08d}.pt"
    result = tiny(work, "--only", "stage0", "--stage0-steps", reached + 1)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"from step {reached}" in result.stdout and "[stage0] done in" in result.stdout
    assert (work / "runs" / "stage0" / "export" / f"{reached + 1:06d}.pt").is_file()


def test_output_folder_holds_every_model_file_and_the_probe_table(trained):
    out, work = trained["out"], trained["work"]
    for name in MODEL_FILES:
        assert (out / name).is_file(), name
    assert sorted(p.stem for p in (out / "presets").glob("*.npy")) == sorted(EMOTIONS)
    probe = json.loads((out / "probe.json").read_text())["stages"]
    for stage in GENERATOR_STAGES:  # the runs' first and last probe records
        first, last = records(work / "runs" / stage)[0], records(work / "runs" / stage)[-1]
        for key in ("mouth_open_r2", "wa_open_r2"):
            assert probe[stage]["before"][key] == pytest.approx(first[f"probe/{key}"], abs=1e-12)
            assert probe[stage]["after"][key] == pytest.approx(last[f"probe/{key}"], abs=1e-12)
    assert probe["gate"]["wa_expression_r2"] == json.loads((work / "gate.json").read_text())["wa_expression_r2"]
    assert probe["stage2_bases"] == {"bases_bit_identical": True, "mouth_pose_r2_unchanged": True}
    ratio = probe["presets"]["happy_sad_ratio"]
    out_diff, data_diff = probe["presets"]["happy_sad_output"], probe["presets"]["happy_sad_data"]
    dot = sum(a * b for a, b in zip(out_diff, data_diff))
    assert ratio == pytest.approx(dot / sum(b * b for b in data_diff), rel=1e-4, abs=1e-9)  # float32 sums
    assert 0 <= probe["syncnet"]["preferred"] <= 1 and probe["syncnet"]["comparisons"] > 0
    assert set(probe["audio2lip"]["mouth_open_probe_r2"]) == {"trained", "untrained", "targets"}
    assert math.isfinite(probe["pose_flow"]["nll_trained"]) and probe["audio2exp"]["chance"] == 0.125
    assert not any("error" in v for v in probe.values() if isinstance(v, dict)), probe
    tree_reader = probe["tree_reader"]  # the full model's cross-driving, read by the ceiling phase's net
    assert tree_reader["reader"] == str(work / "ceiling" / "run" / "export" / "synthtalk_factor_net")
    assert "1 speaker(s)" in tree_reader["left_out"]  # the tiny tree holds out one speaker
    table = (out / "probe.md").read_text()
    assert "| gate | wa → expression, mean R² |" in table and "| stage1 | α_m → mouth opening R² |" in table
    for png in ("stage0_curves.png", "stage1_curves.png", "stage2_curves.png", "pose_velocity_spectrum.png"):
        assert (work / "probe" / png).stat().st_size > 1000, png


def test_generate_runs_on_the_output_folder_with_pose_and_expression_from_audio(trained, tmp_path):
    from PIL import Image

    from edtalk.cli import main
    from edtalk.video import read_video

    tree, out = trained["tree"], trained["out"]
    clip = sorted((tree / "video").glob("*.mp4"))[0].stem
    frames, _ = read_video(tree / "video" / f"{clip}.mp4")
    Image.fromarray(frames[0]).save(tmp_path / "face.png")
    video = tmp_path / "talk.mp4"
    code = main(["generate", "--checkpoint-dir", str(out), "--presets", str(out / "presets"), "--no-crop", "--quiet",
                 "--device", "cpu", "--source", str(tmp_path / "face.png"), "--audio", str(tree / "audio" / f"{clip}.wav"),
                 "--pose", "audio", "--exp", "audio", "--out", str(video)])
    assert code == 0
    rendered, fps = read_video(video)
    assert fps == 25 and len(rendered) == len(frames)  # SynthTalk audio is cut frame-exactly with its video


def test_second_invocation_skips_every_phase(trained):
    result = run_script("--preset", "tiny", "--work", trained["work"], "--out", trained["out"], "--device", "cpu",
                        "--threads", 1)
    assert result.returncode == 0, result.stderr[-2000:]
    stdout = result.stdout
    for phase in PHASES:
        assert f"[{phase}] skip" in stdout, phase
    assert "start" not in stdout and "edtalk.cli" not in stdout  # no command ran


def test_plan_states_each_presets_phases_steps_and_time(tmp_path):
    for preset in ("tiny", "proof", "full"):
        result = run_script("--preset", preset, "--work", tmp_path / "w", "--plan")
        assert result.returncode == 0, result.stderr
        rows = [line.split() for line in result.stdout.splitlines() if line.startswith("  ")]
        assert [r[0] for r in rows] == [*PHASES, "total"]
        stage1 = next(" ".join(r) for r in rows if r[0] == "stage1")
        assert f"model.init_path={tmp_path / 'w' / 'runs' / 'stage0' / 'export' / 'model'}" in stage1
        assert "model.init=pretrained" in stage1 and "data.cross_clip_rate=0.5" in stage1
        assert all("train.probe_every=" in " ".join(r) for r in rows if r[0] in GENERATOR_STAGES)
        assert float(rows[-1][1]) > 0 and not (tmp_path / "w").exists()
    proof = run_script("--preset", "proof", "--plan").stdout
    for option in ("--seed 17", "--speakers 64", "--frames 48", "--levels 1,3", "--emotions all", "--pose-drift 2.5",
                   "--pose-range 1.5", "--exp-change 0.3"):
        assert option in proof, option
    assert "stage0_synthtalk.yaml 8000 steps" in proof and "h of one CPU thread" in proof
    scratch = run_script("--preset", "tiny", "--plan", "--skip", "stage0").stdout
    assert "stage0" not in [line.split()[0] for line in scratch.splitlines() if line.startswith("  ")]
    stage1 = next(line for line in scratch.splitlines() if line.startswith("  stage1"))
    assert "model.init" not in stage1 and "data.cross_clip_rate=0.5" in stage1
    help_text = run_script("--help").stdout
    for preset in ("tiny", "proof", "full"):
        assert f"  {preset} " in help_text and "CPU" in help_text


def test_bad_input_is_one_error_line(trained):
    result = run_script("--preset", "tiny", "--work", trained["work"], "--threads", 0)
    assert one_error_line(result) == "edtalk: error: --threads must be at least 1"
    one_error_line(run_script("--preset", "full", "--work", trained["work"]))  # that work folder holds the tiny tree
    line = one_error_line(tiny(trained["work"], "--set", "stage0:model.latent_dim=32"))
    assert "stage 1 starts from stage 0's export" in line
    assert "R² is at most 1" in one_error_line(tiny(trained["work"], "--gate-threshold", 2))
    assert "--max-minutes" in one_error_line(tiny(trained["work"], "--max-minutes", -1))


def test_probe_table_judges_ceiling_targets_by_their_fraction(recipe_script):
    stages = {"stage1": {"before": {"mouth_open_r2": 0.1, "yaw_r2": 0.2},
                         "after": {"mouth_open_r2": 0.76, "mouth_open_frac": 0.88, "yaw_r2": 0.5, "yaw_frac": 0.81,
                                   "roll_r2": 0.79}},  # roll: no ceiling fraction, so no verdict
              "stage2_bases": {"bases_bit_identical": True, "mouth_pose_r2_unchanged": False}}
    rows = {line.split(" | ")[1]: line for line in recipe_script.markdown_table(stages).splitlines()
            if line.startswith("| stage")}
    assert rows["α_m → mouth opening R²"].endswith("| 0.760 (0.880 of ceiling) | ≥ 0.9× ceiling | no |")
    assert rows["α_p → yaw R²"].endswith("| 0.500 (0.810 of ceiling) | ≥ 0.8× ceiling | yes |")  # a low R², a low ceiling
    assert rows["α_p → roll R²"].endswith("| ≥ 0.8× ceiling |  |")
    assert rows["stage 2 leaves the mouth and pose R² unchanged"].endswith("| False | yes | no |")


def test_tree_reader_probe_reads_the_full_model_with_the_trees_own_net(trained, recipe_script, monkeypatch):
    """The probe phase's second reading of cross-driving: the full model, the ceiling phase's factor net.
    The tiny tree holds out one speaker, so its clips are relabelled as three speakers here."""
    import dataclasses

    work = trained["work"]
    chain = recipe_script.Chain("tiny", work, trained["out"], 2, "16", 1, {}, "cpu", 1, {}, 0)
    data = recipe_script.probe_data(chain)
    three = dataclasses.replace(data, speakers=[f"s{i % 3}" for i in range(len(data.names))])
    monkeypatch.setattr(recipe_script, "probe_data", lambda chain: three)
    values = recipe_script.tree_reader_probe(chain)
    net = work / "ceiling" / "run" / "export" / "synthtalk_factor_net"
    assert values["reader"] == str(net)
    assert -1 <= values["cross_mouth_r"] <= 1 and values["cross_mouth_r"] != 0

    from edtalk import EDTalk
    from edtalk.eval.probes import FactorReader, cross_driving_probe

    model = EDTalk.from_pretrained(trained["out"] / "EDTalk")

    def bound(reader):  # the reader on the pose drivers' true frames (the renders do not enter it)
        return cross_driving_probe(model, three, reader, 8, 16, render=lambda *a: a[3])["reader_pose_coef"]

    assert values["reader_pose_coef"] == pytest.approx(bound(FactorReader.load(net)), abs=1e-6)
    assert values["reader_pose_coef"] != pytest.approx(bound(FactorReader.load(None)), abs=1e-3)  # not the shipped net


def test_a_generator_stage_is_done_only_when_its_export_reached_the_step_count(recipe_script, tmp_path):
    """Checkpoints at the step count do not make a stage done while its export is older: the run was
    killed between its last checkpoint and its export, or the preset now trains it longer."""
    chain = recipe_script.Chain("tiny", tmp_path, tmp_path / "model", 2, "16", 1, {"stage1": 16}, "cpu", 1, {}, 0)
    run = chain.run_dir("stage1")
    (run / "checkpoints").mkdir(parents=True)
    (run / "export").mkdir()
    (run / "checkpoints" / "step_00000016.pt").write_bytes(b"")
    (run / "export" / "000012.pt").write_bytes(b"")
    assert recipe_script.stage_export(chain, "stage1") is None
    (run / "export" / "000016.pt").write_bytes(b"")
    assert recipe_script.stage_export(chain, "stage1") == run / "export" / "000016.pt"


def test_a_run_probed_with_other_settings_is_measured_again_from_its_start_state(trained, recipe_script, monkeypatch):
    """The probe phase reads a generator run's probes.jsonl only when the run recorded it with the chain's
    probe.* settings. Otherwise it measures the run's start state (rebuilt from its dumped config, seeded
    as the trainer seeds it) and its export again. Rebuilt with the same settings, the two readings are the
    run's own first and last records."""
    chain = recipe_script.Chain("tiny", trained["work"], trained["out"], 2, "16", 1, {}, "cpu", 1, {}, 0)
    first, last = records(chain.run_dir("stage1"))[0], records(chain.run_dir("stage1"))[-1]
    again = recipe_script.reprobe_generator(chain, "stage1")
    assert again["steps"] == [0, last["step"]]
    for key in ("mouth_open_r2", "yaw_r2", "roll_r2", "tx_r2", "leak_mouth"):
        assert again["before"][key] == pytest.approx(first[f"probe/{key}"], abs=1e-6), key
        assert again["after"][key] == pytest.approx(last[f"probe/{key}"], abs=1e-6), key
    assert again["before"]["mouth_open_r2"] != pytest.approx(again["after"]["mouth_open_r2"], abs=1e-6)

    called = []
    monkeypatch.setattr(recipe_script, "reprobe_generator", lambda c, s: called.append(s) or {"steps": [0, 1]})
    assert "note" not in recipe_script.generator_probe(chain, "stage1") and called == []
    settings = {**chain.probe_settings(), "probe.max_clips": "12"}
    monkeypatch.setattr(recipe_script.Chain, "probe_settings", lambda self: settings)
    found = recipe_script.generator_probe(chain, "stage1")
    assert called == ["stage1"] and "'probe.max_clips': '12'" in found["note"]
    assert f"- stage1: {found['note']}" in recipe_script.markdown_table({"stage1": found})


def test_audio2lip_probe_renders_the_speech_driven_mouth_and_reads_it_with_the_trees_net(trained, recipe_script,
                                                                                          monkeypatch):
    """rendered_mouth: the stage-1 generator renders each held-out clip from its first frame with the given
    mouth weights and the clip's cached α_p; the tree's factor net reads the opening; r is against the truth."""
    import numpy as np
    import torch

    chain = recipe_script.Chain("tiny", trained["work"], trained["out"], 2, "16", 1, {}, "cpu", 1, {}, 0)
    found = recipe_script.probe_audio2lip(chain)["rendered_mouth"]
    assert found["reader"] == str(trained["work"] / "ceiling" / "run" / "export" / "synthtalk_factor_net")
    assert all(-1 <= found[k]["r"] <= 1 for k in ("trained", "untrained", "targets"))
    assert found["trained"]["r"] != found["untrained"]["r"]

    from edtalk.eval.probes import FactorReader
    from edtalk.train.motion import load_motion

    seen = []

    class OpeningIsTheMouthWeight(FactorReader):  # reads back the first mouth weight the frames were made with
        def __init__(self):
            pass

        def __call__(self, images):
            return {"mouth": seen.pop(0)[:len(images), :1].numpy()}

    monkeypatch.setattr(FactorReader, "load", classmethod(lambda cls, path=None: OpeningIsTheMouthWeight()))
    data = recipe_script.probe_data(chain)
    truth = {n: data.truth[i]["mouth"][:, :1] for i, n in enumerate(data.names)}

    def alphas(name):  # mouth weights whose first column is the true opening: r must be 1, coef 1
        a = torch.from_numpy(load_motion(chain.tree, name, "mouth")).float().clone()
        k = min(len(a), len(truth[name]))
        a = a[:k]
        a[:, :1] = torch.from_numpy(truth[name][:k])
        seen.append(a)
        return a

    exact = recipe_script.rendered_mouth(chain, {"exact": alphas})["exact"]
    assert exact["r"] == pytest.approx(1.0, abs=1e-6) and exact["coef"] == pytest.approx(1.0, abs=1e-5)
    assert not np.isnan(exact["r"])
