"""What each metric's reference does, step by step, and whether this run did the same.

A metric is comparable to the paper's numbers only when every one of its input steps matches its
reference (network, weights, crop, resolution, sampling, aggregation, and the clips evaluated);
otherwise the report marks it with a † and names the steps that differ.  The references:

- PSNR, SSIM, M-LMD, F-LMD, FID, Acc_emo: EAT's evaluation suite (yuangan/evaluation_eat), the
  closest public MEAD protocol and the classifier behind the paper's Acc_emo;
- LSE-C / LSE-D: joonson/syncnet_python (and Wav2Lip's ``evaluation/scores_LSE``), with EAT's
  PC-AVS crop under the EAT protocol and syncnet_python's face-track crop under the native one;
- LPIPS: richzhang/PerceptualSimilarity (v0.1, AlexNet); CSIM: insightface ArcFace + norm_crop.

Codec round trips the references make on the way (EAT writes its crops with OpenCV's mp4v and
its frames as JPEG; syncnet_python re-encodes to MPEG-4 and JPEG) are not reproduced; they are
listed as residual differences in docs/evaluation.md, not as steps.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

REFERENCE_FILES: Dict[str, str] = {
    "psnr": "yuangan/evaluation_eat code/test_psnr_ssim.py (+ code/utils_crop.py, code/preprocess.py)",
    "ssim": "yuangan/evaluation_eat code/test_psnr_ssim.py (+ code/utils_crop.py, code/preprocess.py)",
    "lpips": "richzhang/PerceptualSimilarity (lpips v0.1, AlexNet)",
    "m_lmd": "yuangan/evaluation_eat code/test_lmd.py (on code/preprocess.py's aligned crops)",
    "f_lmd": "yuangan/evaluation_eat code/test_lmd.py (on code/preprocess.py's aligned crops)",
    "fid": "yuangan/evaluation_eat code/test_fid.py + code/utils_fid.py (torchvision Inception-v3)",
    "lse_c": "joonson/syncnet_python SyncNetInstance.py (+ run_pipeline.py crop, or EAT's scripts/align_68.py)",
    "lse_d": "joonson/syncnet_python SyncNetInstance.py (+ run_pipeline.py crop, or EAT's scripts/align_68.py)",
    "acc_emo": "yuangan/evaluation_eat code/test_emotion_acc.py + code/_acc_test.py (Emotion-FAN)",
    "csim": "insightface utils/face_align.py norm_crop + ArcFace",
}


@dataclass
class Step:
    """One input step of a metric: what this run did, what the reference does, whether they agree."""

    name: str
    ours: str
    reference: str
    match: bool

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.name}: {self.ours} (reference: {self.reference})"


def mismatches(steps: List[Step]) -> str:
    """The differing steps in one line ('' when all match)."""
    return "; ".join(s.describe() for s in steps if not s.match)


# ----------------------------------------------------------------------------- pixel-aligned metrics

EAT_CROP = "EAT's 128² crop: dlib 68 points, similarity of points 27–44 to base_68(_close).npy, 163² warp, [1:129]"
EAT_PAIRING = "frames with a face in each video, paired by ⌊linspace⌋ to the shorter length"


def crop_step(protocol: str, template_source: Optional[str], template_official: bool) -> Step:
    if protocol == "eat":
        ours = EAT_CROP if template_official else f"EAT's crop procedure with {template_source}"
        return Step("crop", ours, EAT_CROP, template_official)
    return Step("crop", "full frames (GT resized to the generated size)", EAT_CROP, False)


def resolution_step(protocol: str) -> Step:
    return Step("resolution", "128²" if protocol == "eat" else "the generated frames' size", "128²",
                protocol == "eat")


def pairing_step(protocol: str) -> Step:
    ours = EAT_PAIRING if protocol == "eat" else "every frame, both videos cut to the shorter length"
    return Step("sampling", ours, EAT_PAIRING, protocol == "eat")


def pixel_steps(protocol: str, template_source: Optional[str], template_official: bool) -> List[Step]:
    """PSNR / SSIM (EAT: scikit-image on the crops, mean over all frames of all clips)."""
    return [crop_step(protocol, template_source, template_official), resolution_step(protocol),
            pairing_step(protocol),
            Step("aggregation", "mean over all paired frames of all clips", "mean over all frames of all clips", True)]


def lpips_steps(protocol: str, template_source, template_official, weights_verified: bool) -> List[Step]:
    ref = "AlexNet trunk alexnet-owt-7be5be79.pth + lpips v0.1 heads"
    weights = Step("weights", ref if weights_verified else "an AlexNet file that is not alexnet-owt-7be5be79.pth",
                   ref, weights_verified)
    crop = crop_step(protocol, template_source, template_official)
    # no EAT or paper value: the protocol's crop is the reference crop
    crop.reference, crop.match = "the protocol's crop (no EAT or paper value)", protocol == "native" or template_official
    return [Step("network", "lpips v0.1 AlexNet", "lpips v0.1 AlexNet", True), weights, crop,
            Step("aggregation", "mean over all paired frames", "mean over all frames", True)]


def lmd_steps(protocol: str, template_source, template_official) -> List[Step]:
    landmarks_ref = "dlib 68 points on EAT's 128² crops (upsample 0), frames without a face on either side skipped"
    if protocol == "eat":
        landmarks = Step("landmarks", landmarks_ref, landmarks_ref, True)
    else:
        landmarks = Step("landmarks", "dlib 68 points on full frames; a frame without a detection reuses the last box",
                         landmarks_ref, False)
    return [crop_step(protocol, template_source, template_official), resolution_step(protocol), landmarks,
            pairing_step(protocol),
            Step("aggregation", "per clip Σ distances / (points × frames), mean over clips with a value",
                 "per clip Σ distances / (points × frames), mean over clips with a value", True)]


def fid_steps(protocol: str, kind: str, weights_verified: bool, template_source, template_official) -> List[Step]:
    net_ref = "torchvision Inception-v3 (ImageNet), BGR input, bilinear 299², ×2−1, transform_input, Mixed_7c pool"
    nets = {"torchvision": net_ref,
            "tf": "pytorch-fid's TF-Inception (RGB, bilinear 299², ×2−1, pool3)"}
    weights_ref = "inception_v3_google-0cc3c7bd.pth"
    sampling_ref = "5 frames per clip: ⌊linspace(0, L, 5, endpoint=False)⌋ of the paired crops"
    return [Step("network", nets.get(kind, kind), net_ref, kind == "torchvision"),
            Step("weights", "the file torchvision names inception_v3_google-0cc3c7bd.pth" if weights_verified
                 and kind == "torchvision" else "a file that is not inception_v3_google-0cc3c7bd.pth",
                 weights_ref, weights_verified and kind == "torchvision"),
            crop_step(protocol, template_source, template_official), resolution_step(protocol),
            Step("sampling", sampling_ref if protocol == "eat" else "every frame of every clip", sampling_ref,
                 protocol == "eat"),
            Step("aggregation", "one Fréchet distance over all clips' frames, generated vs GT",
                 "one Fréchet distance over all clips' frames, generated vs GT", True)]


# ----------------------------------------------------------------------------- LSE

def lse_steps(protocol: str, network: str, weights: str, weights_verified: bool, max_offset: int) -> List[Step]:
    """`network`: 'syncnet_v2' or a stand-in's description."""
    if protocol == "eat":
        crop = Step("crop", "EAT's PC-AVS crop (224², eye/mouth similarity, mouth re-centred) from dlib 68 points",
                    "EAT's PC-AVS crop from face-alignment (FAN) 68 points; no FAN weights here", False)
    else:
        crop = Step("crop", "syncnet_python's face-track crop (median 13, scale 0.4, 224²) on dlib HOG boxes",
                    "syncnet_python's face-track crop on S3FD boxes; no S3FD weights here", False)
    search = f"N−5 windows, offsets ±{max_offset} with zero-padded audio, mean over all windows"
    ref_search = "N−5 windows, offsets ±15 with zero-padded audio, mean over all windows"
    return [Step("network", network, "syncnet_v2", network == "syncnet_v2"),
            Step("weights", weights, "syncnet_python's syncnet_v2.model", weights_verified),
            crop,
            Step("audio", "int16 samples → python_speech_features MFCC (13 × 100 Hz)",
                 "int16 samples → python_speech_features MFCC (13 × 100 Hz)", True),
            Step("sampling", search, ref_search, max_offset == 15),
            Step("aggregation", "LSE-D = min mean distance, LSE-C = median − min; mean over clips with a value",
                 "LSE-D = min mean distance, LSE-C = median − min; mean over clips with a value", True)]


# ----------------------------------------------------------------------------- Acc_emo, CSIM

def emotion_steps(protocol: str, fan: bool) -> List[Step]:
    chip = "dlib 5-point face chips (get_face_chip 224, padding 0.25), HOG then CNN detector"
    return [Step("network", "Emotion-FAN (EAT's checkpoint)" if fan else "a user frame classifier",
                 "Emotion-FAN fine-tuned on MEAD (EAT)", fan),
            Step("weights", "an Emotion-FAN checkpoint (architecture checked)" if fan else "a user file",
                 "EAT's self_relation-attention checkpoint", fan),
            Step("crop", chip if protocol == "eat" else "whole frames resized to 224²", chip, protocol == "eat"),
            Step("sampling", "every frame with a face" if protocol == "eat" else "every frame",
                 "every frame with a face", protocol == "eat"),
            Step("aggregation", "relation attention over the video (Emotion-FAN)" if fan
                 else "mean of frame probabilities", "relation attention over the video (Emotion-FAN)", fan)]


def csim_steps(arcface: bool, description: str) -> List[Step]:
    crop_ref = "norm_crop 112² on RetinaFace's 5 points"
    return [Step("network", description, "ArcFace (insightface)", arcface),
            Step("weights", "a user export (not verifiable)" if arcface else "dlib's ResNet weights",
                 "insightface's released ArcFace weights", False),
            Step("crop", "norm_crop 112² on 5 points from dlib's 68" if arcface else "dlib's own 150² chip",
                 crop_ref, False),
            Step("aggregation", "mean cosine, source vs every generated frame with a face",
                 "mean cosine, source vs every generated frame", True)]


def clip_step(ours: str, match: bool) -> Step:
    return Step("clips", ours, "MEAD test speakers M003, M030, W009, W015: EAT's fixed 100 or all its 985 clips",
                match)
