"""EDTalk: efficient disentanglement for emotional talking-head synthesis (ECCV 2024), as a package."""
__version__ = "0.1.0"

from .errors import CheckpointError, EDTalkError, FaceNotFoundError, InputError  # noqa: F401


def __getattr__(name):
    # Lazy imports keep `import edtalk` cheap (the CLI's --help does not load torch models).
    if name in ("EDTalk", "EDTalkConfig"):
        from . import model

        return getattr(model, name)
    if name in ("EDTalkPipeline", "PipelineOutput", "Preset", "Weights", "PoseFromSpeech", "ExpressionFromSpeech"):
        from .pipelines import pipeline

        return getattr(pipeline, name)
    if name in ("Audio2Lip", "Audio2LipConfig"):
        from .networks import audio2lip

        return getattr(audio2lip, name)
    if name in ("audio", "video", "config"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'edtalk' has no attribute {name!r}")
