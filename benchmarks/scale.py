"""How the engine scales: serial vs pool(2) vs ray(2) on the same sessions, in one run.

Builds N sessions of 2-5 minutes (the bundled demo video, looped to each length from a different
offset; real face and voices, synthetic dialogue), ingests each into a fresh corpus per
executor, and runs the media stages (asr, diarize, utterances, roles, safety, faces, face_affect,
voice, text_affect, dissonance; no generation, whose cost is the LLM's) with each executor.
Prints, side by side: wall time, media hours per wall hour, speed-up over serial, peak memory per
worker, and per-stage costs; then extrapolates the paper's corpus (1441 videos, 163.6 h) to 1, 8
and 64 workers from the measured per-stage costs and the measured pool efficiency.

    python benchmarks/scale.py                 # 8 sessions of 2-5 min (about 15-25 min on 2 cores)
    python benchmarks/scale.py --quick         # 3 sessions of 1 min
    python benchmarks/scale.py --executors serial,pool

Output goes to stdout and to benchmarks/results/scale.txt (--out). The machine is shared and
noisy: ratios measured in the same run mean more than seconds.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import redirect_stdout
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAPER_VIDEOS, PAPER_HOURS = 1441, 163.6
MEDIA_STAGES = ("asr", "diarize", "utterances", "roles", "safety", "faces", "face_affect", "voice", "text_affect", "dissonance")


class Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        for st in self.streams:
            st.write(s)
        return len(s)


def build_sessions(out: Path, n: int, min_s: float, max_s: float) -> list[tuple[Path, float]]:
    from emoguide.pipeline.testing import demo_video

    out.mkdir(parents=True, exist_ok=True)
    src = demo_video()
    items = []
    for i in range(n):
        length = min_s + (max_s - min_s) * (i / max(1, n - 1))
        dst = out / f"session{i:02d}_{int(length)}s.mp4"
        if not dst.exists():
            subprocess.run(
                ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-stream_loop", "-1", "-ss", f"{(i * 3.7) % 30:.2f}",
                 "-i", str(src), "-t", f"{length:.2f}", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "28",
                 "-c:a", "aac", str(dst)],
                check=True,
            )
        items.append((dst, length))
    return items


def run_one(executor_name: str, workers: int, videos: list[Path], root: Path) -> dict:
    from emoguide.corpus import Corpus
    from emoguide.pipeline.executors import make_executor
    from emoguide.pipeline.runner import run_stages
    from emoguide.stages.ingest_media import ingest_media

    corpus_dir = root / f"corpus-{executor_name}"
    shutil.rmtree(corpus_dir, ignore_errors=True)
    corpus = Corpus.open(corpus_dir, create=True)
    t0 = time.perf_counter()
    ids, ingest_summary = ingest_media(corpus, videos, settings=corpus.settings.media)
    ingest_s = time.perf_counter() - t0
    t_ex = time.perf_counter()
    ex = make_executor(executor_name, workers)
    startup_s = time.perf_counter() - t_ex
    report = run_stages(corpus, list(MEDIA_STAGES), ids, executor=ex)
    peak_by_pid: dict[int, float] = {}
    for o in report.outcomes:
        if o.peak_rss_mb is not None:
            peak_by_pid[o.pid] = max(peak_by_pid.get(o.pid, 0.0), o.peak_rss_mb)
    if executor_name == "ray":
        ex.ray.shutdown()
    return {
        "executor": executor_name, "workers": workers, "wall_s": report.wall_s, "ingest_s": ingest_s,
        "startup_s": startup_s, "failed": report.failed, "seconds": dict(report.seconds),
        "peak_worker_mb": max(peak_by_pid.values()) if peak_by_pid else None, "n_workers_seen": len(peak_by_pid),
        "parent_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "fails": [(s.title, o.item, o.reason) for s in report.summaries for o in s.failed],
    }


def _serial1(videos: list[Path], root: Path) -> dict:
    import json

    code = (
        "import json,sys; from emoguide.threads import cap_threads; cap_threads(1); "
        "sys.path.insert(0, %r); import scale; from pathlib import Path; "
        "r = scale.run_one('serial', 1, [Path(p) for p in %r], Path(%r)); r['executor'] = 'serial1'; "
        "print('RESULT' + json.dumps(r))"
    ) % (str(HERE), [str(v) for v in videos], str(root / "serial1"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    line = [l for l in out.splitlines() if l.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--min-s", type=float, default=120.0)
    ap.add_argument("--max-s", type=float, default=300.0)
    ap.add_argument("--quick", action="store_true", help="3 sessions of 60 s")
    ap.add_argument("--executors", default="serial,pool,ray",
                    help="comma-separated; serial1 = serial with every library capped at one thread (one core)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "emoguide-scale")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "scale.txt")
    args = ap.parse_args()
    if args.quick:
        args.sessions, args.min_s, args.max_s = 3, 60.0, 60.0
    buf = io.StringIO()
    with redirect_stdout(Tee(sys.stdout, buf)):
        print(f"# benchmarks/scale.py  {time.strftime('%Y-%m-%d %H:%M')}  {platform.machine()}, "
              f"{os.cpu_count()} cores, python {platform.python_version()}, load {os.getloadavg()[0]:.1f}")
        items = build_sessions(args.work / "videos", args.sessions, args.min_s, args.max_s)
        media_h = sum(l for _, l in items) / 3600.0
        print(f"sessions: {len(items)} of {args.min_s:.0f}-{args.max_s:.0f} s, {media_h * 60:.1f} media minutes")
        rows = []
        for name in args.executors.split(","):
            workers = 1 if name.startswith("serial") else args.workers
            print(f"\n## {name} ({workers} worker(s))", flush=True)
            if name == "serial1":
                # in a child process, so the cap holds from the first import of every library
                r = _serial1([p for p, _ in items], args.work)
            else:
                r = run_one(name, workers, [p for p, _ in items], args.work)
            rows.append(r)
            print(f"wall {r['wall_s']:.1f} s (ingest {r['ingest_s']:.1f} s before, executor start {r['startup_s']:.1f} s), "
                  f"failed {r['failed']}", flush=True)
            for f in r["fails"][:5]:
                print("  failed:", f)
        base = next((r for r in rows if r["executor"] == "serial"), rows[0])
        one = next((r for r in rows if r["executor"] == "serial1"), None)
        print("\n## side by side (media stages; ingest excluded)")
        print(f"{'executor':<10}{'workers':>8}{'wall s':>10}{'media h / wall h':>18}{'speed-up':>10}{'peak MB/worker':>16}")
        for r in rows:
            rate = media_h / (r["wall_s"] / 3600.0)
            peak = "-" if r["peak_worker_mb"] is None else f"{r['peak_worker_mb']:.0f}"
            print(f"{r['executor']:<10}{r['workers']:>8}{r['wall_s']:>10.1f}{rate:>18.2f}{base['wall_s'] / r['wall_s']:>10.2f}{peak:>16}")
        pool = next((r for r in rows if r["executor"] == "pool"), None)
        if pool:
            print(f"\npool({pool['workers']}) / serial speed-up: {base['wall_s'] / pool['wall_s']:.2f}x (target >= 1.6x)")
            if one:
                print(f"pool({pool['workers']}) / serial on one core: {one['wall_s'] / pool['wall_s']:.2f}x")
        print("\n## per-stage cost (task seconds summed over sessions; serial run)")
        per_h = {}
        for st in MEDIA_STAGES:
            s = base["seconds"].get(st, 0.0)
            per_h[st] = s / media_h
            print(f"{st:<12}{s:>9.1f} s   {s / (media_h * 3600.0):.4f} x real time")
        total_per_h = sum(per_h.values())  # seconds of one worker per media hour
        eff = (base["wall_s"] / pool["wall_s"]) / pool["workers"] if pool else 1.0
        print(f"\n## the paper's corpus ({PAPER_VIDEOS} videos, {PAPER_HOURS} h) extrapolated from these costs")
        print(f"one worker: {total_per_h / 3600.0:.3f} worker-hours per media hour; parallel efficiency "
              f"measured with pool({pool['workers'] if pool else 1}): {eff:.2f} (assumed for more workers: "
              "an upper bound on speed, since I/O and memory bandwidth are shared)")
        print(f"{'workers':>8}{'wall hours':>12}{'wall days':>11}")
        for w in (1, 8, 64):
            e = 1.0 if w == 1 else eff
            hours = PAPER_HOURS * total_per_h / 3600.0 / (w * e)
            print(f"{w:>8}{hours:>12.1f}{hours / 24:>11.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(buf.getvalue())
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
