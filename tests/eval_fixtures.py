"""A small corpus with generations, for the evaluation half (rating study, judge, statistics).

`eval_corpus` writes real artifacts (utterances.parquet per session, source.json, a conformed
generations.parquet) the way the pipeline does, without running any model, so tests of the
rating app, the judge and the statistics start from the same, known rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from emoguide.corpus import Corpus
from emoguide.llm.generate import conform as conform_generations
from helpers import REPO, utterances

DEMO_VIDEO = REPO / "src" / "emoguide" / "data" / "demo" / "demo_session.mp4"
CONDITIONS = ("base", "discrete", "continuous", "dissonance")
MODELS = ("llamacpp:alpha", "openai:beta")


def _dialogue(session_id: str, n_pairs: int, risk_at: int | None) -> pd.DataFrame:
    rows = []
    for k in range(n_pairs):
        rows.append({"role": "therapist", "text": f"How have things been this week, part {k}?"})
        patient = {"role": "patient", "text": f"It has been hard at work, part {k}, I keep worrying."}
        if risk_at is not None and k == risk_at:
            patient["text"] = "Sometimes I think everyone would be better off without me."
            patient["risk_flag"] = True
            patient["risk_categories"] = "suicide"
        rows.append(patient)
    df = utterances(rows, session_id)
    # 3 s turns, 0.5 s apart: the demo video (32 s) covers the first few contexts.
    df["start"] = [i * 3.5 for i in range(len(df))]
    df["end"] = [i * 3.5 + 3.0 for i in range(len(df))]
    for col in ("voice_label", "face_label"):
        df[col] = "sad"  # present in the data, must never reach raters or the judge
    df["dissonance"] = [i % 4 == 1 for i in range(len(df))]
    if "risk_flag" in df:
        df["risk_flag"] = df["risk_flag"].astype(object).where(df["risk_flag"].notna(), False).astype(bool)
    return df


def eval_corpus(
    tmp_path: Path,
    sessions: int = 2,
    pairs: int = 3,
    models: tuple[str, ...] = MODELS,
    conditions: tuple[str, ...] = CONDITIONS,
    media: str | None = "video",  # "video": session 0 has the demo video; None: transcripts only
    risk_session: int | None = 0,
    bad_rows: bool = True,
    text: dict[tuple[str, int, str, str], dict[str, str]] | None = None,
) -> Corpus:
    """A corpus with `sessions` dialogues of `pairs` therapist/patient pairs and one ok generation
    per patient target x model x condition (targets: every patient utterance, context = last 4).

    `bad_rows` adds rows the evaluation must skip: an error row and an ok row with no response.
    `text` overrides technique/response for chosen (session_id, target_index, model, condition).
    """
    c = Corpus.open(tmp_path / "corpus", create=True)
    rows = []
    for s in range(sessions):
        sid = f"s{s + 1}"
        df = _dialogue(sid, pairs, risk_at=1 if risk_session == s else None)
        sess = c.session(sid)
        sess.write_utterances(df)
        if media == "video" and s == 0:
            sess.write_source({"kind": "media", "session_id": sid, "path": str(DEMO_VIDEO), "file_name": DEMO_VIDEO.name,
                               "probe": {"duration_s": 32.0, "video": {"codec": "h264"}, "audio": {"codec": "aac"}}})
        else:
            sess.write_source({"kind": "transcript", "session_id": sid, "path": f"/data/{sid}.csv"})
        for pos, utt in df.iterrows():
            if utt["role"] != "patient" or pos < 3:
                continue
            ctx = [int(i) for i in df["index"].iloc[pos - 3 : pos + 1]]
            risky = bool(df.iloc[pos - 3 : pos + 1]["risk_flag"].fillna(False).any()) if "risk_flag" in df else False
            for model in models:
                for cond in conditions:
                    key = (sid, int(utt["index"]), model, cond)
                    override = (text or {}).get(key, {})
                    rows.append({
                        "session_id": sid, "target_index": int(utt["index"]), "condition": cond, "model": model,
                        "status": "ok",
                        "prompt": f"PROMPT {cond} (emotional dissonance) {model}",
                        "raw_output": f"[Reflective Listening] I hear you ({cond}).",
                        "technique": override.get("technique", f"Reflective Listening {int(utt['index'])}"),
                        "response": override.get("response", f"It sounds like work has been weighing on you ({sid}/{int(utt['index'])})."),
                        "context_indices": json.dumps(ctx), "risk_flag": risky,
                        "risk_categories": "suicide" if risky else "",
                        "created_at": "2026-12-01T00:00:00+00:00", "research_use_only": True,
                    })
    if bad_rows and rows:
        first = dict(rows[0])
        rows.append({**first, "model": "llamacpp:broken", "status": "error", "error": "timeout: slow", "technique": "", "response": ""})
        rows.append({**first, "model": "llamacpp:empty", "status": "ok", "technique": "Listening", "response": ""})
    gens = conform_generations(pd.DataFrame(rows))
    gens.to_parquet(c.generations_path, index=False)
    return c
