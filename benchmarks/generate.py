"""Benchmark the generate stage against a real local llama.cpp server (packaged SmolLM2).

    python benchmarks/generate.py [--items 16] [--concurrency 4] [--max-tokens 48] [--threads 2]

Runs, in one go and each into a fresh corpus (so no run sees another's cache):
  1. concurrency 1,
  2. concurrency N,
  3. the run-1 corpus again: a fully cached rerun,
and prints throughput (rows/s, completion tokens/s) side by side, with ratios.

llama-cpp-python's server (0.3.x) holds one lock around its single model, so it answers one
request at a time whatever the client does: concurrency N can only overlap HTTP and parsing
overhead with generation, not generation itself. The report says so. Against a server that
batches (vLLM, llama.cpp's own `llama-server --parallel N`), concurrency is what buys throughput.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from emoguide.config import LLMSettings, ProviderSettings  # noqa: E402
from emoguide.corpus import Corpus  # noqa: E402
from emoguide.llm.generate import generate  # noqa: E402
from emoguide.prompts.items import PromptItem  # noqa: E402

PATIENT_LINES = [
    "I keep telling everyone I'm fine, but I haven't slept properly in weeks.",
    "My sister called again and I just let it ring.",
    "Work is okay I guess. It's just a lot.",
    "I laughed at the party but I wanted to leave the whole time.",
    "My dad never said he was proud of me, not once.",
    "I don't know why I'm even here, honestly.",
    "It's stupid, but the dog is the only one I talk to.",
    "I said yes to the promotion and then I cried in the car.",
]


def items(n: int) -> list[PromptItem]:
    out = []
    for i in range(n):
        line = PATIENT_LINES[i % len(PATIENT_LINES)]
        prompt = (
            "You are a therapist. Read the dialogue and give one short reply.\n"
            "Answer in the form [Technique] [Your Response].\n\n"
            f"Therapist: What has been on your mind this week? ({i})\n"
            f"Patient: {line}\n"
        )
        out.append(PromptItem(f"bench{i // 8}", i, "base", prompt, context_indices=[i]))
    return out


def server_serialises() -> str:
    """What this llama_cpp.server does with concurrent requests, read from its own code."""
    try:
        import inspect

        import llama_cpp.server.app as app
        import llama_cpp.server.settings as srv

        fields = set(getattr(srv.ModelSettings, "model_fields", {}))
        parallel = sorted(f for f in fields if "parallel" in f or "n_seq" in f)
        locked = "llama_outer_lock" in inspect.getsource(app)
        if locked and not parallel:
            return "serialised: one model behind a lock, no --n_parallel option"
        return f"locked={locked}, parallel options={parallel or 'none'}"
    except Exception as exc:  # noqa: BLE001
        return f"unknown ({exc})"


def run(corpus: Corpus, its, settings: LLMSettings) -> dict:
    t0 = time.perf_counter()
    df, summary = generate(corpus, its, ["bench:smollm2"], settings=settings, progress=False)
    wall = time.perf_counter() - t0
    ok = df[df.status == "ok"]
    fresh = ok[~ok.cache_hit]
    return {
        "wall_s": wall,
        "rows": len(df),
        "ok": len(ok),
        "errors": int((df.status == "error").sum()),
        "cache_hits": int(ok.cache_hit.sum()),
        "tokens": int(ok.completion_tokens.sum()),
        "fresh_tokens": int(fresh.completion_tokens.sum()),
        "rows_per_s": len(ok) / wall,
        "tok_per_s": int(ok.completion_tokens.sum()) / wall,
        "mean_latency_s": float(fresh.latency_s.mean()) if len(fresh) else float(ok.latency_s.mean()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp threads in the server")
    ap.add_argument("--repeats", type=int, default=3, help="runs per concurrency (median shown)")
    args = ap.parse_args()

    from llm_server import LlamaServer, server_available

    reason = server_available()
    if reason:
        print(f"cannot run: {reason}")
        return 2

    its = items(args.items)
    tmp = Path(tempfile.mkdtemp(prefix="emoguide-bench-"))
    try:
        with LlamaServer(n_threads=args.threads) as server:
            def settings(conc: int) -> LLMSettings:
                return LLMSettings(
                    providers={"bench": ProviderSettings(base_url=server.base_url)},
                    max_tokens=args.max_tokens, temperature=0.0, seed=0,
                    timeout_s=120, max_retries=1, concurrency=conc,
                )

            # warm-up (first request pays for the model's first evaluation), own corpus
            run(Corpus.open(tmp / "warm", create=True), its[:1], settings(1))

            # interleave the two settings, `repeats` times each, so a burst of load from other
            # processes on the machine hits both alike; report the median run of each
            runs: dict[int, list[dict]] = {1: [], args.concurrency: []}
            first_c1 = None
            for rep in range(args.repeats):
                for conc in runs:
                    corpus = Corpus.open(tmp / f"c{conc}-{rep}", create=True)
                    runs[conc].append(run(corpus, its, settings(conc)))
                    if conc == 1 and first_c1 is None:
                        first_c1 = corpus
            rc = run(first_c1, its, settings(1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    n = args.concurrency

    def median(rs):
        return sorted(rs, key=lambda r: r["wall_s"])[(len(rs) - 1) // 2]

    r1, rn = median(runs[1]), median(runs[n])
    r1_first = runs[1][0]
    print(f"generate benchmark: {args.items} prompts x 1 model (llama.cpp server, SmolLM2-135M Q4_1, "
          f"{args.threads} threads), max_tokens={args.max_tokens}, temperature 0")
    print(f"llama_cpp.server concurrency: {server_serialises()}")
    print(f"median of {args.repeats} interleaved runs per setting; walls: "
          f"c1={[round(r['wall_s'], 1) for r in runs[1]]}, c{n}={[round(r['wall_s'], 1) for r in runs[n]]}; "
          f"load average at end {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print()
    header = f"{'':24}{'concurrency 1':>16}{f'concurrency {n}':>16}{'ratio N/1':>12}"
    print(header)
    print("-" * len(header))

    def line(label, key, fmt):
        a, b = r1[key], rn[key]
        ratio = b / a if a else float("nan")
        print(f"{label:24}{format(a, fmt):>16}{format(b, fmt):>16}{ratio:>11.2f}x")

    line("wall time (s)", "wall_s", ".2f")
    line("rows/s", "rows_per_s", ".2f")
    line("completion tokens/s", "tok_per_s", ".1f")
    line("mean request latency (s)", "mean_latency_s", ".3f")
    line("completion tokens", "tokens", "d")
    oe1, oen = f"{r1['ok']} / {r1['errors']}", f"{rn['ok']} / {rn['errors']}"
    print(f"{'ok / errors':24}{oe1:>16}{oen:>16}")
    print()
    print(f"{'':24}{'first run':>16}{'cached rerun':>16}{'speed-up':>12}")
    print("-" * len(header))
    speed = r1_first["wall_s"] / rc["wall_s"] if rc["wall_s"] else float("inf")
    print(f"{'wall time (s)':24}{r1_first['wall_s']:>16.3f}{rc['wall_s']:>16.3f}{speed:>11.1f}x")
    print(f"{'cache hits':24}{r1_first['cache_hits']:>16d}{rc['cache_hits']:>16d}")
    calls1, callsc = r1_first["ok"] - r1_first["cache_hits"], rc["ok"] - rc["cache_hits"]
    print(f"{'model calls':24}{calls1:>16d}{callsc:>16d}")
    if r1["rows_per_s"] >= rn["rows_per_s"]:
        print(f"\nconcurrency {n} does not raise throughput here: the server generates one request at "
              "a time, so extra requests only queue (their latency grows, tokens/s does not).")
    errors = sum(r["errors"] for rs in runs.values() for r in rs) + rc["errors"]
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
