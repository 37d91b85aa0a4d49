"""Words + diarization segments -> utterances (pure functions, no models).

Each word goes to the diarization segment it overlaps most in time (ties, and words that overlap
no segment, go to the nearest segment by midpoint), so a turn boundary falls between words, not
between ASR segments. Consecutive words of one speaker form an utterance, split where the pause
between two words is longer than `max_pause_s`, and after a sentence end (. ? !) followed by a
pause of at least `sentence_pause_s`; an utterance already longer than `long_utterance_s` is also
cut at its next sentence end, pause or not. Speakers are renamed A, B, ... in order of first
speech.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd

from emoguide.speech.asr import Word, words_to_frame
from emoguide.speech.diarize import Segment, segments_to_frame

UTTERANCE_COLUMNS = ["index", "start", "end", "speaker", "text", "asr_confidence", "n_words"]

#: A sentence end followed by at least this pause (s) ends an utterance.
SENTENCE_PAUSE_S = 0.3
#: An utterance longer than this (s) ends at its next sentence end, pause or not.
LONG_UTTERANCE_S = 20.0
#: A sentence cut never leaves an utterance shorter than this (s): it joins its neighbour of the
#: same speaker (two face frames at the default 5 fps, and enough audio for the voice model).
MIN_SENTENCE_UTTERANCE_S = 0.5

_SPACE_BEFORE = re.compile(r"\s+([,.;:!?%)\]}»”’…])")
_SPACE_AFTER = re.compile(r"([(\[{«“])\s+")
_SPACES = re.compile(r"\s+")


def _words_frame(words: Sequence[Word] | pd.DataFrame) -> pd.DataFrame:
    df = words.copy() if isinstance(words, pd.DataFrame) else words_to_frame(list(words))
    if "probability" not in df.columns:
        df["probability"] = np.nan
    return df.reset_index(drop=True)


def _segments_frame(segments: Sequence[Segment] | pd.DataFrame) -> pd.DataFrame:
    df = segments.copy() if isinstance(segments, pd.DataFrame) else segments_to_frame(list(segments))
    return df.reset_index(drop=True)


def speaker_letters(n: int) -> list[str]:
    """A, B, ..., Z, AA, AB, ..."""
    out = []
    for i in range(n):
        s, k = "", i
        while True:
            s = chr(ord("A") + k % 26) + s
            k = k // 26 - 1
            if k < 0:
                break
        out.append(s)
    return out


def clean_text(text: str) -> str:
    """Join-artefact cleanup: no space before , . ? ! etc., none inside brackets, single spaces."""
    text = _SPACES.sub(" ", str(text)).strip()
    text = _SPACE_BEFORE.sub(r"\1", text)
    text = _SPACE_AFTER.sub(r"\1", text)
    return text


def assign_speakers(
    words: Sequence[Word] | pd.DataFrame,
    segments: Sequence[Segment] | pd.DataFrame,
    default: str = "SPEAKER_01",
    block: int = 4096,
) -> list[str]:
    """The diarized speaker of each word: maximum time overlap; ties/no overlap -> nearest segment.

    "Nearest" is the smallest distance from the word's midpoint to the segment (0 when inside),
    then the segment whose centre is closest. With no segments at all every word gets `default`.
    """
    w = _words_frame(words)
    s = _segments_frame(segments)
    if len(w) == 0:
        return []
    if len(s) == 0:
        return [default] * len(w)
    ws, we = w["start"].to_numpy(float), w["end"].to_numpy(float)
    we = np.maximum(we, ws)
    ss, se = s["start"].to_numpy(float), s["end"].to_numpy(float)
    centre = (ss + se) / 2.0
    labels = s["speaker"].astype(str).to_numpy()
    out = np.empty(len(w), dtype=object)
    for lo in range(0, len(w), block):  # blocks keep memory flat on long sessions
        a, b = ws[lo : lo + block, None], we[lo : lo + block, None]
        overlap = np.clip(np.minimum(b, se[None, :]) - np.maximum(a, ss[None, :]), 0.0, None)
        mid = (a + b) / 2.0
        dist = np.maximum(ss[None, :] - mid, 0.0) + np.maximum(mid - se[None, :], 0.0)
        cdist = np.abs(centre[None, :] - mid)
        best_ov = overlap.max(axis=1, keepdims=True)
        # Candidates: segments with the maximum overlap (when > 0), else all segments.
        cand = np.where(best_ov > 1e-9, np.isclose(overlap, best_ov, rtol=0, atol=1e-6), True)
        # Among candidates: nearest by midpoint distance, then by centre distance.
        score = np.where(cand, dist * 1e6 + cdist, np.inf)
        out[lo : lo + block] = labels[np.argmin(score, axis=1)]
    return list(out)


def label_words(words: Sequence[Word] | pd.DataFrame, segments: Sequence[Segment] | pd.DataFrame) -> pd.DataFrame:
    """The words table (start, end, text, probability) with a diarized `speaker` column."""
    w = _words_frame(words).sort_values(["start", "end"], kind="stable").reset_index(drop=True)
    w["speaker"] = pd.Series(assign_speakers(w, segments), dtype="string")
    return w


def relabel_by_first_speech(speakers: Sequence[str]) -> dict[str, str]:
    order: list[str] = []
    for s in speakers:
        if s not in order:
            order.append(s)
    return dict(zip(order, speaker_letters(len(order))))


def empty_turns() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "index": pd.Series([], dtype="int64"),
            "start": pd.Series([], dtype="float64"),
            "end": pd.Series([], dtype="float64"),
            "speaker": pd.Series([], dtype="string"),
            "text": pd.Series([], dtype="string"),
            "asr_confidence": pd.Series([], dtype="float64"),
            "n_words": pd.Series([], dtype="int64"),
        }
    )


def words_to_utterances(
    words: Sequence[Word] | pd.DataFrame,
    segments: Sequence[Segment] | pd.DataFrame,
    max_pause_s: float = 1.5,
    sentence_pause_s: float = SENTENCE_PAUSE_S,
    long_utterance_s: float = LONG_UTTERANCE_S,
    min_sentence_utterance_s: float = MIN_SENTENCE_UTTERANCE_S,
) -> pd.DataFrame:
    """Speaker turns from words and diarization segments.

    A new utterance starts where the speaker changes, after a pause longer than `max_pause_s`,
    after a sentence end followed by a pause of at least `sentence_pause_s`, and at a sentence
    end once the utterance is longer than `long_utterance_s`; a sentence cut that would leave a
    piece shorter than `min_sentence_utterance_s` is not made.

    Columns: index, start, end, speaker (A, B, ... by order of first speech), text,
    asr_confidence (mean word probability), n_words.
    """
    if max_pause_s <= 0:
        raise ValueError("max_pause_s must be > 0")
    w = label_words(words, segments)
    w = w[w["text"].astype(str).str.strip() != ""].reset_index(drop=True)
    if len(w) == 0:
        return empty_turns()
    mapping = relabel_by_first_speech(w["speaker"].astype(str).tolist())
    spk = w["speaker"].astype(str).map(mapping).to_numpy()
    starts = w["start"].to_numpy(float)
    ends = np.maximum(w["end"].to_numpy(float), starts)
    # A new utterance where the speaker changes or the pause since the previous word is too long.
    prev_end = np.maximum.accumulate(ends)
    new = np.ones(len(w), dtype=bool)
    if len(w) > 1:
        from emoguide.speech.speakers import ends_sentence

        gap = starts[1:] - prev_end[:-1]
        sent = np.array([ends_sentence(t) for t in w["text"].astype(str).tolist()[:-1]], dtype=bool)
        new[1:] = (spk[1:] != spk[:-1]) | (gap > max_pause_s) | (sent & (gap >= sentence_pause_s))
        t0 = starts[0]
        for i in range(1, len(w)):  # long run-on stretches: cut at the next sentence end
            if new[i]:
                t0 = starts[i]
            elif sent[i - 1] and prev_end[i - 1] - t0 > long_utterance_s:
                new[i] = True
                t0 = starts[i]
        # A sentence cut that leaves a piece shorter than `min_sentence_utterance_s` ("Really."
        # with a zero-length Whisper timing) undoes itself: the piece joins its neighbour of
        # the same speaker (the previous one, else the next). Such a piece holds no face frame
        # and too little audio for the voice model; speaker changes and long pauses still cut.
        hard = np.zeros(len(w), dtype=bool)
        hard[0] = True
        hard[1:] = (spk[1:] != spk[:-1]) | (gap > max_pause_s)
        firsts = list(np.flatnonzero(new)) + [len(w)]
        for a, b in zip(firsts[:-1], firsts[1:]):
            if not new[a]:  # already joined to its previous piece
                continue
            if float(prev_end[b - 1] - starts[a]) >= min_sentence_utterance_s:
                continue
            if not hard[a]:
                new[a] = False
            elif b < len(w) and not hard[b]:
                new[b] = False
    group = np.cumsum(new) - 1
    w = w.assign(_g=group, _spk=spk, end=ends)
    rows = []
    for g, part in w.groupby("_g", sort=True):
        probs = part["probability"].to_numpy(float)
        conf = float(np.nanmean(probs)) if np.isfinite(probs).any() else np.nan
        rows.append(
            {
                "index": int(g),
                "start": float(part["start"].iloc[0]),
                "end": float(part["end"].max()),
                "speaker": str(part["_spk"].iloc[0]),
                "text": clean_text(" ".join(part["text"].astype(str).str.strip())),
                "asr_confidence": conf,
                "n_words": int(len(part)),
            }
        )
    out = pd.DataFrame(rows, columns=UTTERANCE_COLUMNS)
    return out.astype(
        {
            "index": "int64",
            "start": "float64",
            "end": "float64",
            "speaker": "string",
            "text": "string",
            "asr_confidence": "float64",
            "n_words": "int64",
        }
    )
