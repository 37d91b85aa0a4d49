"""Benchmark the risk-v2 screen: utterances per second on one core, and what it adds to the demo.

    python benchmarks/safety.py [--repeat 3] [--cores 1]

1. Throughput of the default layers (lexical, semantic with batched embeddings, classifier,
   context) on one core (torch.set_num_threads(1), the process pinned to one CPU): the 320
   statements of tests/data/risk_dev.csv, as session rows (so context pairs are read too), and
   as independent statements (no context). Model and bank loading are timed apart.
2. What the screen adds to `emoguide demo --text-only`: in a fresh interpreter, the safety stage
   (`run_one(corpus, "safety", ids)`) on the demo transcript with risk-v2 (imports, model load, screening) against the same stage with
   the lexical layer alone. The demo's other stages do not change.

Writes benchmarks/results/safety.txt. Timings on a shared machine: compare the ratios in one run.
Target (issue 12): >= 200 utterances/s on one core; <= 2 s added to the demo.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT / "tests" / "data" / "risk_dev.csv"
OUT = ROOT / "benchmarks" / "results" / "safety.txt"

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
    if hasattr(os, "sched_setaffinity"):
        avail = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, set(avail[-cores:]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed passes over the statements (best is reported)")
    ap.add_argument("--cores", type=int, default=1)
    ap.add_argument("--no-demo", action="store_true", help="skip the demo-stage comparison")
    args = ap.parse_args()
    pin(args.cores)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    lines: list[str] = []

    def say(msg: str) -> None:
        print(msg, flush=True)
        lines.append(msg)

    import pandas as pd

    os.environ["EMOGUIDE_RISK_THREADS"] = str(args.cores)  # onnxruntime intra-op threads (the default backend)
    from emoguide import safety
    from emoguide.risk import RiskScreen

    t = time.perf_counter()
    screen = RiskScreen(strict=True)
    load_s = time.perf_counter() - t
    load_cpu = time.process_time()
    dev = pd.read_csv(DEV, dtype=str, keep_default_na=False)
    texts = list(dev["text"])
    # sessions of 8 patient turns each, in file order, so every row but the first has context
    table = pd.DataFrame({"session_id": [f"s{i // 8}" for i in range(len(texts))], "role": "patient", "text": texts})
    say(f"risk-v2 ({screen.id}) on {args.cores} core(s), backend {screen.embedder.backend}, "
        f"torch imported: {'torch' in sys.modules}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    say(f"imports + model + bank load: {load_s:.2f} s wall ({load_cpu:.2f} s CPU since start)")
    screen.screen_many(texts[:16])  # warm-up
    import emoguide.risk.embed as embed_mod

    embed_mod.CACHE_SIZE = 0  # time real embedding work, not the in-memory cache of identical texts
    for label, fn in (
        ("session rows (with context)", lambda: safety.screen_utterances(table, screen=screen)),
        ("independent statements", lambda: screen.screen_many(texts)),
    ):
        runs = [_timed(fn) for _ in range(args.repeat)]
        wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
        say(f"{label}: {len(texts)} utterances in {wall:.2f} s wall = {len(texts) / wall:.0f} utterances/s; "
            f"{cpu:.2f} s CPU = {len(texts) / cpu:.0f} utterances per CPU-second")
    annomi = Path("/work/shared/data/annomi/AnnoMI-full.csv")
    if annomi.is_file():  # real talk: 600 client utterances of the AnnoMI report part (not fitted on), as session rows
        from emoguide.risk.fit import read_annomi

        real = read_annomi(annomi)
        real = real[real["part"] == "report"].head(600)
        rt = pd.DataFrame({"session_id": real["transcript_id"].astype(str), "role": "patient", "text": real["utterance_text"]})
        ungated = RiskScreen(strict=True, use_gate=False)
        from emoguide.risk.gate import may_carry_risk

        share = sum(map(may_carry_risk, rt["text"])) / len(rt)
        for label, scr in (("gate on (default)", screen), ("gate off", ungated)):
            runs = [_timed(lambda: safety.screen_utterances(rt, screen=scr)) for _ in range(args.repeat)]
            wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
            say(f"AnnoMI client utterances (real talk, {len(rt)}, with context), {label}: {len(rt) / wall:.0f} utterances/s wall, "
                f"{len(rt) / cpu:.0f} per CPU-second" + (f"; {share:.0%} pass the gate" if scr is screen else ""))
    lex = safety.load_screen()
    best = min(_timed(lambda: [lex.screen(x) for x in texts])[0] for _ in range(args.repeat))
    say(f"lexical layer alone: {len(texts) / best:.0f} utterances/s")

    if args.no_demo:
        return 0
    env = dict(os.environ)
    runs = {}
    for which in ("lexical", "risk-v2"):
        out = subprocess.run([sys.executable, "-c", STAGE_SNIPPET, which], capture_output=True, text=True, env=env, cwd=ROOT)
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


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): on a shared machine the CPU time of a
    one-thread process is what one core needs, whatever else runs."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


if __name__ == "__main__":
    sys.exit(main())
