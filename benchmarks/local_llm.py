"""How often do the packaged local models answer in the paper's form? (issue 13)

    python benchmarks/local_llm.py                       # demo session + 20 AnnoMI contexts x 4 conditions
    python benchmarks/local_llm.py --annomi-contexts 3   # a smaller run
    python benchmarks/local_llm.py --models qwen2.5-coder-1.5b --modes hint --annomi-contexts 0

For each model (SmolLM2-135M, Qwen2.5-Coder-1.5B) x mode, in one run, through the real generate
stage (a fresh corpus and cache per configuration, so no run sees another's answers):

  free    the paper's prompt alone (the reproduction setting)
  hint    + the format hint: a system turn with a one-line example, and stop sequences
          (the demo's setting)
  schema  + JSON-schema-constrained decoding of {technique, response} (llama.cpp grammar)

on two sets of contexts: the demo session (the text demo's sample session, or the prompts.jsonl
of a corpus `emoguide demo` made, with --demo-corpus) and AnnoMI (../shared/data/annomi: the
first N patient targets spread over sessions, x the 4 conditions; AnnoMI has no voice or face
values, so the affect conditions get seeded synthetic values labelled `bench:synthetic`).

A row is usable when it was generated and parses with no `missing_technique`,
`explanation_not_reply` or `truncated` flag. Per configuration: usable share, mean seconds per
generated row (latency_s), the model's load + first-use time, and the worker's peak RSS (VmHWM;
each configuration runs in its own process). Output: benchmarks/results/local_llm.txt (+ .json).
Target: >= 90% usable for the 1.5B model in the demo's setting (hint).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANNOMI = ROOT.parent / "shared" / "data" / "annomi" / "AnnoMI-full.csv"
UNUSABLE = {"missing_technique", "explanation_not_reply", "truncated"}
MODES = {
    "free": {"format_hint": False, "structured": False},
    "hint": {"format_hint": True, "structured": False},
    "schema": {"format_hint": False, "structured": True},
    "schema+hint": {"format_hint": True, "structured": True},
}
CONDITIONS = "base,discrete,continuous,dissonance"
LABELS = ["neutral", "sad", "anxious", "angry", "happy", "fear", "surprise"]


# -- contexts -----------------------------------------------------------------------------------
def demo_items(work: Path, demo_corpus: Path | None) -> list[dict]:
    """The demo session's prompt items (dicts, as prompts.jsonl holds them)."""
    if demo_corpus is not None:
        path = demo_corpus / "prompts.jsonl"
        if not path.is_file():
            sys.exit(f"{path}: not found (run `emoguide demo --out {demo_corpus}` first)")
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    from emoguide.corpus import Corpus
    from emoguide.demo import demo_files
    from emoguide.prompts.conditions import select_conditions
    from emoguide.pipeline.runner import run_one
    from emoguide.stages.affect_import import import_affect
    from emoguide.stages.dissonance import DissonanceStage
    from emoguide.stages.prompts import build_prompts
    from emoguide.stages.ingest_transcript import ingest_transcripts

    corpus = Corpus.open(work / "demo-prompts", create=True)
    transcript, affect = demo_files()
    ids, _ = ingest_transcripts(corpus, [transcript])
    run_one(corpus, "safety", ids)
    import_affect(corpus, affect)
    run_one(corpus, DissonanceStage(corpus.settings.dissonance), ids)
    items, _ = build_prompts(corpus, select_conditions(CONDITIONS), corpus.settings.targets, ids)
    return [i.to_dict() for i in items]


def annomi_items(work: Path, n_contexts: int, seed: int = 13) -> list[dict]:
    """``n_contexts`` AnnoMI targets (at most 2 per session, sessions in order) x 4 conditions."""
    if n_contexts <= 0:
        return []
    if not ANNOMI.is_file():
        print(f"AnnoMI not found at {ANNOMI}: skipping the AnnoMI contexts", file=sys.stderr)
        return []
    import pandas as pd

    from emoguide.corpus import Corpus
    from emoguide.prompts.conditions import select_conditions
    from emoguide.pipeline.runner import run_one
    from emoguide.stages.affect_import import import_affect
    from emoguide.stages.dissonance import DissonanceStage
    from emoguide.stages.prompts import build_prompts
    from emoguide.stages.ingest_transcript import ingest_transcripts

    raw = pd.read_csv(ANNOMI, dtype=str, keep_default_na=False)
    sessions = list(dict.fromkeys(raw["transcript_id"]))[: max(1, (n_contexts + 1) // 2) + 2]
    subset = work / "AnnoMI-subset.csv"  # the reader recognises AnnoMI by its columns
    raw[raw["transcript_id"].isin(sessions)].to_csv(subset, index=False)
    corpus = Corpus.open(work / "annomi-prompts", create=True)
    ids, _ = ingest_transcripts(corpus, [subset])

    rng = random.Random(seed)
    rows = []
    for sid in ids:
        utt = corpus.session(sid).read_utterances()
        for r in utt[utt["role"] == "patient"].itertuples():
            rows.append(
                {
                    "session_id": sid, "index": int(r.index),
                    "voice_valence": round(rng.uniform(-0.8, 0.8), 2), "voice_arousal": round(rng.uniform(-0.8, 0.8), 2),
                    "voice_label": rng.choice(LABELS), "voice_source": "bench:synthetic",
                    "face_valence": round(rng.uniform(-0.8, 0.8), 2), "face_arousal": round(rng.uniform(-0.8, 0.8), 2),
                    "face_label": rng.choice(LABELS), "face_source": "bench:synthetic",
                }
            )
    affect = work / "annomi-affect.csv"
    pd.DataFrame(rows).to_csv(affect, index=False)
    import_affect(corpus, affect)
    run_one(corpus, DissonanceStage(corpus.settings.dissonance), ids)
    items, _ = build_prompts(corpus, select_conditions(CONDITIONS), corpus.settings.targets, ids)
    per_session: dict[str, list[int]] = {}
    for i in items:
        if i.status == "ok":
            targets = per_session.setdefault(i.session_id, [])
            if i.target_index not in targets and len(targets) < 2:
                targets.append(i.target_index)
    chosen = [(s, t) for s, ts in per_session.items() for t in ts][:n_contexts]
    keep = set(chosen)
    return [i.to_dict() for i in items if (i.session_id, i.target_index) in keep]


# -- one configuration, in its own process ---------------------------------------------------------
def worker(config_path: Path) -> None:
    from emoguide.config import LLMSettings
    from emoguide.corpus import Corpus
    from emoguide.llm.generate import generate
    from emoguide.llm.registry import get_backend
    from emoguide.prompts.items import PromptItem

    cfg = json.loads(config_path.read_text())
    settings = LLMSettings(
        max_tokens=cfg["max_tokens"], n_threads=cfg["threads"], concurrency=1, timeout_s=cfg["timeout_s"],
        **MODES[cfg["mode"]],
    )
    t0 = time.perf_counter()
    backend = get_backend(cfg["model"], settings)
    backend.load()  # joins the packaged file on first use; reported apart from generation
    load_s = time.perf_counter() - t0
    backend.close()
    out = {"load_s": round(load_s, 2), "sets": {}}
    for name, items in cfg["sets"].items():
        corpus = Corpus.open(Path(cfg["work"]) / name, create=True)
        its = [PromptItem(**i) for i in items]
        t1 = time.perf_counter()
        df, _ = generate(corpus, its, [cfg["model"]], settings=settings, progress=False)
        wall = time.perf_counter() - t1
        sent = df[df["status"] != "missing_inputs"]
        ok = sent[sent["status"] == "ok"]
        usable = ok[[not (set(f.split(",")) & UNUSABLE) for f in ok["flags"]]]
        flags: dict[str, int] = {}
        for f in sent["flags"]:
            for flag in filter(None, f.split(",")):
                flags[flag] = flags.get(flag, 0) + 1
        out["sets"][name] = {
            "rows": int(len(sent)),
            "errors": int((sent["status"] == "error").sum()),
            "usable": int(len(usable)),
            "usable_share": round(len(usable) / len(sent), 3) if len(sent) else None,
            "s_per_row": round(float(ok["latency_s"].mean()), 2) if len(ok) else None,
            "wall_s": round(wall, 1),
            "completion_tokens_mean": round(float(ok["completion_tokens"].mean()), 1) if len(ok) else None,
            "output_modes": sorted(set(sent["output_mode"])),
            "flags": flags,
            "examples": [
                {"condition": r["condition"], "raw": r["raw_output"][:300], "flags": r["flags"]}
                for _, r in sent.head(3).iterrows()
            ],
        }
    out["peak_rss_mb"] = _vm_hwm_mb()
    print("RESULT " + json.dumps(out))


def _vm_hwm_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None  # not Linux: unknown, not 0


# -- the run ------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2,qwen2.5-coder-1.5b")
    ap.add_argument("--modes", default="free,hint,schema", help=f"comma-separated: {', '.join(MODES)}")
    ap.add_argument("--annomi-contexts", type=int, default=20, help="AnnoMI targets (x 4 conditions); 0: none")
    ap.add_argument("--demo-rows", type=int, default=0, help="only the first N demo rows (0: all)")
    ap.add_argument("--conditions", default=CONDITIONS, help="only these conditions (comma-separated)")
    ap.add_argument("--demo-corpus", type=Path, help="a corpus made by `emoguide demo` (its prompts.jsonl)")
    ap.add_argument("--max-tokens", type=int, default=256, help="as in generation's default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per row")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "local_llm.txt")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker)

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r}; modes: {', '.join(MODES)}")
    work = Path(tempfile.mkdtemp(prefix="emoguide-bench-llm-"))
    demo = demo_items(work, args.demo_corpus)
    demo = [i for i in demo if i.get("status", "ok") == "ok" and i["condition"] in args.conditions.split(",")]
    if args.demo_rows:
        demo = demo[: args.demo_rows]
    sets = {"demo": demo, "annomi": annomi_items(work, args.annomi_contexts)}
    wanted = set(args.conditions.split(","))
    sets = {k: [i for i in v if i["condition"] in wanted] for k, v in sets.items()}
    sets = {k: v for k, v in sets.items() if v}
    print(f"contexts: " + ", ".join(f"{k} {len(v)} rows" for k, v in sets.items()), file=sys.stderr)

    results = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        for mode in modes:
            cfg_dir = work / f"{model}-{mode}"
            cfg_dir.mkdir(parents=True)
            cfg = {
                "model": model if ":" in model else f"llamacpp:{model}", "mode": mode, "sets": sets,
                "work": str(cfg_dir), "max_tokens": args.max_tokens, "threads": args.threads,
                "timeout_s": args.timeout,
            }
            (cfg_dir / "config.json").write_text(json.dumps(cfg))
            print(f"running {model} / {mode} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", str(cfg_dir / "config.json")],
                capture_output=True, text=True,
            )
            line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
            if line is None:
                print(proc.stderr[-3000:], file=sys.stderr)
                results.append({"model": model, "mode": mode, "failed": proc.returncode})
                continue
            res = json.loads(line[len("RESULT "):])
            res.update(model=model, mode=mode, total_s=round(time.perf_counter() - t0, 1))
            results.append(res)
            print(_lines([res])[-1], file=sys.stderr)

    text = _report(results, sets, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(text)


def _lines(results: list[dict]) -> list[str]:
    out = []
    for r in results:
        if "failed" in r:
            out.append(f"{r['model']:<20} {r['mode']:<12} FAILED (exit {r['failed']})")
            continue
        for name, s in r["sets"].items():
            share = "-" if s["usable_share"] is None else f"{100 * s['usable_share']:.0f}%"
            out.append(
                f"{r['model']:<20} {r['mode']:<12} {name:<7} {s['usable']:>3}/{s['rows']:<3} {share:>5}   "
                f"{s['s_per_row'] if s['s_per_row'] is not None else '-':>6} s/row   "
                f"load {r['load_s']:>5.1f} s   peak RSS {r['peak_rss_mb'] or '-':>7} MB   "
                f"modes {','.join(s['output_modes'])}   flags {s['flags']}"
            )
    return out


def _report(results: list[dict], sets: dict, args) -> str:
    import platform

    head = [
        "local LLM format adherence (benchmarks/local_llm.py)",
        f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.processor() or platform.machine()}, "
        f"threads {args.threads}, max_tokens {args.max_tokens}",
        "contexts: " + ", ".join(f"{k} {len(v)} rows" for k, v in sets.items()),
        "usable = generated, and no missing_technique / explanation_not_reply / truncated flag",
        "",
        f"{'model':<20} {'mode':<12} {'set':<7} usable",
    ]
    return "\n".join(head + _lines(results)) + "\n"


if __name__ == "__main__":
    main()
