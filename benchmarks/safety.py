"""Benchmark the risk-v2 screen: utterances per second on one core, before and after a change,
and what it adds to the demo.

    python benchmarks/safety.py [--repeat 3] [--cores 1] [--before REV | --before none] [--no-accuracy] [--no-demo]

1. Throughput of the default layers (gate, lexical, semantic with batched embeddings,
   classifier, context) on one core: each measurement runs in a fresh interpreter pinned to one
   CPU, with onnxruntime at one intra-op thread, and counts the process's CPU time (on a shared
   machine, the CPU time of a one-thread process is what one core needs, whatever else runs; the
   wall time is printed beside it). The in-memory cache of identical texts is off. Workloads:
   - real talk: the first 600 client utterances of the AnnoMI report part (transcripts the fit
     never saw), as session rows, each read with the previous client utterance. This is what the
     screen meets in use: most utterances hold no risk-relevant word and skip the embedding;
   - the development set (tests/data/risk_dev.csv, 320 statements) as sessions of 8 rows: the
     worst case, since every statement is risk-laden or a hard negative and is embedded;
   - the development set as independent statements (no context).
   With `--before REV` (default: HEAD, the last commit) the same workloads run on that
   revision's `src/` (extracted with `git archive` into a temporary directory), in the same run,
   one after the other, and the figures are printed side by side. Also counted (outside the
   timing): the word pieces embedded per real-talk utterance, which the rate follows.
2. Accuracy, before and after (unless --no-accuracy): recall, false-positive rate and per-category
   recall on the development test part, and the share of the 2,502 AnnoMI report-part client
   utterances flagged. Nothing is fitted here.
3. The embedding model alone: milliseconds of CPU per token (the floor of the semantic layer).
4. What the screen adds to `emoguide demo --text-only`: in a fresh interpreter, the safety stage
   (`run_one(corpus, "safety", ids)`) on the demo transcript with risk-v2 (imports, model load,
   screening) against the same stage with the lexical layer alone.

Writes benchmarks/results/safety.txt. Target (issue 12): >= 200 utterances/s on one core;
<= 2 s added to the demo.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT / "tests" / "data" / "risk_dev.csv"
OUT = ROOT / "benchmarks" / "results" / "safety.txt"
ANNOMI = Path(os.environ.get("EMOGUIDE_ANNOMI", "/work/shared/data/annomi/AnnoMI-full.csv"))
BEFORE_DEFAULT = "HEAD"  # the committed screen, against the working tree

STAGE_SNIPPET = r"""
import os, sys, tempfile, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from emoguide.corpus import Corpus
from emoguide.demo import demo_files
from emoguide.stages.ingest_transcript import ingest_transcripts
corpus = Corpus.open(tempfile.mkdtemp(), create=True)
ids, _ = ingest_transcripts(corpus, [demo_files()[0]])
t1 = time.perf_counter()
from emoguide.pipeline.runner import run_one
if sys.argv[1] == "lexical":
    from emoguide import safety
    from emoguide.stages.safety import SafetyStage
    stage = SafetyStage.with_screen(safety.load_screen())
else:
    stage = "safety"  # the corpus default: risk-v2, built in the stage's setup()
s = run_one(corpus, stage, ids)
t2 = time.perf_counter()
assert all(o.status == "done" for o in s.outcomes), s.outcomes
n = sum(len(corpus.session(i).read_utterances()) for i in ids)
print(f"{t2 - t1:.3f} {n}")
"""


def pin(cores: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(cores)
    os.environ["MKL_NUM_THREADS"] = str(cores)
    os.environ["EMOGUIDE_RISK_THREADS"] = str(cores)  # onnxruntime intra-op threads (the default backend)
    if hasattr(os, "sched_setaffinity"):
        avail = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, set(avail[-cores:]))


# ---------------------------------------------------------------------------- one measurement


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process)."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def worker(out: Path, repeat: int, accuracy: bool) -> None:
    """Measure the `emoguide` found on sys.path (the working tree or an extracted revision)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import pandas as pd

    import emoguide
    import emoguide.risk.embed as embed_mod
    from emoguide import safety
    from emoguide.risk import RiskScreen

    t = time.perf_counter()
    screen = RiskScreen(strict=True)
    res: dict = {"source": str(Path(emoguide.__file__).parent), "load_s": time.perf_counter() - t,
                 "backend": screen.embedder.backend, "torch": "torch" in sys.modules, "screen": screen.id}
    dev = pd.read_csv(DEV, dtype=str, keep_default_na=False)
    texts = list(dev["text"])
    workloads = {"dev_sessions": pd.DataFrame({"session_id": [f"s{i // 8}" for i in range(len(texts))], "role": "patient", "text": texts})}
    if ANNOMI.is_file():
        from emoguide.risk.fit import read_annomi

        annomi = read_annomi(ANNOMI)
        report = annomi[annomi["part"] == "report"].reset_index(drop=True)
        real = report.head(600)
        workloads["annomi"] = pd.DataFrame({"session_id": real["transcript_id"].astype(str), "role": "patient", "text": real["utterance_text"]})
        from emoguide.risk.gate import may_carry_risk

        res["annomi_gate_share"] = sum(map(may_carry_risk, real["utterance_text"])) / len(real)
    if accuracy:
        from emoguide.risk.fit import evaluate, evaluate_annomi, read_dev

        d = read_dev(DEV)
        r = evaluate(screen, d[d["split"] == "test"].reset_index(drop=True))
        res["dev_test"] = {k: r.get(k) for k in ("n", "n_risk", "recall", "fpr", "per_category", "per_level", "category_agreement", "level_agreement")}
        if ANNOMI.is_file():
            a = evaluate_annomi(screen, report)
            res["annomi_report"] = {k: a[k] for k in ("transcripts", "utterances", "flagged", "fpr_utterances")}
    screen.screen_many(texts[:16])  # warm-up
    embed_mod.CACHE_SIZE = 0  # time real embedding work, not the in-memory cache of identical texts
    screen.embedder._cache.clear()
    runs: dict[str, tuple[int, float, float]] = {}
    for name, table in workloads.items():
        rs = [_timed(lambda: safety.screen_utterances(table, screen=screen)) for _ in range(repeat)]
        runs[name] = (len(table), min(r[0] for r in rs), min(r[1] for r in rs))
    rs = [_timed(lambda: screen.screen_many(texts)) for _ in range(repeat)]
    runs["dev_independent"] = (len(texts), min(r[0] for r in rs), min(r[1] for r in rs))
    res["runs"] = runs
    # the embedding model alone: CPU ms per token, on the development statements
    emb = screen.embedder
    n_tok = sum(len(e.ids) for e in emb._tokenizer.encode_batch(texts)) if emb.backend == "onnx" else None
    rs = [_timed(lambda: emb._encode_onnx(texts) if emb.backend == "onnx" else emb._encode_torch(texts)) for _ in range(repeat)]
    res["model_ms_per_token"] = None if n_tok is None else 1000 * min(r[1] for r in rs) / n_tok
    if "annomi" in workloads and emb.backend == "onnx":  # word pieces embedded per real-talk utterance (not timed)
        counted = [0]
        plain = emb._encode_onnx

        def counting(batch):
            counted[0] += sum(emb.n_tokens(batch))
            return plain(batch)

        emb._encode_onnx = counting
        safety.screen_utterances(workloads["annomi"], screen=screen)
        emb._encode_onnx = plain
        res["annomi_pieces_per_utt"] = counted[0] / len(workloads["annomi"])
    out.write_text(json.dumps(res, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)), encoding="utf-8")


def _run_worker(src: Path | None, repeat: int, accuracy: bool, cores: int) -> dict:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        p = subprocess.run([sys.executable, __file__, "--worker", str(out), "--repeat", str(repeat), "--cores", str(cores)]
                           + ([] if accuracy else ["--no-accuracy"]), env=env, cwd=ROOT, capture_output=True, text=True)
        if p.returncode != 0 or not out.is_file():
            raise RuntimeError(f"measurement of {src or 'the working tree'} failed:\n{p.stderr[-2000:]}")
        return json.loads(out.read_text(encoding="utf-8"))


def _extract(rev: str, into: Path) -> Path:
    """`git archive REV src` into `into`; returns the src directory (read-only git use)."""
    arch = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], capture_output=True)
    if arch.returncode != 0:
        raise RuntimeError(f"git archive {rev}: {arch.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=arch.stdout, check=True)
    return into / "src"


# ---------------------------------------------------------------------------- report

LABELS = {
    "annomi": "real talk: 600 AnnoMI report-part client utterances, with context",
    "dev_sessions": "development set as sessions (worst case: all embedded), with context",
    "dev_independent": "development set, independent statements",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed passes per workload (the fastest is reported)")
    ap.add_argument("--cores", type=int, default=1)
    ap.add_argument("--before", default=BEFORE_DEFAULT, help=f"git revision to compare with (default {BEFORE_DEFAULT}); 'none' to skip")
    ap.add_argument("--no-accuracy", action="store_true", help="skip the accuracy figures (dev test part, AnnoMI report part)")
    ap.add_argument("--no-demo", action="store_true", help="skip the demo-stage comparison")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    pin(args.cores)
    if args.worker:
        worker(Path(args.worker), args.repeat, not args.no_accuracy)
        return 0
    lines: list[str] = []

    def say(msg: str) -> None:
        print(msg, flush=True)
        lines.append(msg)

    say(f"risk-v2 throughput on {args.cores} core(s) ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start); "
        "rates are utterances per CPU-second of a one-thread process (wall in brackets)")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        before_src = None
        if args.before.lower() != "none":
            try:
                before_src = _extract(args.before, Path(tmp))
            except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
                say(f"no before figures: {exc}")
        order = ([("before", before_src)] if before_src is not None else []) + [("after", None)]
        for label, src in order:
            results[label] = _run_worker(src, args.repeat, not args.no_accuracy, args.cores)
    cols = list(results)
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.before], capture_output=True, text=True).stdout.strip()
    heads = {"before": f"before ({args.before}{' ' + rev if rev and rev != args.before else ''})", "after": "after (working tree)"}
    say(" | ".join(["workload"] + [heads[c] for c in cols]))
    for key, label in LABELS.items():
        cells = []
        for c in cols:
            run = results[c]["runs"].get(key)
            cells.append("-" if run is None else f"{run[0] / run[2]:.0f}/s ({run[0] / run[1]:.0f}/s wall)")
        say(" | ".join([label] + cells))
    say(" | ".join(["embedding model alone, CPU ms per token"] + [
        "-" if results[c].get("model_ms_per_token") is None else f"{results[c]['model_ms_per_token']:.2f}" for c in cols]))
    say(" | ".join(["real talk: word pieces embedded per utterance"] + [
        "-" if results[c].get("annomi_pieces_per_utt") is None else f"{results[c]['annomi_pieces_per_utt']:.1f}" for c in cols]))
    say(" | ".join(["model + bank load, s"] + [f"{results[c]['load_s']:.2f}" for c in cols]))
    if "annomi_gate_share" in results[cols[-1]]:
        say(f"AnnoMI utterances that pass the gate: {results[cols[-1]]['annomi_gate_share']:.0%}")
    if not args.no_accuracy:
        def acc(r: dict) -> str:
            d = r.get("dev_test") or {}
            pc = ", ".join(f"{k} {v}" for k, v in (d.get("per_category") or {}).items())
            a = r.get("annomi_report")
            return (f"recall {d.get('recall')} FPR {d.get('fpr')} ({pc}); "
                    + (f"AnnoMI report part {a['flagged']}/{a['utterances']} = {a['fpr_utterances']:.2%} flagged" if a else "no AnnoMI"))
        for c in cols:
            say(f"accuracy {heads[c]}: dev test part {acc(results[c])}")

    from emoguide import safety

    import csv

    with DEV.open(encoding="utf-8", newline="") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    lex = safety.load_screen()
    best = min(_timed(lambda: [lex.screen(x) for x in texts])[1] for _ in range(args.repeat))
    say(f"lexical layer alone: {len(texts) / best:.0f} utterances per CPU-second")

    if not args.no_demo:
        runs = {}
        for which in ("lexical", "risk-v2"):
            out = subprocess.run([sys.executable, "-c", STAGE_SNIPPET, which], capture_output=True, text=True, env=dict(os.environ), cwd=ROOT)
            if out.returncode != 0:
                say(f"demo safety stage ({which}) failed: {out.stderr[-500:]}")
                return 1
            t, n = out.stdout.strip().splitlines()[-1].split()
            runs[which] = float(t)
        say(f"demo safety stage (run_one(corpus, 'safety', ids) on sample_session.csv, {n} utterances), fresh interpreter: "
            f"lexical {runs['lexical']:.2f} s, risk-v2 {runs['risk-v2']:.2f} s "
            f"-> the screen adds {runs['risk-v2'] - runs['lexical']:.2f} s to `emoguide demo --text-only`")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
