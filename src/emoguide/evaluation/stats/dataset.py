"""The paper's Table 1, Figure 3 and Figure 10 for the user's own corpus, and the notes that say
where each number came from.

* `table1(corpus)`: `statistic, value` rows; each statistic is defined in `TABLE1_DEFINITIONS`
  (the paper does not define "turns" or "vocabulary", so the definitions here are ours).
* `corpus_figures(corpus, out_dir)`: Figure 3 (duration histogram, sentiment by role, voice vs face
  valence-arousal in 2-D) and Figure 10 (|dV| vs |dA| with the threshold), each as PNG and PDF.
  A figure the corpus cannot support is skipped, with a note saying what is missing.
* `notes(corpus)`: provenance and choices (duration sources, which backend made each channel,
  which dimensions the dissonance compared, stages that failed or warned), read from the data.

Durations: a session's duration is its media file's duration from the probe recorded in
`source.json` at ingest; a session without one (a transcript) uses the last utterance's end
(the start when no end is known). `table1` counts how many sessions took each route.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoguide.corpus import Corpus
from emoguide.corpus.schema import is_null

#: What each Table 1 statistic means (quoted in the report).
TABLE1_DEFINITIONS: dict[str, str] = {
    "videos": "sessions in the corpus with an utterance table (the paper's unit: one video, one session)",
    "sessions_with_media": "sessions ingested from a media file (the rest came from transcripts)",
    "hours": "total duration of all sessions, in hours",
    "mean_minutes": "mean session duration, in minutes",
    "median_minutes": "median session duration, in minutes",
    "mean_turns": (
        "mean number of turns per session; a turn is a maximal run of consecutive utterances "
        "(ordered by start) by the same speaker (the role when no speaker label is known)"
    ),
    "mean_utterances": "mean number of utterances per session",
    "vocabulary_size": (
        "distinct case-folded words over all utterance texts; a word is a run of letters with "
        "internal apostrophes (don't, therapist's; a typographic apostrophe counts as '); numbers and "
        "punctuation are not words"
    ),
    "speakers": "median number of distinct speaker labels per session (null when no session has labels)",
    "speakers_min": "fewest distinct speaker labels in a session",
    "speakers_max": "most distinct speaker labels in a session",
    "durations_from_probe": "sessions whose duration is the media probe's (source.json)",
    "durations_from_utterances": "sessions whose duration is the last utterance's end (no media probe)",
}

# Hand-written on purpose: a regex keeps Table 1 free of a tokenizer dependency (nltk, spaCy) in
# the base install, and its definition fits in one line of the report.
_WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")

FIGURE_NAMES = {
    "duration": "fig3_duration_histogram",
    "sentiment": "fig3_sentiment_by_role",
    "valence_arousal": "fig3_voice_face_valence_arousal",
    "abs_difference": "fig10_abs_difference",
}
FORMATS = (".png", ".pdf")


# --------------------------------------------------------------------------- per-session numbers


def _probe_duration(source: dict[str, Any]) -> float | None:
    probe = source.get("probe") if isinstance(source, dict) else None
    if isinstance(probe, dict):
        d = probe.get("duration_s")
        if d is not None and not is_null(d) and float(d) > 0:
            return float(d)
    return None


def _utterance_duration(utt: pd.DataFrame) -> float | None:
    ends = pd.to_numeric(utt["end"], errors="coerce")
    starts = pd.to_numeric(utt["start"], errors="coerce")
    last = pd.concat([ends, starts]).max()
    return None if pd.isna(last) else float(last)


def _turns(utt: pd.DataFrame) -> int:
    if utt.empty:
        return 0
    df = utt.sort_values(["start", "index"], kind="stable")
    who = df["speaker"].astype("string").fillna(df["role"].astype("string")).fillna("?")
    values = who.to_numpy(object)
    return int(1 + np.sum(values[1:] != values[:-1]))


def session_table(corpus: Corpus) -> pd.DataFrame:
    """One row per session: duration (s) and its source, utterances, turns, speakers."""
    rows = []
    for session in corpus.sessions():
        utt = session.read_utterances()
        source = session.read_source()
        probe = _probe_duration(source)
        duration, how = (probe, "probe") if probe is not None else (_utterance_duration(utt), "utterances")
        speakers = utt["speaker"].dropna().astype(str).nunique()
        rows.append({
            "session_id": session.id,
            "has_media": source.get("kind") == "media" if isinstance(source, dict) else False,
            "duration_s": duration,
            "duration_source": how if duration is not None else None,
            "utterances": int(len(utt)),
            "turns": _turns(utt),
            "speakers": int(speakers) if speakers else None,
        })
    return pd.DataFrame(rows, columns=["session_id", "has_media", "duration_s", "duration_source",
                                       "utterances", "turns", "speakers"])


def vocabulary(texts: pd.Series) -> set[str]:
    words: set[str] = set()
    for text in texts.dropna().astype(str):
        words.update(w.casefold().replace("\u2019", "'") for w in _WORD.findall(text))
    return words


# --------------------------------------------------------------------------- Table 1


def _num(value: Any) -> float | None:
    return None if value is None or is_null(value) else float(value)


def table1(corpus: Corpus) -> pd.DataFrame:
    """The paper's Table 1 for `corpus`: `statistic, value` (null where unavailable, never 0).

    The rows are the keys of `TABLE1_DEFINITIONS`, in that order."""
    sessions = session_table(corpus)
    dur = pd.to_numeric(sessions["duration_s"], errors="coerce").dropna()
    spk = pd.to_numeric(sessions["speakers"], errors="coerce").dropna()
    utts = corpus.utterances()
    values: dict[str, float | None] = {
        "videos": float(len(sessions)),
        "sessions_with_media": float(sessions["has_media"].sum()) if len(sessions) else 0.0,
        "hours": float(dur.sum() / 3600.0) if len(dur) else None,
        "mean_minutes": float(dur.mean() / 60.0) if len(dur) else None,
        "median_minutes": float(dur.median() / 60.0) if len(dur) else None,
        "mean_turns": _num(sessions["turns"].mean()) if len(sessions) else None,
        "mean_utterances": _num(sessions["utterances"].mean()) if len(sessions) else None,
        "vocabulary_size": float(len(vocabulary(utts["text"]))) if len(utts) else None,
        "speakers": float(spk.median()) if len(spk) else None,
        "speakers_min": float(spk.min()) if len(spk) else None,
        "speakers_max": float(spk.max()) if len(spk) else None,
        "durations_from_probe": float((sessions["duration_source"] == "probe").sum()),
        "durations_from_utterances": float((sessions["duration_source"] == "utterances").sum()),
    }
    return pd.DataFrame({"statistic": list(TABLE1_DEFINITIONS),
                         "value": pd.Series([values[k] for k in TABLE1_DEFINITIONS], dtype="float64")})


# --------------------------------------------------------------------------- figures


def _patients(utts: pd.DataFrame) -> pd.DataFrame:
    return utts[utts["role"].astype("string") == "patient"]


def _va_pairs(df: pd.DataFrame, channel: str) -> np.ndarray:
    v = pd.to_numeric(df[f"{channel}_valence"], errors="coerce").to_numpy(float, na_value=np.nan)
    a = pd.to_numeric(df[f"{channel}_arousal"], errors="coerce").to_numpy(float, na_value=np.nan)
    ok = ~np.isnan(v) & ~np.isnan(a)
    return np.column_stack([v[ok], a[ok]])


def figure_availability(corpus: Corpus, utts: pd.DataFrame | None = None) -> dict[str, str | None]:
    """Per figure (keys of FIGURE_NAMES): None when it can be drawn, else what the corpus lacks."""
    utts = corpus.utterances() if utts is None else utts
    out: dict[str, str | None] = {}
    sessions = session_table(corpus)
    out["duration"] = None if sessions["duration_s"].notna().any() else "no session has a duration (no probe, no timed utterances)"
    sent = pd.to_numeric(utts["text_sentiment"], errors="coerce")
    out["sentiment"] = None if sent.notna().any() else "no text_sentiment values (run the text_affect stage)"
    pat = _patients(utts)
    have = {ch: len(_va_pairs(pat, ch)) for ch in ("voice", "face")}
    if not any(have.values()):
        out["valence_arousal"] = "no patient utterance has both valence and arousal from voice or face"
    else:
        out["valence_arousal"] = None
    dv = _va_pairs(pat, "voice")
    both = 0
    if len(pat):
        vals = {f"{ch}_{d}": pd.to_numeric(pat[f"{ch}_{d}"], errors="coerce").notna().to_numpy()
                for ch in ("voice", "face") for d in ("valence", "arousal")}
        both = int(np.sum(vals["voice_valence"] & vals["voice_arousal"] & vals["face_valence"] & vals["face_arousal"]))
    out["abs_difference"] = None if both else (
        "no patient utterance has valence and arousal on both voice and face"
        + (" (voice valence unavailable)" if len(pat) and not len(dv) and pat["voice_arousal"].notna().any() else "")
    )
    return out


def _save_both(fig, stem: Path) -> list[Path]:
    from emoguide.evaluation.figures import _save

    return [_save(fig, stem.with_suffix(ext)) for ext in FORMATS]


def duration_histogram(sessions: pd.DataFrame, stem: Path) -> list[Path]:
    """Figure 3 (left): histogram of session durations in minutes, mean and median marked."""
    from emoguide.evaluation.figures import _new_figure

    minutes = pd.to_numeric(sessions["duration_s"], errors="coerce").dropna().to_numpy(float) / 60.0
    fig = _new_figure((5.2, 3.6))
    ax = fig.subplots()
    bins = min(30, max(5, int(np.ceil(np.sqrt(len(minutes)))) * 2))
    ax.hist(minutes, bins=bins, color="tab:blue", alpha=0.7, edgecolor="white")
    ax.axvline(float(np.mean(minutes)), color="k", ls="--", lw=1, label=f"mean {np.mean(minutes):.1f} min")
    ax.axvline(float(np.median(minutes)), color="tab:red", ls=":", lw=1.5, label=f"median {np.median(minutes):.1f} min")
    ax.set_xlabel("session duration (minutes)")
    ax.set_ylabel("sessions")
    ax.set_title(f"Duration of {len(minutes)} sessions")
    ax.legend(fontsize=8)
    return _save_both(fig, stem)


def valence_arousal_2d(utts: pd.DataFrame, stem: Path) -> list[Path]:
    """Figure 3 (right): voice and face (valence, arousal) per patient utterance in the V-A plane,
    with density contours (Gaussian KDE, scipy) where a channel has enough points."""
    from emoguide.dissonance_variants import channel_source
    from emoguide.evaluation.figures import CHANNEL_COLOURS, _new_figure

    pat = _patients(utts)
    fig = _new_figure((5.4, 5.0))
    ax = fig.subplots()
    grid = np.linspace(-1, 1, 81)
    gx, gy = np.meshgrid(grid, grid)
    for ch in ("voice", "face"):
        xy = _va_pairs(pat, ch)
        if not len(xy):
            continue
        colour = CHANNEL_COLOURS[ch]
        src = channel_source(pat, ch)
        label = f"{ch} (n={len(xy)})" + (" approx" if src and "approx" in src.lower() else "")
        ax.scatter(xy[:, 0], xy[:, 1], s=10, alpha=0.45, color=colour, label=label)
        ax.scatter([xy[:, 0].mean()], [xy[:, 1].mean()], marker="X", s=80, color=colour, edgecolor="k")
        if len(xy) >= 10 and np.all(np.std(xy, axis=0) > 1e-6):
            from scipy.stats import gaussian_kde

            dens = gaussian_kde(xy.T)(np.vstack([gx.ravel(), gy.ravel()])).reshape(gx.shape)
            ax.contour(gx, gy, dens, levels=4, colors=colour, linewidths=0.8, alpha=0.8)
    ax.axhline(0, color="0.6", lw=0.6)
    ax.axvline(0, color="0.6", lw=0.6)
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.set_aspect("equal")
    ax.set_xlabel("valence")
    ax.set_ylabel("arousal")
    ax.set_title("Voice vs face valence-arousal\n(patient utterances; X = channel mean)", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    return _save_both(fig, stem)


def corpus_figures(corpus: Corpus, out_dir: str | Path, skipped: list[str] | None = None) -> list[Path]:
    """Write Figures 3 and 10 (PNG and PDF each) into `out_dir`; return the files written.

    A figure the corpus cannot support is skipped; the reason is appended to `skipped` (when given)
    as "<figure>: <what is missing>" and is also among `notes(corpus)`."""
    from emoguide.evaluation.figures import abs_difference_plot, sentiment_by_role

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    utts = corpus.utterances()
    avail = figure_availability(corpus, utts)
    written: list[Path] = []
    for key, reason in avail.items():
        if reason is not None:
            if skipped is not None:
                skipped.append(f"{FIGURE_NAMES[key]} skipped: {reason}")
            continue
        stem = out / FIGURE_NAMES[key]
        if key == "duration":
            written += duration_histogram(session_table(corpus), stem)
        elif key == "sentiment":
            for ext in FORMATS:
                written.append(sentiment_by_role(utts, stem.with_suffix(ext)).path)
        elif key == "valence_arousal":
            written += valence_arousal_2d(utts, stem)
        elif key == "abs_difference":
            threshold = float(corpus.settings.dissonance.threshold)
            for ext in FORMATS:
                written.append(abs_difference_plot(utts, stem.with_suffix(ext), threshold).path)
    return written


# --------------------------------------------------------------------------- notes


def _count_phrase(counter: Counter, total: int, what: str) -> str:
    parts = [f"{name} ({n} of {total})" for name, n in counter.most_common()]
    return f"{what}: " + "; ".join(parts)


def notes(corpus: Corpus) -> list[str]:
    """Provenance and choices behind Table 1 and the figures, one sentence each."""
    out: list[str] = []
    sessions = session_table(corpus)
    if sessions.empty:
        return ["the corpus has no sessions with utterances: Table 1 and the figures are empty"]
    n_probe = int((sessions["duration_source"] == "probe").sum())
    n_utt = int((sessions["duration_source"] == "utterances").sum())
    out.append(f"durations: {n_probe} session(s) from the media probe (source.json), "
               f"{n_utt} from the last utterance's end (no media)")
    utts = corpus.utterances()
    pat = _patients(utts)
    for ch in ("voice", "face", "text"):
        src = utts[f"{ch}_source"].dropna().astype(str)
        value_cols = [c for c in (f"{ch}_valence", f"{ch}_arousal", f"{ch}_label") if c in utts.columns]
        has_value = utts[value_cols].notna().any(axis=1)
        if len(src):
            out.append(_count_phrase(Counter(src), len(utts), f"{ch} values from"))
        elif has_value.any():
            out.append(f"{ch} values on {int(has_value.sum())} of {len(utts)} utterances: source not recorded")
        else:
            out.append(f"{ch}: no values in the corpus")
    # A channel with arousal but no valence (the prosody backend) can only be compared on arousal.
    if len(pat):
        va = pd.to_numeric(pat["voice_valence"], errors="coerce").notna()
        aa = pd.to_numeric(pat["voice_arousal"], errors="coerce").notna()
        compared = pat["dissonance_compared"].dropna().astype(str)
        if aa.any() and not va.any():
            src = ",".join(sorted(set(pat["voice_source"].dropna().astype(str)))) or "unknown backend"
            only_arousal = len(compared) > 0 and set(compared) == {"arousal"}
            out.append(f"voice valence unavailable ({src})" + (": dissonance compared arousal only" if only_arousal else ""))
        if len(compared):
            out.append(_count_phrase(Counter(compared), len(pat), "dissonance compared dimensions"))
        methods = pat["dissonance_method"].dropna().astype(str)
        if len(methods):
            out.append(_count_phrase(Counter(methods), len(pat), "dissonance method"))
    settings = corpus.settings.dissonance
    out.append(f"Figure 10 draws the raw threshold T = {settings.threshold:g} (corpus setting; method {settings.method})")
    for key, reason in figure_availability(corpus, utts).items():
        if reason is not None:
            out.append(f"{FIGURE_NAMES[key]} skipped: {reason}")
    out.extend(_stage_notes(corpus))
    return out


def _stage_notes(corpus: Corpus) -> list[str]:
    """Stages run (from each session's stages.json): backends used, failures, warnings."""
    runs: Counter = Counter()
    failed: list[str] = []
    warned: Counter = Counter()
    backends: dict[str, set[str]] = {}
    for session in corpus.sessions():
        for stage, rec in session.stages.load().items():
            if not isinstance(rec, dict):
                continue
            runs[stage] += 1
            if rec.get("status") != "done":
                failed.append(f"{session.id}/{stage}: {rec.get('error', rec.get('status'))}")
            if rec.get("warnings"):
                warned[stage] += len(rec["warnings"])
            for k, v in (rec.get("backends") or {}).items():
                backends.setdefault(stage, set()).add(f"{k}={v}" if not isinstance(v, (dict, list)) else f"{k}={v!s}"[:80])
    out = []
    if runs:
        out.append("stages recorded: " + ", ".join(f"{s} ({n} session(s))" for s, n in sorted(runs.items())))
    for stage, names in sorted(backends.items()):
        out.append(f"{stage} backends: " + ", ".join(sorted(names)))
    if failed:
        out.append("failed stages: " + "; ".join(failed))
    for stage, n in sorted(warned.items()):
        out.append(f"{stage}: {n} warning(s) in stages.json")
    return out
