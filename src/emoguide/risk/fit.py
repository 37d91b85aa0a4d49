"""Fit the risk-v2 classifier and report figures on parts it was not fitted on.

    python -m emoguide.risk.fit [tests/data/risk_dev.csv] [--annomi PATH] [--write] [--verbose]

What is fitted on (only):
- the rows of the development set with split == "fit" (and no context);
- real conversational negatives: the client utterances of the AnnoMI transcripts whose
  sha256(transcript_id) is even (the "fit part"), read from /work/shared/data at fit time
  (--annomi; nothing of AnnoMI is stored in the repo, only the fitted numbers in model.json).
  AnnoMI is motivational-interviewing talk (alcohol, smoking, medication, exercise ...): it
  carries almost no risk, and it is what the screen met and over-flagged (36.7% of client turns);
- the bank's own entries (bank.toml), for the embedding probe.

The model: a linear probe on the 384-dimensional embedding (bank + development fit rows; a
"risk content" direction learnt from written statements only, so it cannot learn "written vs
spoken"), then gradient-boosted trees (depth 3) over the bank-similarity, lexical and cue
features plus the probe, fitted on the development fit rows and the AnnoMI fit part. The decision
threshold is set on cross-validated probabilities of those rows (AnnoMI folds by transcript): the
score at which TARGET_RECALL of the development fit risk statements is kept.

Reported, never fitted on: the development set's test split (recall, false-positive rate,
per-category and per-level recall) and the AnnoMI transcripts with an odd hash (the "report
part": the share of client utterances flagged, each read with the previous client utterance).
`--write` stores src/emoguide/risk/model.json and bank_embeddings.npz.
scikit-learn is needed here only; the screen applies the stored numbers itself.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from emoguide.errors import InputError
from emoguide.risk.screen import _SEGMENT_RE as _SENTENCE_RE
from emoguide.risk.screen import _WORD_RE as _WORDS_RE
from emoguide.risk.screen import FEATURES, SEGMENT_MIN_WORDS, RiskScreen, _load_classifier, write_shipped_embeddings

DEV_COLUMNS = ("id", "split", "text", "context", "risk", "category", "type", "level", "rule")
TARGET_RECALL = 0.975
PROBE_C = 0.3
CONV_WEIGHT = 0.5  # weight of each written conversational negative in the classifier (a development row weighs 1)
HERE = Path(__file__).parent
ANNOMI_DEFAULT = Path("/work/shared/data/annomi/AnnoMI-full.csv")
NEGATIVES_DEFAULT = Path(__file__).resolve().parents[3] / "tests" / "data" / "risk_conversational_negatives.csv"


def read_negatives(path: str | Path) -> pd.DataFrame:
    """Conversational hard negatives written for emoguide (tests/data/risk_conversational_negatives.csv):
    id, split (fit/test), theme, text, rule. The fit part joins the development fit rows as
    negatives; the test part is reported (and tested), never fitted on."""
    path = Path(path)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("id", "split", "theme", "text", "rule") if c not in df.columns]
    if missing:
        raise InputError(path, f"missing columns {missing}")
    if not df["split"].isin(["fit", "test"]).all() or (df["rule"].str.len() == 0).any():
        raise InputError(path, "every row needs split fit or test and a rule")
    return df
PROBE_INDEX = FEATURES.index("probe")


def segments(text: str, max_segments: int = 4) -> list[str]:
    """The AnnoMI texts the shipped classifier was fitted on: each utterance, and a long one's
    first sentences. (Since risk-v2 2.1.0 the screen reads a long utterance by
    `screen.reading_units`, only the units that pass the gate; a refit on the utterances and their
    reading units gave the same development figures and one more AnnoMI fit-part flag, with a
    worse cross-validated false-positive rate, so model.json was kept: docs/safety.md.)"""
    if len(_WORDS_RE.findall(text)) < SEGMENT_MIN_WORDS:
        return [text]
    parts = [p.strip() for p in _SENTENCE_RE.split(text) if p and len(_WORDS_RE.findall(p)) >= 2]
    if len(parts) <= 1:
        return [text]
    return [text] + parts[:max_segments]


def read_dev(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in DEV_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(path, f"missing columns {missing}")
    bad = df[~df["split"].isin(["fit", "test"])]
    if len(bad):
        raise InputError(path, f"split must be fit or test (row id {bad['id'].iloc[0]})")
    df["risk"] = df["risk"].astype(int)
    return df


def annomi_part(transcript_id: object) -> str:
    """The deterministic split of AnnoMI by transcript: "fit" when sha256 of the id is even."""
    return "fit" if int(hashlib.sha256(str(transcript_id).encode()).hexdigest(), 16) % 2 == 0 else "report"


def read_annomi(path: str | Path) -> pd.DataFrame:
    """AnnoMI client utterances, one row per (transcript, utterance) (AnnoMI-full repeats the
    utterances of the transcripts that several annotators coded), in transcript order, with
    `part`, `previous` (the previous client utterance of the transcript) and `copies` (rows of
    the file it stands for)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "AnnoMI-full.csv not found (give --annomi PATH)")
    d = pd.read_csv(path)
    missing = [c for c in ("transcript_id", "utterance_id", "interlocutor", "utterance_text") if c not in d.columns]
    if missing:
        raise InputError(path, f"missing columns {missing}")
    c = d[d["interlocutor"] == "client"].copy()
    c["utterance_text"] = c["utterance_text"].fillna("").astype(str)
    copies = c.groupby(["transcript_id", "utterance_id"]).size().rename("copies")
    c = c.drop_duplicates(["transcript_id", "utterance_id"]).join(copies, on=["transcript_id", "utterance_id"])
    c = c.sort_values(["transcript_id", "utterance_id"]).reset_index(drop=True)
    c["previous"] = c.groupby("transcript_id")["utterance_text"].shift(1)
    c["part"] = [annomi_part(t) for t in c["transcript_id"]]
    return c[["transcript_id", "utterance_id", "topic", "utterance_text", "previous", "copies", "part"]]


def _bootstrap_classifier() -> dict:
    """A placeholder classifier: the screen computes features with it (its probability is unused)."""
    n = len(FEATURES)
    return {"kind": "logistic", "features": list(FEATURES), "mean": [0.0] * n, "scale": [1.0] * n, "coef": [0.0] * n,
            "intercept": 0.0, "threshold": 0.5}


def evaluate(screen: RiskScreen, df: pd.DataFrame) -> dict:
    """Recall, false-positive rate and per-category / per-level recall of `screen` on `df`."""
    prev = [c if c else None for c in df["context"]] if "context" in df else None
    readings = screen.screen_many(list(df["text"]), prev)
    flag = np.array([r.flag for r in readings])
    y = df["risk"].to_numpy() == 1
    out: dict = {
        "n": int(len(df)),
        "n_risk": int(y.sum()),
        "recall": round(float(flag[y].mean()), 3) if y.any() else None,
        "fpr": round(float(flag[~y].mean()), 3) if (~y).any() else None,
        "per_category": {},
        "per_level": {},
        "per_type": {},
        "category_agreement": None,
        "misses": [],
        "false_positives": [],
    }
    for col, key in (("category", "per_category"), ("level", "per_level")):
        for val, g in df[y].groupby(col):
            out[key][val] = round(float(flag[g.index.map(df.index.get_loc)].mean()), 3)
    for val, g in df.groupby("type"):
        out["per_type"][val] = round(float(flag[[df.index.get_loc(i) for i in g.index]].mean()), 3)
    hits = [(r, row) for r, (_, row) in zip(readings, df.iterrows()) if r.flag and row["risk"] == 1]
    if hits:
        out["category_agreement"] = round(float(np.mean([row["category"] in r.categories for r, row in hits])), 3)
        out["level_agreement"] = round(float(np.mean([r.level == row["level"] for r, row in hits])), 3)
    for r, (_, row) in zip(readings, df.iterrows()):
        if row["risk"] == 1 and not r.flag:
            out["misses"].append(f"{row['id']} {row['type']} ({r.score:.2f}): {row['text']}")
        if row["risk"] == 0 and r.flag:
            out["false_positives"].append(f"{row['id']} {row['type']} ({r.score:.2f}): {row['text']}")
    return out


MODEL_KIND = "logistic"  # "gbm" (depth-2 boosted trees) fitted the fit parts better but generalised worse (docs/safety.md)


def _gbm():
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if MODEL_KIND == "logistic":
        return _Weighted(make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000)))
    return HistGradientBoostingClassifier(max_depth=2, max_iter=150, learning_rate=0.05, min_samples_leaf=30, l2_regularization=1.0, random_state=0)


class _Weighted:
    """A pipeline whose fit takes sample_weight like a plain estimator."""

    def __init__(self, pipe):
        self.pipe = pipe

    def fit(self, X, y, sample_weight=None):
        self.pipe.fit(X, y, logisticregression__sample_weight=sample_weight)
        return self

    def predict_proba(self, X):
        return self.pipe.predict_proba(X)


def _probe(E: np.ndarray, y: np.ndarray):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=PROBE_C, max_iter=3000, class_weight="balanced").fit(E, y)


def _export_gbm(model) -> dict:
    if isinstance(model, _Weighted):
        sc, lr = model.pipe[0], model.pipe[1]
        return {"kind": "logistic", "mean": sc.mean_.tolist(), "scale": sc.scale_.tolist(), "coef": lr.coef_[0].tolist(),
                "intercept": float(lr.intercept_[0])}
    trees = []
    for (pred,) in model._predictors:
        n = pred.nodes
        trees.append({
            "feature": n["feature_idx"].tolist(), "threshold": [float(v) for v in n["num_threshold"]],
            "left": n["left"].tolist(), "right": n["right"].tolist(), "leaf": n["is_leaf"].astype(bool).tolist(),
            "value": [float(v) for v in n["value"]],
        })
    return {"kind": "gbm", "baseline": float(np.ravel(model._baseline_prediction)[0]), "trees": trees}


def fit(dev: pd.DataFrame, annomi: pd.DataFrame, screen: RiskScreen, target_recall: float = TARGET_RECALL,
        negatives: pd.DataFrame | None = None) -> dict:
    """Fit the probe and the trees on the fit parts only; returns the model.json document.
    """
    from sklearn.model_selection import StratifiedKFold

    part = dev[(dev["split"] == "fit") & (dev["context"] == "")]
    part = part.reset_index(drop=True)
    conv = negatives[negatives["split"] == "fit"] if negatives is not None else pd.DataFrame({"text": [], "id": []})
    n_conv = len(conv)
    yd = part["risk"].to_numpy()
    Ed = screen.embedder.encode(list(part["text"]))
    Xd = np.array([r.x for r in screen._features(list(part["text"]))])
    bank_E = screen._bank_emb
    bank_y = np.array([e.positive for e in screen.bank.entries], dtype=int)
    # every segment the screen would score, once per distinct text (no context: pairs are scored the same way)
    fa = annomi[annomi["part"] == "fit"]
    seg_rows: dict[str, str] = {}
    for tid, text in zip(fa["transcript_id"], fa["utterance_text"]):
        if text.strip():  # all of them (fitting on the gate-passing ones only generalised worse: docs/safety.md)
            for s in segments(text):
                seg_rows.setdefault(s, str(tid))
    # the written conversational negatives join the AnnoMI rows (not the probe, whose direction is
    # learnt from the bank and the development rows), in folds of their own, weighing CONV_WEIGHT each
    for k, text in enumerate(conv["text"]):
        seg_rows.setdefault(text, f"conv-{k % 5}")
    seg_texts = list(seg_rows)
    Ea = screen.embedder.encode(seg_texts)
    Xa = np.array([r.x for r in screen._features(seg_texts)])
    tids = sorted(set(seg_rows.values()))
    rng = np.random.default_rng(0)
    tfold = {t: i % 5 for i, t in enumerate(rng.permutation(tids))}
    fold_a = np.array([tfold[seg_rows[s]] for s in seg_texts])
    fold_d = np.zeros(len(part), dtype=int)
    for k, (_, te) in enumerate(StratifiedKFold(5, shuffle=True, random_state=0).split(Xd, yd)):
        fold_d[te] = k
    w_a = len(part) / len(seg_texts)  # AnnoMI weighs as much as the development rows together
    is_conv = np.array([seg_rows[t].startswith("conv-") for t in seg_texts])
    w_seg = np.where(is_conv, CONV_WEIGHT, w_a)

    def train(mask_d: np.ndarray, mask_a: np.ndarray):
        probe = _probe(np.vstack([bank_E, Ed[mask_d]]), np.concatenate([bank_y, yd[mask_d]]))
        # out-of-fold probe scores for the development rows the trees are fitted on
        zd = np.zeros(len(part))
        for j in np.unique(fold_d[mask_d]):
            inner = mask_d & (fold_d != j)
            zd[fold_d == j] = _probe(np.vstack([bank_E, Ed[inner]]), np.concatenate([bank_y, yd[inner]])).decision_function(Ed[fold_d == j])
        X = np.vstack([Xd[mask_d], Xa[mask_a]])
        X[:, PROBE_INDEX] = np.concatenate([zd[mask_d], probe.decision_function(Ea[mask_a])])
        y = np.concatenate([yd[mask_d], np.zeros(int(mask_a.sum()), dtype=int)])
        w = np.concatenate([np.ones(int(mask_d.sum())), w_seg[mask_a]])
        return probe, _gbm().fit(X, y, sample_weight=w)

    cv_d, cv_a = np.zeros(len(part)), np.zeros(len(seg_texts))
    for k in range(5):
        probe, trees = train(fold_d != k, fold_a != k)
        for X, E, keep, out in ((Xd, Ed, fold_d == k, cv_d), (Xa, Ea, fold_a == k, cv_a)):
            Xk = X[keep].copy()
            Xk[:, PROBE_INDEX] = probe.decision_function(E[keep])
            out[keep] = trees.predict_proba(Xk)[:, 1]
    pos = np.sort(cv_d[yd == 1])
    threshold = float(pos[int(np.floor((1 - target_recall) * len(pos)))]) - 1e-6
    probe, trees = train(np.ones(len(part), dtype=bool), np.ones(len(seg_texts), dtype=bool))
    doc = {
        "screen": "risk-v2",
        "version": screen.bank.version,
        "features": list(FEATURES),
        **_export_gbm(trees),
        "probe": {"coef": [round(float(v), 6) for v in probe.coef_[0]], "intercept": float(probe.intercept_[0])},
        "threshold": round(threshold, 4),
        "category_margin": 0.04,
        "context_gate": 0.5,
        "context_delta": 0.0,
        "lexical_floor": 0.5,
        "bank_digest": screen.bank.digest,
        "fitted_on": (f"tests/data/risk_dev.csv split=fit and tests/data/risk_conversational_negatives.csv split=fit ({n_conv}), "
                      f"{len(part)} statements ({int(yd.sum())} risk); "
                      f"AnnoMI client utterances of the {len(tids)} fit-part transcripts (sha256(transcript_id) even), "
                      f"{len(seg_texts)} distinct texts and sentences, as negatives; bank.toml entries (probe)"),
        "cv_fit": {"recall": round(float((cv_d[yd == 1] >= threshold).mean()), 3),
                   "fpr": round(float((cv_d[yd == 0] >= threshold).mean()), 3),
                   "annomi_segment_fpr": round(float((cv_a >= threshold).mean()), 4)},
    }
    # the stored trees must give what sklearn gives
    check = _load_classifier(doc)
    Xc = Xa[:200].copy()
    Xc[:, PROBE_INDEX] = probe.decision_function(Ea[:200])
    from emoguide.risk.screen import predict_proba

    if not np.allclose(predict_proba(check, Xc), trees.predict_proba(Xc)[:, 1], atol=1e-4):
        raise RuntimeError("the exported trees do not reproduce sklearn's predictions")
    return doc


def evaluate_annomi(screen: RiskScreen, annomi: pd.DataFrame) -> dict:
    """Share of AnnoMI client utterances flagged, each read with the previous client utterance:
    per distinct utterance and per row of AnnoMI-full.csv (which repeats multiply-annotated ones)."""
    texts = list(annomi["utterance_text"])
    prev = [p if isinstance(p, str) and p.strip() else None for p in annomi["previous"]]
    readings = screen.screen_many(texts, prev)
    flag = np.array([r.flag for r in readings])
    copies = annomi["copies"].to_numpy()
    return {
        "transcripts": int(annomi["transcript_id"].nunique()),
        "utterances": int(len(annomi)),
        "rows": int(copies.sum()),
        "flagged": int(flag.sum()),
        "fpr_utterances": round(float(flag.mean()), 4),
        "fpr_rows": round(float((flag * copies).sum() / copies.sum()), 4),
        "flagged_list": [
            f"{t}#{u} ({r.score:.2f} {r.level} {','.join(r.categories)}{' +context' if r.context_used else ''}): {x}"
            for t, u, x, r, f in zip(annomi["transcript_id"], annomi["utterance_id"], texts, readings, flag) if f
        ],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dev", nargs="?", default="tests/data/risk_dev.csv")
    ap.add_argument("--annomi", default=str(ANNOMI_DEFAULT), help="AnnoMI-full.csv (real conversational negatives; fit part only)")
    ap.add_argument("--write", action="store_true", help="write model.json and bank_embeddings.npz into the package")
    ap.add_argument("--verbose", action="store_true", help="list misses and false positives of the development set")
    ap.add_argument("--flagged-out", help="write the flagged AnnoMI report-part utterances to this file, for reading (keep it out of the repo)")
    ap.add_argument("--negatives", default=None, help=f"also fit on the fit part of written conversational negatives, e.g. {NEGATIVES_DEFAULT.name} "
                    "(off by default: it raised the development test false-positive rate, docs/safety.md); its test part is always reported")
    ap.add_argument("--embedding-cache", help="an .npz file keeping the embeddings between runs (outside the repo)")
    args = ap.parse_args(argv)
    dev = read_dev(args.dev)
    annomi = read_annomi(args.annomi)
    screen = RiskScreen(classifier=_bootstrap_classifier(), strict=True)
    cache = Path(args.embedding_cache) if args.embedding_cache else None
    if cache is not None and cache.is_file():
        z = np.load(cache, allow_pickle=True)
        screen.embedder._cache.update(zip(z["texts"].tolist(), z["emb"]))
    negatives = read_negatives(args.negatives or NEGATIVES_DEFAULT)
    clf = fit(dev, annomi, screen, negatives=negatives if args.negatives else None)
    screen.classifier = _load_classifier(clf)
    report = {split: evaluate(screen, dev[dev["split"] == split].reset_index(drop=True)) for split in ("fit", "test")}
    real = {p: evaluate_annomi(screen, annomi[annomi["part"] == p].reset_index(drop=True)) for p in ("fit", "report")}
    conv_test = negatives[negatives["split"] == "test"]
    conv_flag = [r.flag for r in screen.screen_many(list(conv_test["text"]))]
    conv = {"n": len(conv_test), "flagged": int(sum(conv_flag)), "rate": round(float(np.mean(conv_flag)), 3),
            "flagged_list": [t for t, f in zip(conv_test["text"], conv_flag) if f]}
    if cache is not None:
        items = list(screen.embedder._cache.items())
        np.savez(cache, texts=np.array([t for t, _ in items], dtype=object), emb=np.array([v for _, v in items]))
    clf["metrics"] = {s: {k: v for k, v in r.items() if k not in ("misses", "false_positives")} for s, r in report.items()}
    clf["metrics"]["conversational_negatives_test"] = {k: v for k, v in conv.items() if k != "flagged_list"}
    clf["metrics"].update({f"annomi_{p}": {k: v for k, v in r.items() if k != "flagged_list"} for p, r in real.items()})
    for split, r in report.items():
        print(f"dev {split}: n={r['n']} risk={r['n_risk']} recall={r['recall']} fpr={r['fpr']} "
              f"category agreement={r['category_agreement']} level agreement={r.get('level_agreement')}")
        print(f"  per category: {r['per_category']}")
        print(f"  per level: {r['per_level']}")
        if args.verbose:
            for m in r["misses"]:
                print("  MISS", m)
            for m in r["false_positives"]:
                print("  FP  ", m)
    for p, r in real.items():
        print(f"AnnoMI {p} part{' (fitted on)' if p == 'fit' else ' (held out)'}: {r['transcripts']} transcripts, "
              f"{r['utterances']} client utterances ({r['rows']} rows): flagged {r['flagged']} = {r['fpr_utterances']:.2%} "
              f"of utterances, {r['fpr_rows']:.2%} of rows")
    print(f"conversational negatives, test part (held out): {conv['flagged']} of {conv['n']} flagged = {conv['rate']:.1%}"
          + (f": {conv['flagged_list']}" if args.verbose else ""))
    if args.flagged_out:
        Path(args.flagged_out).write_text("\n".join(real["report"]["flagged_list"]) + "\n", encoding="utf-8")
    print(f"threshold={clf['threshold']} cross-validated on the fit parts: {clf['cv_fit']}")
    if args.write:
        (HERE / "model.json").write_text(json.dumps(clf) + "\n", encoding="utf-8")
        write_shipped_embeddings(screen.bank, screen.embedder, HERE / "bank_embeddings.npz")
        print(f"wrote {HERE / 'model.json'} and {HERE / 'bank_embeddings.npz'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
