"""Proof measures for the audio-to-pose flow and audio/text-to-expression on SynthTalk (held-out
speakers), next to an untrained baseline.  Called by scripts/train_pose_flow_synthtalk.sh and
scripts/train_audio2exp_synthtalk.sh; the helper steps are subcommands:

    python scripts/proof_audio_drivers.py factors-cache TREE           # α cache from SynthTalk ground truth
    python scripts/proof_audio_drivers.py random-audio2lip OUT.pt      # a frozen random encoder (no a2l run)
    python scripts/proof_audio_drivers.py pose-flow TREE RUN CONFIG OUT_DIR
    python scripts/proof_audio_drivers.py audio2exp TREE RUN CONFIG OUT_DIR

`factors-cache` writes α_p = the 6 SynthTalk pose factors and α_e = the 6 expression factors
padded with 4 zeros (the 10-d expression space) — the motion cache a trained generator would give,
without training stages 1–2 first (`edtalk extract-motion` writes the same files from a model).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch


def factors_cache(tree: str) -> None:
    from edtalk.data import layout
    from edtalk.data.synthtalk import load_factors
    from edtalk.train.motion import _save_atomic, motion_path

    for name in layout.list_clips(tree):
        truth, _, _ = load_factors(tree, [name])
        _save_atomic(motion_path(tree, name, "pose"), truth["pose"].astype(np.float32))
        exp = np.concatenate([truth["expression"], np.zeros((len(truth["expression"]), 4), np.float32)], 1)
        _save_atomic(motion_path(tree, name, "exp"), exp.astype(np.float32))


def random_audio2lip(out: str) -> None:
    from edtalk.config import Audio2LipConfig
    from edtalk.networks.audio2lip import Audio2Lip

    torch.manual_seed(0)
    torch.save({"audio2lip": Audio2Lip(Audio2LipConfig()).state_dict()}, out)


def _velocity_spectrum(seqs):
    """Mean power spectrum (over clips and dims) of frame-to-frame pose differences."""
    n = min(len(s) for s in seqs) - 1
    spec = [np.abs(np.fft.rfft(np.diff(s[: n + 1], axis=0), axis=0)) ** 2 for s in seqs]
    return np.fft.rfftfreq(n, d=1 / 25), np.mean(spec, axis=(0, 2))


def pose_flow(tree: str, run: str, config: str, out_dir: str) -> dict:
    from edtalk.data import layout
    from edtalk.data.sequence_datasets import clip_table
    from edtalk.networks.pose_flow import load_pose_flow
    from edtalk.train.config import load_train_config
    from edtalk.train.stages.pose_flow import PoseFlowStage, clip_nll

    flow, a2l = load_pose_flow(run)
    energy = flow.config.energy
    cfg = load_train_config(config, [f"data.root={tree}", f"model.audio2lip={Path(run) / 'export'}",
                                     f"model.flow.energy={energy}"])
    stage = PoseFlowStage(cfg, torch.device("cpu"))
    stage.audio2lip = a2l
    stage._table = clip_table(tree, layout.read_split(tree, "train"), a2l, "pose", energy=energy)
    torch.manual_seed(int(cfg.seed))
    baseline = stage.build_models()["flow"].eval()  # the untrained flow, same pose statistics
    test = clip_table(tree, layout.read_split(tree, "test"), a2l, "pose", energy=energy)
    report = {"held_out_clips": len(test)}
    for name, model in (("untrained", baseline), ("trained", flow)):
        report[f"nll_{name}"] = float(np.mean([clip_nll(model, t["motion"], t["audio"]) for t in test.values()]))
    samples, base_samples, truth = [], [], []
    for i, t in enumerate(test.values()):
        g = torch.Generator().manual_seed(i)
        samples.append(flow.sample(t["audio"][None], t["motion"][:1], 0.7, generator=g)[0].numpy())
        base_samples.append(baseline.sample(t["audio"][None], t["motion"][:1], 0.7,
                                            generator=torch.Generator().manual_seed(i))[0].numpy())
        truth.append(t["motion"].numpy())
    gt, sm, bs = (np.concatenate(x) for x in (truth, samples, base_samples))
    for name, s in (("trained", sm), ("untrained", bs)):
        report[f"mean_err_over_std_{name}"] = (np.abs(s.mean(0) - gt.mean(0)) / gt.std(0)).round(3).tolist()
        report[f"std_ratio_{name}"] = (s.std(0) / gt.std(0)).round(3).tolist()
        report[f"within_20pct_{name}"] = bool(np.all(np.abs(s.std(0) / gt.std(0) - 1) <= 0.2)
                                             and np.all(np.abs(s.mean(0) - gt.mean(0)) <= 0.2 * gt.std(0)))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, seqs in (("held-out α_p", truth), ("flow τ=0.7", samples), ("untrained flow", base_samples)):
        f, p = _velocity_spectrum(seqs)
        ax.semilogy(f[1:], p[1:], label=label)
    ax.set_xlabel("Hz"), ax.set_ylabel("power of Δα_p"), ax.legend(), ax.set_title("pose velocity spectrum")
    png = Path(out_dir) / "pose_velocity_spectrum.png"
    fig.tight_layout(), fig.savefig(png, dpi=100)
    report["spectrum_png"] = str(png)
    return report


def audio2exp(tree: str, run: str, config: str, out_dir: str) -> dict:
    from edtalk.data import layout
    from edtalk.networks.expression_predictor import ExpressionPredictor, load_expression_predictor
    from edtalk.text_emotion import TextFeatures
    from edtalk.train.stages.audio2exp import clip_features, transcripts_for

    net, a2l, encoder = load_expression_predictor(run)
    text = TextFeatures(encoder)
    names = layout.read_split(tree, "test")
    audio, tfeat, exp, labels = clip_features(tree, names, a2l, text, transcripts_for(names, "synthetic"))
    torch.manual_seed(0)
    baseline = ExpressionPredictor(net.config).eval()
    baseline.load_state_dict({**baseline.state_dict(), "audio_mean": net.audio_mean, "audio_std": net.audio_std})
    report = {"held_out_clips": len(names), "chance": 1 / 8}
    with torch.no_grad():
        for name, model in (("untrained", baseline), ("trained", net)):
            for mod, kw in (("audio", {"audio": audio}), ("text", {"text": tfeat}), ("both", {"audio": audio, "text": tfeat})):
                e, logits = model(**kw)
                hits = logits.argmax(1) == labels
                report[f"acc_{mod}_{name}"] = round(float(hits.float().mean()), 3)
                report[f"exp_mse_{mod}_{name}"] = round(float(((e - exp) ** 2).mean()), 4)
                if (mod, name) == ("audio", "trained"):
                    audio_hits = hits
        # MEAD levels scale the emotion (face and, with --emotional-voice, voice): accuracy per level
        levels = torch.tensor([layout.parse_mead_name(n).level for n in names])
        report["acc_audio_trained_by_level"] = {int(lv): round(float(audio_hits[levels == lv].float().mean()), 3)
                                                for lv in levels.unique()}
    return report


def main(argv) -> int:
    import os

    # one thread by default: spinning OpenMP threads make small ops crawl on a busy shared machine
    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    cmd, *args = argv
    if cmd == "factors-cache":
        factors_cache(*args)
        return 0
    if cmd == "random-audio2lip":
        random_audio2lip(*args)
        return 0
    report = {"pose-flow": pose_flow, "audio2exp": audio2exp}[cmd](*args)
    out = Path(args[3]) / f"{cmd.replace('-', '_')}_report.json"
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
