"""Talking-head metrics of the paper's protocol (spec §9) behind one registry.

:class:`MetricSuite` builds every metric it can from :class:`MetricSettings` (weight paths from
flags or environment variables), records why the others are skipped, and turns an aligned
:class:`Clip` into one row of per-clip values.  FID accumulates over all clips (:meth:`finish`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional


from ...errors import EDTalkError
from .clip import Clip, FaceTrack, detect_track
from .landmarks import LANDMARK_SETS, lmd
from .registry import METRICS, WEIGHT_SOURCES, MetricInfo, MetricSettings, MetricUnavailable

__all__ = ["MetricSuite", "MetricSettings", "MetricStatus", "MetricUnavailable", "MetricInfo", "METRICS",
           "WEIGHT_SOURCES", "Clip", "FaceTrack", "detect_track"]


@dataclass
class MetricStatus:
    ok: bool
    network: str = ""
    comparable: bool = True
    reason: str = ""


class MetricSuite:
    """Builds the metric networks once; `row(clip)` gives a clip's values, `finish()` the dataset ones.

    `networks` injects ready objects (tests, custom setups): keys 'lpips' (LPIPSMetric), 'fid'
    ((feature_net, comparable)), 'sync' (a scorer with `.score(frames, wav, boxes, max_offset)`),
    'emotion' (`.predict(frames)`), 'identity' (`.embed(frames, boxes, landmarks)`); each value is
    (object, network description, comparable).
    """

    def __init__(self, settings: Optional[MetricSettings] = None, networks: Optional[dict] = None):
        self.settings = settings or MetricSettings()
        self.status: Dict[str, MetricStatus] = {}
        given = dict(networks or {})
        self.lpips = self._build(("lpips",), given, "lpips", self._lpips)
        self.fid = self._build(("fid",), given, "fid", self._fid)
        self.sync = self._build(("lse_c", "lse_d"), given, "sync", self._sync)
        self.emotion = self._build(("acc_emo",), given, "emotion", self._emotion)
        self.identity = self._build(("csim",), given, "identity", self._identity)
        self.landmarks = self._build(("m_lmd", "f_lmd"), given, "landmarks", self._landmarks)
        for key in ("psnr", "ssim"):
            self._set(key, MetricStatus(True, "scikit-image"))
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
            obj, network, comparable = given[name] if name in given else factory()
        except MetricUnavailable as exc:
            for key in keys:
                self._set(key, MetricStatus(False, reason=str(exc)))
            return None
        for key in keys:
            self._set(key, MetricStatus(True, network, comparable))
        return obj

    def _lpips(self):
        from .pixel import LPIPSMetric

        return LPIPSMetric(self.settings.require("lpips"), self.settings.device), "lpips v0.1 AlexNet", True

    def _fid(self):
        from .fid import FIDMetric, load_inception

        net, comparable = load_inception(self.settings.require("fid"))
        name = "TF-Inception (pytorch-fid)" if comparable else "torchvision Inception-v3"
        return FIDMetric(net, self.settings.device, comparable=comparable), name, comparable

    def _sync(self):
        from ...networks.syncnet import load_syncnet
        from .registry import load_user_network
        from .sync import SyncExpertScorer, SyncNetV2Scorer

        if self.settings.path("syncnet_v2") is not None:
            net = load_user_network(self.settings.require("syncnet_v2"), "syncnet_v2 network", self.settings.device)
            return SyncNetV2Scorer(net, self.settings.device), "syncnet_v2 (user file)", True
        if self.settings.path("syncnet") is None:
            v2, expert = WEIGHT_SOURCES["syncnet_v2"], WEIGHT_SOURCES["syncnet"]
            raise MetricUnavailable(f"no weights: pass {v2.flag} or set {v2.env} ({v2.what}); or, as a stand-in, "
                                    f"{expert.flag} / {expert.env} ({expert.what})")
        path = self.settings.require("syncnet")
        try:
            net = load_syncnet(path)
        except EDTalkError as exc:
            raise MetricUnavailable(str(exc)) from None
        return SyncExpertScorer(net, self.settings.device), "SyncNet expert (spec §2.10), not syncnet_v2", False

    def _emotion(self):
        from .emotion import EmotionClassifier

        return EmotionClassifier(self.settings.require("emotion"), self.settings.device), "emotion classifier (user file)", True

    def _identity(self):
        from .identity import DlibIdentity, TorchScriptIdentity

        if self.settings.path("arcface") is not None:
            net = TorchScriptIdentity(self.settings.require("arcface"), self.settings.device)
            return net, net.name, True
        try:
            net = DlibIdentity()
        except (ImportError, EDTalkError) as exc:
            raise MetricUnavailable(f"no identity network: pass --arcface or set EDTALK_ARCFACE ({exc})") from None
        return net, net.name, False

    def _landmarks(self):
        try:
            from ...face.landmarks import get_landmarker

            get_landmarker("dlib", upsample=0)
        except EDTalkError as exc:
            raise MetricUnavailable(str(exc)) from None
        return True, "dlib 68 points", True

    # ----------------------------------------------------------------------------- running

    def row(self, clip: Clip) -> dict:
        """Per-clip values: metric key → float (None where the clip gives none), plus bookkeeping.

        A network that fails (a user file that does not fit its documented interface) turns its
        metrics into skips with the reason, for this and later clips, instead of ending the run.
        """
        from .pixel import psnr_frames, ssim_frames

        row = {"name": clip.name, "frames": len(clip), "emotion": clip.emotion or ""}
        if self.settings.wants("psnr"):
            row["psnr"] = float(psnr_frames(clip.pred, clip.gt).mean())
        if self.settings.wants("ssim"):
            row["ssim"] = float(ssim_frames(clip.pred, clip.gt).mean())
        for attr, keys, step in self._network_steps():
            if getattr(self, attr) is None:
                continue
            try:
                row.update(step(clip))
            except (MetricUnavailable, RuntimeError) as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if not isinstance(exc, MetricUnavailable):
                    reason = f"the {attr} network failed on {clip.name}: {reason}"
                setattr(self, attr, None)
                for key in keys:
                    self.status[key] = MetricStatus(False, reason=reason)
        return row

    def _network_steps(self):
        return (("lpips", ("lpips",), self._lpips_row), ("landmarks", ("m_lmd", "f_lmd"), self._lmd_row),
                ("fid", ("fid",), self._fid_update), ("sync", ("lse_c", "lse_d"), self._sync_row),
                ("emotion", ("acc_emo",), self._emotion_row), ("identity", ("csim",), self._csim_row))

    def _lpips_row(self, clip: Clip) -> dict:
        return {"lpips": float(self.lpips.frames(clip.pred, clip.gt).mean())}

    def _lmd_row(self, clip: Clip) -> dict:
        pred, gt = clip.track("pred"), clip.track("gt")
        return {key: lmd(pred.landmarks, gt.landmarks, points)
                for key, points in LANDMARK_SETS.items() if self.settings.wants(key)}

    def _fid_update(self, clip: Clip) -> dict:
        self.fid.update(clip.pred, clip.gt)
        return {}

    def _emotion_row(self, clip: Clip) -> dict:
        if not clip.emotion:
            return {}
        predicted = self.emotion.predict(clip.pred)
        return {"emo_pred": predicted, "acc_emo": float(predicted == clip.emotion)}

    def _csim_row(self, clip: Clip) -> dict:
        from .identity import csim

        source = clip.source if clip.source is not None else clip.gt[0]
        value, frames = csim(self.identity, clip.track("source"), source, clip.track("pred"), clip.pred)
        return {"csim": value, "csim_frames": frames}

    def _sync_row(self, clip: Clip) -> dict:
        if clip.wav is None:
            return {"lse_c": None, "lse_d": None}
        try:  # face boxes from dlib whatever --metrics says, so LSE does not depend on it
            boxes = clip.track("pred").boxes
        except EDTalkError:
            boxes = None
        s = self.sync.score(clip.pred, clip.wav, boxes, self.settings.max_offset)
        return {"lse_c": s["lse_c"], "lse_d": s["lse_d"], "av_offset": s["offset"]}

    def finish(self) -> dict:
        """Dataset-level values (FID); a failure becomes a skip reason."""
        out = {}
        if self.fid is not None:
            try:
                out["fid"] = self.fid.result()
            except MetricUnavailable as exc:
                self.status["fid"] = MetricStatus(False, reason=str(exc))
        return out
