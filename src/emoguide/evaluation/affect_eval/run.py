"""Compare the face_* and voice_* channels with labelled items.

**Channel value of an item.** An item with ``start``/``end`` takes the session's utterances whose
midpoint lies in ``[start, end]``; an item without times takes all of the session's utterances.
Over those utterances: valence and arousal are the means of the non-null values; the label is the
arg-max of the mean ``<channel>_probs`` (or, without probabilities, the most frequent
``<channel>_label``). A session whose utterances carry no face values (a silent video has no
utterances at all) falls back, for the face channel, to the confirmed face rows of
``faces.parquet`` in the item's span (``track_id >= 0``), aggregated the same way; the report says
which (``face_from``: ``utterances`` or ``faces``). Items where a channel has no value are counted
(``n_covered`` < ``n_items``) and left out of that channel's figures; nothing is imputed.

**Label mapping.** Both sides go through `labels.canonical_label`. The face backends' vocabulary
is angry, contempt, disgust, fear, happy, neutral, sad, surprise; a reference ``calm`` (RAVDESS)
has no face class and is compared as ``neutral``. The voice channel has no categorical output in
the default backend (``voice_label`` is null), so its accuracy is null.

**Figures per channel.** accuracy and macro-F1 (over the classes in the reference or the
predictions, as scikit-learn's default); arousal AUC: P(channel arousal of a high-arousal item >
that of a low-arousal item), ties 1/2 (high = happy, angry, fear; low = neutral, calm, sad, or the
``arousal_group`` column); valence AUC and separation: the same for positive (happy) vs negative
(angry, disgust, fear, sad, contempt) items, and the difference of their mean valences; Pearson and
Spearman r of channel valence/arousal against dimensional labels. Null when a group is empty or
fewer than 3 pairs exist.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoguide.corpus import Corpus
from emoguide.corpus.atomic import read_parquet, write_json
from emoguide.errors import InputError
from emoguide.evaluation.affect_eval.labels import VALENCE_GROUP, canonical_label, labels_from_names, read_labels
from emoguide.evaluation.transcript.references import match_key
from emoguide.evaluation.transcript.run import _clean, session_keys

CHANNELS = ("face", "voice")
#: Reference labels with no class of their own in a channel, compared as another label.
LABEL_AS = {"face": {"calm": "neutral"}, "voice": {"calm": "neutral"}}
METRIC_COLUMNS = [
    "channel", "n_items", "n_covered", "n_labelled", "accuracy", "macro_f1",
    "arousal_auc", "n_high", "n_low", "arousal_mean_high", "arousal_mean_low",
    "valence_auc", "n_positive", "n_negative", "valence_mean_positive", "valence_mean_negative",
    "valence_separation", "valence_pearson", "valence_spearman", "arousal_pearson", "arousal_spearman",
    "source",
]


@dataclass
class AffectEvaluation:
    items: pd.DataFrame
    metrics: list[dict[str, Any]]
    confusion: dict[str, dict[str, dict[str, int]]]
    unmatched_labels: list[str]
    unlabelled_sessions: list[str]
    warnings: list[str] = field(default_factory=list)
    csv_path: Path | None = None
    items_path: Path | None = None
    json_path: Path | None = None


# ---------------------------------------------------------------------------------- statistics


def auc(pos: list[float], neg: list[float]) -> float | None:
    """Mann-Whitney AUC: P(pos > neg) + 0.5 P(pos == neg); None when a group is empty."""
    if not pos or not neg:
        return None
    p = np.asarray(pos, float)[:, None]
    n = np.asarray(neg, float)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def macro_f1(truth: list[str], pred: list[str]) -> float | None:
    if not truth:
        return None
    classes = sorted(set(truth) | set(pred))
    f1s = []
    for c in classes:
        tp = sum(t == c and p == c for t, p in zip(truth, pred))
        fp = sum(t != c and p == c for t, p in zip(truth, pred))
        fn = sum(t == c and p != c for t, p in zip(truth, pred))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s))


def correlations(x: list[float], y: list[float]) -> tuple[float | None, float | None]:
    if len(x) < 3:
        return None, None
    from scipy.stats import pearsonr, spearmanr

    if np.std(x) == 0 or np.std(y) == 0:
        return None, None
    return float(pearsonr(x, y)[0]), float(spearmanr(x, y)[0])


# ------------------------------------------------------------------------------- channel values


def _mean(values) -> float | None:
    v = [float(x) for x in values if x is not None and not pd.isna(x)]
    return float(np.mean(v)) if v else None


def _label(probs: list[Any], labels: list[Any]) -> str | None:
    dicts = [json.loads(p) for p in probs if isinstance(p, str) and p]
    if dicts:
        keys = sorted({k for d in dicts for k in d})
        mean = {k: np.mean([d.get(k, 0.0) for d in dicts]) for k in keys}
        return canonical_label(max(mean, key=mean.get))
    ls = [canonical_label(x) for x in labels if isinstance(x, str) and x]
    return Counter(ls).most_common(1)[0][0] if ls else None


def _channel_from_utterances(utts: pd.DataFrame, ch: str) -> dict[str, Any]:
    return {"valence": _mean(utts[f"{ch}_valence"]), "arousal": _mean(utts[f"{ch}_arousal"]),
            "label": _label(list(utts[f"{ch}_probs"]), list(utts[f"{ch}_label"])),
            "source": next((s for s in utts[f"{ch}_source"] if isinstance(s, str)), None)}


def _face_rows(session, start: float | None, end: float | None) -> pd.DataFrame | None:
    path = session.path / "faces.parquet"
    if not path.exists():
        return None
    f = read_parquet(path)
    if "valence" not in f or "track_id" not in f:
        return None
    f = f[f["track_id"] >= 0]
    if start is not None:
        f = f[(f["t"] >= start) & (f["t"] <= end)]
    return f


def item_values(session, item: dict[str, Any]) -> dict[str, Any]:
    utts = session.read_utterances()
    start, end = item.get("start"), item.get("end")
    if start is not None and not pd.isna(start):
        mid = (utts["start"] + utts["end"]) / 2
        utts = utts[(mid >= start) & (mid <= end)]
    else:
        start = end = None
    out: dict[str, Any] = {"n_utterances": len(utts)}
    for ch in CHANNELS:
        vals = _channel_from_utterances(utts, ch)
        origin = "utterances"
        if ch == "face" and vals["valence"] is None and vals["arousal"] is None and vals["label"] is None:
            rows = _face_rows(session, start, end)
            if rows is not None and len(rows):
                vals = {"valence": _mean(rows["valence"]), "arousal": _mean(rows["arousal"]),
                        "label": _label(list(rows["probs"]), list(rows["label"])),
                        "source": next((s for s in rows.get("affect_source", []) if isinstance(s, str)), None)}
                origin = "faces"
                out["face_rows"] = len(rows)
        for k, v in vals.items():
            out[f"{ch}_{k}"] = v
        out[f"{ch}_from"] = origin if any(vals[k] is not None for k in ("valence", "arousal", "label")) else None
    return out


# ------------------------------------------------------------------------------------ figures


def channel_metrics(items: pd.DataFrame, ch: str) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    covered = items[[any(not _null(r[f"{ch}_{k}"]) for k in ("valence", "arousal", "label"))
                     for _, r in items.iterrows()]]
    m: dict[str, Any] = {c: None for c in METRIC_COLUMNS}
    m.update({"channel": ch, "n_items": len(items), "n_covered": len(covered)})
    sources = sorted({s for s in covered.get(f"{ch}_source", []) if isinstance(s, str)})
    m["source"] = ", ".join(sources) or None
    confusion: dict[str, dict[str, int]] = {}
    lab = covered[covered["label"].notna() & covered[f"{ch}_label"].notna()]
    m["n_labelled"] = len(lab)
    if len(lab):
        truth = [LABEL_AS[ch].get(t, t) for t in lab["label"]]
        pred = list(lab[f"{ch}_label"])
        m["accuracy"] = float(np.mean([t == p for t, p in zip(truth, pred)]))
        m["macro_f1"] = macro_f1(truth, pred)
        for t, p in zip(truth, pred):
            confusion.setdefault(t, {}).setdefault(p, 0)
            confusion[t][p] += 1
    ar = covered[covered[f"{ch}_arousal"].notna()]
    high = [float(v) for v, g in zip(ar[f"{ch}_arousal"], ar["arousal_group"]) if g == "high"]
    low = [float(v) for v, g in zip(ar[f"{ch}_arousal"], ar["arousal_group"]) if g == "low"]
    m.update({"arousal_auc": auc(high, low), "n_high": len(high), "n_low": len(low),
              "arousal_mean_high": _mean(high), "arousal_mean_low": _mean(low)})
    va = covered[covered[f"{ch}_valence"].notna()]
    groups = [VALENCE_GROUP.get(l) if isinstance(l, str) else None for l in va["label"]]
    pos = [float(v) for v, g in zip(va[f"{ch}_valence"], groups) if g == "positive"]
    neg = [float(v) for v, g in zip(va[f"{ch}_valence"], groups) if g == "negative"]
    m.update({"valence_auc": auc(pos, neg), "n_positive": len(pos), "n_negative": len(neg),
              "valence_mean_positive": _mean(pos), "valence_mean_negative": _mean(neg)})
    if pos and neg:
        m["valence_separation"] = _mean(pos) - _mean(neg)
    for dim in ("valence", "arousal"):
        both = covered[covered[dim].notna() & covered[f"{ch}_{dim}"].notna()]
        r, rho = correlations(list(both[dim].astype(float)), list(both[f"{ch}_{dim}"].astype(float)))
        m[f"{dim}_pearson"], m[f"{dim}_spearman"] = r, rho
    return m, confusion


def _null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


# --------------------------------------------------------------------------------------- run


def evaluate_affect(corpus: Corpus, labels_path: Path | None = None, *, from_names: str | None = None,
                    sessions: list[str] | None = None, out_dir: Path | None = None) -> AffectEvaluation:
    """Evaluate the channels against labels from `labels_path` or decoded from file names."""
    if (labels_path is None) == (from_names is None):
        raise ValueError("give exactly one of --labels FILE or --labels-from-names ravdess|mead")
    corpus_sessions = corpus.sessions(sessions or None)
    warnings: list[str] = []
    if from_names:
        labels, undecoded = labels_from_names(corpus_sessions, from_names)
        if undecoded:
            warnings.append(f"{len(undecoded)} session name(s) are not {from_names} names: {', '.join(undecoded)}")
        source = f"file names ({from_names})"
    else:
        labels = read_labels(labels_path)
        source = str(labels_path)
    by_key: dict[str, Any] = {}
    for s in corpus_sessions:
        for k in session_keys(s):
            by_key.setdefault(k, s)
    rows, unmatched = [], []
    for item in labels.to_dict("records"):
        name = str(item["session"])
        session = by_key.get(match_key(name)) or by_key.get(match_key(Path(name).stem))
        if session is None:
            unmatched.append(str(item["session"]))
            continue
        row = {"session_id": session.id, **{k: v for k, v in item.items() if k != "_line"}}
        row.update(item_values(session, item))
        rows.append(row)
    if not rows:
        raise InputError(labels_path or corpus.root, f"no labelled item matches a session of {corpus.root} "
                         f"(labels from {source}; unmatched: {', '.join(unmatched[:10]) or 'none'})")
    items = pd.DataFrame(rows)
    metrics, confusion = [], {}
    for ch in CHANNELS:
        m, conf = channel_metrics(items, ch)
        metrics.append(m)
        confusion[ch] = conf
    labelled = {r["session_id"] for r in rows}
    result = AffectEvaluation(items=items, metrics=metrics, confusion=confusion, unmatched_labels=unmatched,
                              unlabelled_sessions=sorted(s.id for s in corpus_sessions if s.id not in labelled),
                              warnings=warnings)
    out_dir = Path(out_dir) if out_dir else corpus.reports_dir / "evaluate"
    out_dir.mkdir(parents=True, exist_ok=True)
    result.csv_path = out_dir / "affect.csv"
    pd.DataFrame(metrics, columns=METRIC_COLUMNS).to_csv(result.csv_path, index=False)
    result.items_path = out_dir / "affect_items.csv"
    items.to_csv(result.items_path, index=False)
    result.json_path = out_dir / "affect.json"
    write_json(result.json_path, {
        "labels": source,
        "label_mapping": {"reference -> channel": LABEL_AS, "arousal_groups": "high = happy, angry, fear; low = neutral, calm, sad",
                          "valence_groups": VALENCE_GROUP},
        "metrics": [{k: _clean(v) for k, v in m.items()} for m in metrics],
        "confusion": confusion,
        "items": [{k: _clean(v) for k, v in r.items()} for r in items.to_dict("records")],
        "unmatched_labels": unmatched,
        "unlabelled_sessions": result.unlabelled_sessions,
        "warnings": warnings,
    })
    return result
