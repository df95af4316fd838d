#!/usr/bin/env python
"""Write the bundled SynthTalk demo inputs, byte for byte the same on every run:

    examples/synthtalk_face.png    one 64x64 frame (the size the SynthTalk model is trained at) of an
                                   identity that is in no training tree: frontal, neutral, mouth closed
    examples/synthtalk_speech.wav  4 s of SynthTalk speech in that identity's voice (16 kHz mono PCM16,
                                   100 frames x 640 samples)

`python demo.py` (no arguments) drives the bundled model (checkpoints/synthtalk) with them.

    python scripts/make_synthtalk_examples.py [--out examples]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FACE_NAME, SPEECH_NAME = "synthtalk_face.png", "synthtalk_speech.wav"
FRAME_SIZE = 64  # the SynthTalk training trees' frame size (train_synthtalk_model.py: --size 64)
SPEECH_FRAMES = 100  # 4 s at 25 fps
# Training trees seed their identities with [seed, kind (1 MEAD, 2 HDTF), speaker, 0] and seed 0 or 1;
# a first entry of 2024 keeps this identity out of every one of them.
IDENTITY_SEED = [2024, 11, 1]
SPEECH_SEED = [2024, 11, 2]


def bundled_identity():
    from edtalk.data.synthtalk import sample_identity

    return sample_identity(np.random.default_rng(IDENTITY_SEED))


def neutral_face(identity, size: int = FRAME_SIZE) -> np.ndarray:
    """One uint8 [S,S,3] frame: frontal pose, neutral expression, mouth closed, eyes open."""
    from edtalk.data.synthtalk import render_frames

    mouth = np.zeros((1, 3), np.float32)
    pose = np.array([[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]], np.float32)
    expression = np.zeros((1, 6), np.float32)
    blink = np.zeros(1, np.float32)
    frames, _ = render_frames(identity, mouth, pose, expression, blink, size=size)
    return frames[0]


def speech(identity, frames: int = SPEECH_FRAMES) -> np.ndarray:
    """float32 [frames·640] at 16 kHz: SynthTalk's syllable process voiced by `identity`."""
    from edtalk.data.synthtalk import sample_mouth, synthesize_audio

    mouth_rng, voice_rng = np.random.default_rng(SPEECH_SEED).spawn(2)
    return synthesize_audio(sample_mouth(mouth_rng, frames).astype(np.float32), identity, voice_rng)


def write_examples(out: Path) -> dict:
    import soundfile as sf
    from PIL import Image

    from edtalk.data.layout import SAMPLE_RATE

    out.mkdir(parents=True, exist_ok=True)
    identity = bundled_identity()
    face_path, speech_path = out / FACE_NAME, out / SPEECH_NAME
    Image.fromarray(neutral_face(identity)).save(face_path, optimize=True)
    sf.write(str(speech_path), speech(identity), SAMPLE_RATE, subtype="PCM_16")
    return {"face": face_path, "speech": speech_path}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "examples", help="folder (default: examples/)")
    args = parser.parse_args()
    for name, path in write_examples(args.out).items():
        print(f"{name}: {path} ({path.stat().st_size / 1024:.1f} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
