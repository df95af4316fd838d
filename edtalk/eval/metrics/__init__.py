"""Talking-head metrics behind one registry, under one of two protocols (docs/evaluation.md).

- ``eat``: every metric sees the inputs of its reference implementation (EAT's 128² aligned crops
  for PSNR/SSIM/LPIPS/LMD/FID, 5 frames per clip for FID, EAT's face chips for Acc_emo, the
  PC-AVS crop for LSE) — the protocol to put numbers beside the paper's.
- ``native``: full frames as generated (one's own comparisons); LSE on syncnet_python's face track.

:class:`MetricSuite` builds every metric it can from :class:`MetricSettings` (weight paths from
flags or environment variables), records why the others are skipped and, for each metric, the
input steps next to its reference's (:mod:`.reference`), and turns a :class:`Clip` into one row of
per-clip values.  FID accumulates over all clips (:meth:`finish`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from ...errors import EDTalkError
from .clip import Clip, FaceTrack, detect_track
from .landmarks import LANDMARK_SETS, linspace_pairs, lmd
from .reference import Step, mismatches
from .registry import (KNOWN_SHA256_PREFIXES, METRICS, PROTOCOLS, WEIGHT_SOURCES, MetricInfo, MetricSettings,
                       MetricUnavailable, file_sha256)

__all__ = ["MetricSuite", "MetricSettings", "MetricStatus", "MetricUnavailable", "MetricInfo", "METRICS",
           "WEIGHT_SOURCES", "PROTOCOLS", "Clip", "FaceTrack", "detect_track"]

PIXEL_KEYS = ("psnr", "ssim", "lpips", "m_lmd", "f_lmd", "fid")  # the metrics on EAT's aligned crops


@dataclass
class MetricStatus:
    ok: bool
    network: str = ""
    reason: str = ""
    steps: List[Step] = field(default_factory=list)
    weights: Dict[str, str] = field(default_factory=dict)  # file → sha256 of the weights used

    @property
    def comparable(self) -> bool:
        return self.ok and all(s.match for s in self.steps)

    @property
    def differences(self) -> str:
        return mismatches(self.steps)


class MetricSuite:
    """Builds the metric networks once; `row(clip)` gives a clip's values, `finish()` the dataset ones.

    `networks` injects ready objects (tests, custom setups): keys 'lpips' (LPIPSMetric), 'fid'
    (FIDMetric), 'sync' (a :class:`.sync.SyncNetV2Scorer` or :class:`.sync.SyncExpertScorer`),
    'emotion' (`.predict(frames)`), 'identity' (`.embed(frames, boxes, landmarks)`); each value is
    (object, network description, whether that network is the reference's).
    """

    def __init__(self, settings: Optional[MetricSettings] = None, networks: Optional[dict] = None):
        self.settings = settings or MetricSettings()
        self.protocol = self.settings.protocol
        self.status: Dict[str, MetricStatus] = {}
        given = dict(networks or {})
        self.templates = self._templates() if self.protocol == "eat" and self.settings.wants(*PIXEL_KEYS) else None
        self.lpips = self._build(("lpips",), given, "lpips", self._lpips)
        self.fid = self._build(("fid",), given, "fid", self._fid)
        self.sync = self._build(("lse_c", "lse_d"), given, "sync", self._sync)
        self.emotion = self._build(("acc_emo",), given, "emotion", self._emotion)
        self.identity = self._build(("csim",), given, "identity", self._identity)
        self.landmarks = self._build(("m_lmd", "f_lmd"), given, "landmarks", self._landmarks)
        from .reference import pixel_steps

        for key in ("psnr", "ssim"):
            self._set(key, MetricStatus(True, "scikit-image", steps=pixel_steps(self.protocol, *self._template_facts())))
        if self.settings.only is not None:
            for key in METRICS:
                if key not in self.settings.only:
                    self.status[key] = MetricStatus(False, reason="not requested (--metrics)")

    # ----------------------------------------------------------------------------- building

    def _set(self, key, status: MetricStatus) -> None:
        if key not in self.status:
            self.status[key] = status

    def _build(self, keys, given, name, factory):
        if not self.settings.wants(*keys):
            return None
        try:
            if name in given:
                obj, network, reference_network = given[name]
                steps, weights = self._injected_steps(name, obj, network, reference_network), {}
            else:
                obj, network, steps, weights = factory()
        except MetricUnavailable as exc:
            for key in keys:
                self._set(key, MetricStatus(False, reason=str(exc)))
            return None
        for key in keys:
            self._set(key, MetricStatus(True, network, steps=list(steps), weights=dict(weights)))
        return obj

    def _injected_steps(self, name, obj, network, reference_network: bool) -> List[Step]:
        from . import reference as ref

        facts = self._template_facts()
        if name == "lpips":
            steps = ref.lpips_steps(self.protocol, *facts, weights_verified=reference_network)
        elif name == "fid":
            steps = ref.fid_steps(self.protocol, "torchvision" if reference_network else network, reference_network,
                                  *facts)
        elif name == "sync":
            steps = ref.lse_steps(self.protocol, "syncnet_v2" if reference_network else network, network,
                                  reference_network, self.settings.max_offset)
        elif name == "emotion":
            steps = ref.emotion_steps(self.protocol, reference_network)
        elif name == "identity":
            steps = ref.csim_steps(reference_network, network)
        else:
            steps = ref.lmd_steps(self.protocol, *facts)
        return steps

    def _template_facts(self):
        if self.protocol != "eat":
            return None, False
        if self.templates is None:
            return "no template (not loaded)", False
        return self.templates.source, self.templates.official

    def _templates(self):
        from .align import load_eat_templates, stand_in_eat_templates

        if self.settings.path("eat_template") is None:
            return stand_in_eat_templates()
        try:
            return load_eat_templates(self.settings.require("eat_template"))
        except MetricUnavailable as exc:
            for key in PIXEL_KEYS + ("psnr", "ssim"):
                self._set(key, MetricStatus(False, reason=str(exc)))
            return None

    def _weights(self, name: str):
        """(path, sha256, whether the bytes are a known reference file)."""
        path = self.settings.require(name)
        digest = file_sha256(path) if path.is_file() else ""
        known = KNOWN_SHA256_PREFIXES.get(name, ())
        return path, digest, any(digest.startswith(p) for p in known)

    def _lpips(self):
        from .pixel import LPIPSMetric
        from .reference import lpips_steps

        if self.protocol == "eat" and self.templates is None:
            raise MetricUnavailable(self.status["psnr"].reason)
        path, digest, verified = self._weights("lpips")
        metric = LPIPSMetric(path, self.settings.device)
        steps = lpips_steps(self.protocol, *self._template_facts(), weights_verified=verified)
        return metric, "lpips v0.1 AlexNet", steps, {str(path): digest}

    def _fid(self):
        from .fid import TF_FID_SHA256_PREFIX, TORCHVISION_SHA256_PREFIX, FIDMetric, load_inception
        from .reference import fid_steps

        if self.protocol == "eat" and self.templates is None:
            raise MetricUnavailable(self.status["psnr"].reason)
        path, digest, _ = self._weights("fid")
        net, kind = load_inception(path)
        verified = digest.startswith(TORCHVISION_SHA256_PREFIX if kind == "torchvision" else TF_FID_SHA256_PREFIX)
        name = "torchvision Inception-v3 (EAT's FID network)" if kind == "torchvision" else "TF-Inception (pytorch-fid)"
        steps = fid_steps(self.protocol, kind, verified, *self._template_facts())
        return FIDMetric(net, self.settings.device), name, steps, {str(path): digest}

    def _sync(self):
        from ...networks.syncnet import load_syncnet
        from .reference import lse_steps
        from .sync import SyncExpertScorer, SyncNetV2Scorer
        from .syncnet_v2 import load_syncnet_v2

        if self.settings.path("syncnet_v2") is not None:
            path, digest, _ = self._weights("syncnet_v2")
            net, description = load_syncnet_v2(path, self.settings.device)
            released = "syncnet_python weights" in description
            weights = "syncnet_v2.model (loaded into its architecture)" if released else \
                "a TorchScript/.pt2 export (not verifiable as syncnet_v2's weights)"
            steps = lse_steps(self.protocol, "syncnet_v2", weights, released, self.settings.max_offset)
            return SyncNetV2Scorer(net, self.settings.device), description, steps, {str(path): digest}
        if self.settings.path("syncnet") is None:
            v2, expert = WEIGHT_SOURCES["syncnet_v2"], WEIGHT_SOURCES["syncnet"]
            raise MetricUnavailable(f"no weights: pass {v2.flag} or set {v2.env} ({v2.what}); or, as a stand-in, "
                                    f"{expert.flag} / {expert.env} ({expert.what})")
        path = self.settings.require("syncnet")
        try:
            net = load_syncnet(path)
        except EDTalkError as exc:
            raise MetricUnavailable(str(exc)) from None
        name = "SyncNet expert (docs/design.md §2.10), not syncnet_v2"
        steps = lse_steps(self.protocol, name, "our SyncNet expert", False, self.settings.max_offset)
        return SyncExpertScorer(net, self.settings.device), name, steps, {}

    def _emotion(self):
        from .emotion import FanClassifier, load_emotion_network
        from .reference import emotion_steps

        path, digest, _ = self._weights("emotion")
        classifier = load_emotion_network(path, self.settings.device)
        steps = emotion_steps(self.protocol, isinstance(classifier, FanClassifier))
        return classifier, classifier.name, steps, {str(path): digest}

    def _identity(self):
        from .identity import DlibIdentity, TorchScriptIdentity
        from .reference import csim_steps

        if self.settings.path("arcface") is not None:
            path, digest, _ = self._weights("arcface")
            net = TorchScriptIdentity(path, self.settings.device)
            return net, net.name, csim_steps(True, net.name), {str(path): digest}
        try:
            net = DlibIdentity()
        except (ImportError, EDTalkError) as exc:
            raise MetricUnavailable(f"no identity network: pass --arcface or set EDTALK_ARCFACE ({exc})") from None
        return net, net.name, csim_steps(False, net.name), {}

    def _landmarks(self):
        from .reference import lmd_steps

        if self.protocol == "eat" and self.templates is None:
            raise MetricUnavailable(self.status["psnr"].reason)
        try:
            if self.protocol == "eat":
                from .align import dlib_models

                dlib_models()
            else:
                from ...face.landmarks import get_landmarker

                get_landmarker("dlib", upsample=0)
        except EDTalkError as exc:
            raise MetricUnavailable(str(exc)) from None
        return True, "dlib 68 points", lmd_steps(self.protocol, *self._template_facts()), {}

    # ----------------------------------------------------------------------------- running

    def row(self, clip: Clip) -> dict:
        """Per-clip values: metric key → float (None where the clip gives none), plus bookkeeping
        ('skipped': metric → why this clip has no value).

        A network that fails (a user file that does not fit its documented interface) turns its
        metrics into skips with the reason, for this and later clips, instead of ending the run.
        """
        row = {"name": clip.name, "frames": len(clip), "emotion": clip.emotion or "", "skipped": {}}
        if any(self.status.get(k, MetricStatus(False)).ok for k in ("psnr", "ssim")):
            row.update(self._pixel_row(clip, row))
        for attr, keys, step in self._network_steps():
            if getattr(self, attr) is None:
                continue
            try:
                values = step(clip)
                row["skipped"].update(values.pop("skipped", {}))
                row.update(values)
            except (MetricUnavailable, RuntimeError) as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if not isinstance(exc, MetricUnavailable):
                    reason = f"the {attr} network failed on {clip.name}: {reason}"
                setattr(self, attr, None)
                for key in keys:
                    self.status[key] = MetricStatus(False, reason=reason)
        for key in METRICS:
            if key in row and row[key] is None and key not in row["skipped"]:
                row["skipped"][key] = "no value for this clip"
        return row

    def _network_steps(self):
        return (("lpips", ("lpips",), self._lpips_row), ("landmarks", ("m_lmd", "f_lmd"), self._lmd_row),
                ("fid", ("fid",), self._fid_update), ("sync", ("lse_c", "lse_d"), self._sync_row),
                ("emotion", ("acc_emo",), self._emotion_row), ("identity", ("csim",), self._csim_row))

    def _pairs(self, clip: Clip):
        """(generated, GT) frame pairs the pixel metrics compare: EAT's paired 128² crops, or the
        native protocol's equal-length full frames."""
        if self.protocol != "eat":
            return clip.pred, clip.gt
        if "eat_pairs" not in clip.cache:
            from .align import eat_crop_video

            pred, gt = eat_crop_video(clip.pred, self.templates), eat_crop_video(clip.gt, self.templates)
            ip, ig = linspace_pairs(len(pred), len(gt))
            clip.cache["eat_pairs"] = (pred[ip], gt[ig])
        return clip.cache["eat_pairs"]

    NO_CROP = "dlib finds no face to crop in the generated or the GT frames (EAT drops such frames)"

    def _pixel_row(self, clip: Clip, row: dict) -> dict:
        from .pixel import psnr_frames, ssim_frames

        pred, gt = self._pairs(clip)
        out = {}
        for key, fn in (("psnr", psnr_frames), ("ssim", ssim_frames)):
            if self.settings.wants(key):
                out[key] = float(fn(pred, gt).mean()) if len(pred) else None
                out[f"{key}_frames"] = len(pred)
                if not len(pred):
                    row["skipped"][key] = self.NO_CROP
        return out

    def _lpips_row(self, clip: Clip) -> dict:
        pred, gt = self._pairs(clip)
        if not len(pred):
            return {"lpips": None, "skipped": {"lpips": self.NO_CROP}}
        return {"lpips": float(self.lpips.frames(pred, gt).mean()), "lpips_frames": len(pred)}

    def _lmd_row(self, clip: Clip) -> dict:
        if self.protocol == "eat":
            from .align import eat_crop_landmarks

            pred, gt = self._pairs(clip)
            pred_lm, gt_lm = eat_crop_landmarks(pred), eat_crop_landmarks(gt)
        else:
            pred_lm, gt_lm = clip.track("pred").landmarks, clip.track("gt").landmarks
        out = {key: lmd(pred_lm, gt_lm, points) for key, points in LANDMARK_SETS.items() if self.settings.wants(key)}
        out["skipped"] = {key: "no frame with a dlib face on both sides" for key, v in out.items() if v is None}
        return out

    def _fid_update(self, clip: Clip) -> dict:
        pred, gt = self._pairs(clip)
        if self.protocol == "eat":
            from .fid import sample_indices

            pick = sample_indices(len(pred))
            pred, gt = pred[pick], gt[pick]
        if len(pred):
            self.fid.update(pred, gt)
        return {"fid_frames": len(pred)}

    def _emotion_row(self, clip: Clip) -> dict:
        if not clip.emotion:
            return {}
        if self.protocol == "eat":
            from .align import chips_of

            frames = chips_of(clip.pred)
            if not frames:
                return {"acc_emo": None, "skipped": {"acc_emo": "no face chip in any generated frame"}}
        else:
            frames = list(clip.pred)
        predicted = self.emotion.predict(frames)
        return {"emo_pred": predicted, "acc_emo": float(predicted == clip.emotion)}

    def _csim_row(self, clip: Clip) -> dict:
        from .identity import csim

        source = clip.source if clip.source is not None else clip.gt[0]
        value, frames = csim(self.identity, clip.track("source"), source, clip.track("pred"), clip.pred)
        return {"csim": value, "csim_frames": frames}

    def _sync_row(self, clip: Clip) -> dict:
        from .sync import SyncExpertScorer

        if clip.wav is None:
            return {"lse_c": None, "lse_d": None, "skipped": {"lse_c": "no driving audio", "lse_d": "no driving audio"}}
        try:  # face boxes from dlib whatever --metrics says, so LSE does not depend on it
            track = clip.track("pred")
        except EDTalkError:
            track = None
        if isinstance(self.sync, SyncExpertScorer):
            s = self.sync.score(clip.pred, clip.wav, None if track is None else track.boxes, self.settings.max_offset)
        else:
            crops, why = self._sync_crops(clip, track)
            if crops is None:
                return {"lse_c": None, "lse_d": None, "skipped": {"lse_c": why, "lse_d": why}}
            s = self.sync.score(crops, clip.wav, self.settings.max_offset)
        return {"lse_c": s["lse_c"], "lse_d": s["lse_d"], "av_offset": s["offset"]}

    def _sync_crops(self, clip: Clip, track: Optional[FaceTrack]):
        """(224² crops, None) or (None, why): the protocol's SyncNet crop of the generated frames."""
        from .align import pcavs_crops, syncnet_track_crops

        if track is None or not track.valid.any():
            return None, "dlib finds no face in the generated frames"
        if self.protocol == "eat":
            if not track.detected_everywhere:
                return None, "dlib misses the face in some generated frame (the PC-AVS crop needs every frame)"
            return pcavs_crops(clip.pred, track.landmarks), None
        if not np.isfinite(track.boxes).all():
            return None, "no face box in the first generated frames"
        return syncnet_track_crops(clip.pred, track.boxes), None

    def finish(self) -> dict:
        """Dataset-level values (FID); a failure becomes a skip reason."""
        out = {}
        if self.fid is not None:
            try:
                out["fid"] = self.fid.result()
            except MetricUnavailable as exc:
                self.status["fid"] = MetricStatus(False, reason=str(exc))
        return out
