"""edtalk.text_emotion: the offline lexicon reader and the synthetic transcripts of SynthTalk clips."""
import pytest

from edtalk.data import layout
from edtalk.text_emotion import lexicon_vector, read_emotion, synthetic_transcript


@pytest.mark.parametrize("sentence,emotion", [
    ("I am so happy today", "happy"), ("I am furious with you", "angry"), ("I am afraid of the dark", "fear"),
    ("Such gloomy grief", "sad"), ("I am really surprised", "surprised"), ("That smell is gross", "disgusted"),
    ("The meeting is at noon", "neutral")])
def test_lexicon_reader_maps_emotional_sentences(sentence, emotion):
    assert read_emotion(sentence) == emotion


def test_synthetic_transcripts_are_deterministic_and_carry_the_label():
    names = [layout.format_mead_name("M003", e, 1, i) for e in ("happy", "angry", "fear", "surprised") for i in range(4)]
    for name in names:
        text = synthetic_transcript(name)
        assert text == synthetic_transcript(name)
        assert read_emotion(text) == layout.parse_mead_name(name).emotion
    assert len({synthetic_transcript(n) for n in names}) > 8  # several variants per emotion
    assert lexicon_vector("the meeting is at noon").sum() == 0
