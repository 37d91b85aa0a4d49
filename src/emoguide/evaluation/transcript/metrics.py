"""Transcript metrics: WER, DER/JER, word speaker attribution, role accuracy, boundary P/R.

Each function returns counts as well as the rate, so sessions pool into an overall figure
(sum of errors over sum of reference units), and None where the inputs cannot support the metric.

- **WER** (jiwer): both sides normalised by `normalise_words`: Unicode lower case; hyphens and
  dashes become spaces; every character that is not a letter, digit or apostrophe is removed;
  apostrophes at word edges are stripped (``'cause`` -> ``cause``, ``don't`` stays). Numbers are
  not spelled out and fillers are not removed (CHAT fillers are removed by its reader).
- **DER / JER**: `pyannote.metrics` `DiarizationErrorRate` / `JaccardErrorRate` with its optimal
  one-to-one speaker mapping; ``collar`` is pyannote's (the total width of the no-score zone
  centred on every reference boundary: md-eval's ``-c 0.25`` is ``collar=0.5`` here);
  ``skip_overlap`` leaves out regions where reference speakers overlap. The scored region (UEM) is
  from the earliest to the latest turn edge of either side.
- **Attribution**: each hypothesis word's time midpoint is looked up in the reference turns (in a
  gap: the nearest turn); hypothesis speakers are mapped one-to-one onto reference speakers by the
  mapping that maximises agreement (`scipy.optimize.linear_sum_assignment`); a word is right when
  its speaker maps to a reference speaker talking at its midpoint. Unmapped hypothesis speakers
  count as wrong. With ``skip_overlap``, words in overlapped reference speech are left out.
- **Role accuracy**: the same lookup for the reference role (therapist/patient); a word is right
  when its utterance's role is that role. Words whose reference role is unknown are left out.
- **Boundaries**: utterance starts and ends on each side; a one-to-one matching within
  ``tolerance`` seconds (greedy in time order, which is maximal for points on a line); precision =
  matched / hypothesis boundaries, recall = matched / reference boundaries.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import numpy as np
import pandas as pd

from emoguide.errors import require

_DASHES = re.compile(r"[-\u2010-\u2015_/]")


def normalise_words(text: Any) -> list[str]:
    """Words of `text` as compared for WER (see the module docstring)."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return []
    t = unicodedata.normalize("NFKC", str(text)).casefold()
    t = t.replace("\u2019", "'").replace("\u2018", "'")
    t = _DASHES.sub(" ", t)
    t = re.sub(r"[^\w\s']", " ", t)
    return [w for w in (tok.strip("'") for tok in t.split()) if w]


def wer_counts(ref_words: list[str], hyp_words: list[str]) -> dict[str, Any]:
    """Substitutions, deletions, insertions, reference words and WER (None without reference words)."""
    if not ref_words:
        return {"wer": None, "ref_words": 0, "substitutions": None, "deletions": None, "insertions": None}
    jiwer = require("jiwer", "evaluate", "WER of emoguide evaluate transcript")
    if not hyp_words:
        s, d, i = 0, len(ref_words), 0
    else:
        out = jiwer.process_words(" ".join(ref_words), " ".join(hyp_words))
        s, d, i = out.substitutions, out.deletions, out.insertions
    return {"wer": (s + d + i) / len(ref_words), "ref_words": len(ref_words),
            "substitutions": s, "deletions": d, "insertions": i}


# ---------------------------------------------------------------------------------- DER / JER


def _annotation(turns: pd.DataFrame, uri: str):
    core = require("pyannote.core", "evaluate", "DER/JER of emoguide evaluate transcript")
    ann = core.Annotation(uri=uri)
    for k, r in enumerate(turns.itertuples(index=False)):
        s, e = float(r.start), float(r.end)
        if e > s:
            ann[core.Segment(s, e), k] = str(r.speaker)
    return ann


def diarization_errors(ref_turns: pd.DataFrame, hyp_turns: pd.DataFrame, *, collar: float = 0.0,
                       skip_overlap: bool = False, uri: str = "session") -> dict[str, Any]:
    """DER with its components (seconds) and JER; None values when the reference has no speech."""
    require("pyannote.metrics", "evaluate", "DER/JER of emoguide evaluate transcript")
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

    ref = _annotation(ref_turns, uri)
    hyp = _annotation(hyp_turns, uri)
    empty = {"der": None, "jer": None, "scored_s": 0.0, "missed_s": None, "false_alarm_s": None,
             "confusion_s": None}
    if not len(ref):
        return empty
    edges = [s for seg in (ref.get_timeline(), hyp.get_timeline()) for s in seg]
    uem = Timeline([Segment(min(s.start for s in edges), max(s.end for s in edges))], uri=uri)
    der = DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)
    d = der(ref, hyp, uem=uem, detailed=True)
    total = float(d["total"])
    if total <= 0:
        return empty
    jer = JaccardErrorRate(collar=collar, skip_overlap=skip_overlap)
    j = float(jer(ref, hyp, uem=uem))
    return {
        "der": float(d["diarization error rate"]),
        "jer": j,
        "scored_s": total,
        "missed_s": float(d["missed detection"]),
        "false_alarm_s": float(d["false alarm"]),
        "confusion_s": float(d["confusion"]),
    }


# ----------------------------------------------------------------------- word-level attribution


def _reference_at(mids: np.ndarray, turns: pd.DataFrame, column: str) -> list[frozenset]:
    """Per midpoint: the set of `column` values of the reference turns containing it; in a gap,
    the nearest turn's value."""
    ts = turns["start"].to_numpy(float)
    te = turns["end"].to_numpy(float)
    vals = turns[column].to_numpy(object)
    out: list[frozenset] = []
    if len(turns) == 0:
        return [frozenset()] * len(mids)
    for m in mids:
        inside = (ts <= m) & (m <= te)
        if inside.any():
            out.append(frozenset(v for v in vals[inside] if v is not None and not pd.isna(v)))
        else:
            dist = np.maximum(ts - m, 0) + np.maximum(m - te, 0)
            v = vals[int(np.argmin(dist))]
            out.append(frozenset() if v is None or pd.isna(v) else frozenset([v]))
    return out


def speaker_attribution(ref_turns: pd.DataFrame, hyp_words: pd.DataFrame, *,
                        skip_overlap: bool = False) -> dict[str, Any]:
    """Share of hypothesis words given to the right speaker (module docstring); mapping included."""
    from scipy.optimize import linear_sum_assignment

    if len(hyp_words) == 0 or len(ref_turns) == 0:
        return {"attribution": None, "attribution_words": 0, "speaker_map": {}}
    mids = (hyp_words["start"].to_numpy(float) + hyp_words["end"].to_numpy(float)) / 2.0
    truth = _reference_at(mids, ref_turns, "speaker")
    hyp = hyp_words["speaker"].astype(str).to_numpy()
    keep = [i for i, t in enumerate(truth) if t and not (skip_overlap and len(t) > 1)]
    if not keep:
        return {"attribution": None, "attribution_words": 0, "speaker_map": {}}
    h_labels = sorted({hyp[i] for i in keep})
    r_labels = sorted({s for i in keep for s in truth[i]})
    counts = np.zeros((len(h_labels), len(r_labels)))
    for i in keep:
        for s in truth[i]:
            counts[h_labels.index(hyp[i]), r_labels.index(s)] += 1
    rows, cols = linear_sum_assignment(-counts)
    mapping = {h_labels[r]: r_labels[c] for r, c in zip(rows, cols)}
    correct = sum(1 for i in keep if mapping.get(hyp[i]) in truth[i])
    return {"attribution": correct / len(keep), "attribution_words": len(keep), "speaker_map": mapping}


def role_accuracy(ref_turns: pd.DataFrame, hyp_words: pd.DataFrame) -> dict[str, Any]:
    """Share of hypothesis words whose utterance role is the reference's role at that time."""
    turns = ref_turns[ref_turns["role"].isin(["therapist", "patient"])]
    if len(hyp_words) == 0 or len(turns) == 0:
        return {"role_accuracy": None, "role_words": 0}
    mids = (hyp_words["start"].to_numpy(float) + hyp_words["end"].to_numpy(float)) / 2.0
    # Words are looked up among all turns, so speech of a role-less speaker is not forced onto a role.
    truth = _reference_at(mids, ref_turns, "role")
    roles = hyp_words["role"].astype(object).to_numpy()
    keep = [i for i, t in enumerate(truth) if len(t) == 1]
    if not keep:
        return {"role_accuracy": None, "role_words": 0}
    correct = sum(1 for i in keep if roles[i] in truth[i])
    return {"role_accuracy": correct / len(keep), "role_words": len(keep)}


# ------------------------------------------------------------------------------------ boundaries


def match_points(ref: list[float], hyp: list[float], tolerance: float) -> int:
    """Size of a maximum one-to-one matching of points within `tolerance` (greedy, sorted)."""
    r, h = sorted(ref), sorted(hyp)
    i = j = n = 0
    while i < len(r) and j < len(h):
        if abs(r[i] - h[j]) <= tolerance + 1e-9:
            n += 1
            i += 1
            j += 1
        elif h[j] < r[i]:
            j += 1
        else:
            i += 1
    return n


def boundaries(turns: pd.DataFrame, *, ends: bool = True) -> list[float]:
    pts = turns["start"].astype(float).tolist()
    if ends:
        pts += turns["end"].astype(float).tolist()
    return pts


def boundary_scores(ref_turns: pd.DataFrame, hyp_turns: pd.DataFrame, *, tolerance: float = 0.5,
                    ends: bool = True) -> dict[str, Any]:
    """Utterance boundary precision and recall within `tolerance` s (ends left out when `ends` is False)."""
    r, h = boundaries(ref_turns, ends=ends), boundaries(hyp_turns, ends=ends)
    n = match_points(r, h, tolerance)
    return {
        "boundary_precision": n / len(h) if h else None,
        "boundary_recall": n / len(r) if r else None,
        "boundaries_matched": n,
        "boundaries_ref": len(r),
        "boundaries_hyp": len(h),
    }
