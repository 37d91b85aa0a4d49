"""What the faces shortcuts cost: detector speed, real-time factor, and per-utterance face V/A.

The paper (Appendix B/C/E) runs MTCNN on every frame at 30 fps, tracks with SORT and averages the
face valence/arousal over each utterance. emoguide's default is BlazeFace at 5 fps. This script
measures, on ONE video, in ONE run, side by side:

(a) frames per second of each detector (mtcnn, blazeface, blazeface-short, haar) on the same
    decoded frames (decoding excluded, models loaded and warmed up before timing);
(b) the real-time factor (processing seconds / video seconds) of the face pipeline
    (decode + detect + track + facial emotion + speaker assignment + per-utterance averaging) in
    the paper's configuration (MTCNN, every frame, 30 fps requested) and in the default
    (BlazeFace at 5 fps), and their ratio;
(c) how far each configuration's per-utterance face_valence / face_arousal (same `fer` backend)
    fall from the paper configuration's and from BlazeFace at 30 fps (the pure sampling cost):
    mean and max absolute difference, coverage, and how often the dissonance flag (Eq. 1, T=0.5)
    would change for a grid of fixed voice values.

The pipeline is the one the `faces` CLI verb runs (`faces_stage.track_video`, then
`face_affect_stage.predict_faces`, `speakers.assign_speakers`, `aggregate_utterances`), called
directly so the first N seconds can be cut and each part timed; parquet writing is left out.

    python benchmarks/faces.py                           # the default clip, everything
    python benchmarks/faces.py --video my.mp4 --seconds 60 --paper-seconds 20
    python benchmarks/faces.py --utterances utts.csv     # columns start,end[,speaker,role]

Output goes to stdout and to benchmarks/results/faces.txt (--out).

`--before-after` measures something else (issue 10, item 5): the `faces` and `face_affect` stages
as a user runs them, on the 10-minute benchmark session (the Pexels clip looped to 598.4 s, H.264
640x360, 23.98 fps, as benchmarks/run.py builds it; its video is cached under
~/.cache/emoguide-bench/): the code of `--before-rev` (default HEAD) against this working tree, in
one run, in turns (before, after, before, after ... for `--rounds`), each in a fresh process (the
revision's `src/` unpacked with `git archive` and put first on PYTHONPATH; the working tree's for
"after") and a fresh corpus. Stage times are the wall time of each `run_one` call (model loading
and the commits included, as in run.py), and the CPU time of the process over it (all threads). It prints the real-time factors side by side, their
ratio, and how far the per-utterance face_valence / face_arousal and the face rows move. Output:
benchmarks/results/faces_engine.txt.

    python benchmarks/faces.py --before-after [--rounds 2] [--before-rev HEAD] [--minutes 10]

`--interpolation` asks whether fewer detector calls could reach the issue's speed target: detect
only every N-th sampled frame and interpolate the boxes in between; it prints how far the
per-utterance face V/A move (first 120 s of the 10-minute session by default; --seconds, --video).
Output: benchmarks/results/faces_interpolation.txt.

    python benchmarks/faces.py --interpolation
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import platform
import sys
import time
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT_VIDEO = HERE.parents[1] / "shared/data/media/WolfgangLanger_Pexels.mp4"
PAPER_HOURS, PAPER_GPU_HOURS = 163.0, 25.0  # Appendix E
ALIGN_LANDMARKS = ["onet"]  # FaceSettings.align_landmarks for every run (--align-landmarks)


class Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        for st in self.streams:
            st.write(s)
            st.flush()
        return len(s)


# --------------------------------------------------------------------------- utterances


def pseudo_utterances(end_s: float, lengths=(3.0, 2.0, 4.0), min_len: float = 1.0) -> pd.DataFrame:
    """Consecutive windows of 3, 2, 4, 3, 2, 4 ... seconds over [0, end_s], speaker B (patient)."""
    rows, t = [], 0.0
    for L in itertools.cycle(lengths):
        if t >= end_s - 1e-9:
            break
        e = min(t + L, end_s)
        if e - t >= min_len:
            rows.append((t, e))
        t = e
    return _utt_table(pd.DataFrame(rows, columns=["start", "end"]))


def _utt_table(df: pd.DataFrame) -> pd.DataFrame:
    from emoguide.corpus import schema

    df = df.copy()
    df["index"] = range(len(df))
    df["speaker"] = df["speaker"].astype(str) if "speaker" in df else "B"
    df["role"] = df["role"].astype(str) if "role" in df else "patient"
    df["text"] = "(pseudo-utterance)"
    df["session_id"] = "bench"
    return schema.conform(df)


# --------------------------------------------------------------------------- (a) detectors


def bench_detectors(video: Path, end_s: float, fps: float, names: list[str], batch: int) -> list[dict]:
    from emoguide.media.decode import iter_frames
    from emoguide.vision.detect import get_detector

    t0 = time.perf_counter()
    frames = [f.image for f in iter_frames(video, fps, 0.0, end_s)]
    decode_s = time.perf_counter() - t0
    print(f"(a) decoded {len(frames)} frames at {fps:g} fps over 0-{end_s:.1f} s in {decode_s:.2f} s "
          f"(decode excluded below); frame {frames[0].shape[1]}x{frames[0].shape[0]}; batch {batch}")
    out = []
    for name in names:
        det = get_detector(name)
        tl = time.perf_counter()
        det.load()
        load_s = time.perf_counter() - tl
        det.detect_batch(frames[:min(batch, len(frames))])  # warm-up (not timed)
        td = time.perf_counter()
        n_faces, with_face = 0, 0
        for i in range(0, len(frames), batch):
            for dets in det.detect_batch(frames[i:i + batch]):
                n_faces += len(dets)
                with_face += bool(dets)
        sec = time.perf_counter() - td
        out.append({"detector": name, "frames": len(frames), "seconds": sec, "fps": len(frames) / sec,
                    "ms_per_frame": 1000 * sec / len(frames), "with_face": with_face,
                    "faces_per_frame": n_faces / len(frames), "load_s": load_s})
        if hasattr(det, "close"):
            det.close()
    return out


# --------------------------------------------------------------------------- (b)+(c) configurations


@dataclass
class ConfigRun:
    label: str
    detector: str
    fps: float
    end_s: float
    frames: int = 0
    with_face: int = 0
    face_rows: int = 0
    tracks: int = 0
    t_decode_track: float = 0.0
    t_detect: float = 0.0
    t_align: float = 0.0  # O-Net's landmarks, in the detector's worker right after it
    t_emotion: float = 0.0
    t_assign: float = 0.0
    mode: str = ""
    utts: pd.DataFrame | None = field(default=None, repr=False)  # under the default crop mode (aligned)
    by_crop: dict = field(default_factory=dict, repr=False)  # crop mode -> utterance table
    faces: pd.DataFrame | None = field(default=None, repr=False)
    rows_by_crop: dict = field(default_factory=dict, repr=False)  # crop mode -> per-row predictions

    @property
    def total(self) -> float:
        return self.t_decode_track + self.t_detect + self.t_align + self.t_emotion + self.t_assign

    @property
    def rtf(self) -> float:
        return self.total / self.end_s


def run_config(video: Path, detector_name: str, fps: float, end_s: float, utts: pd.DataFrame, backend,
               detectors: dict, crop_modes=("aligned", "box"), refine: bool = True) -> ConfigRun:
    """Detect + track once, then face emotion + speakers + per-utterance means under each crop
    mode (the first is timed: it is the default path's). `refine=False`: no O-Net landmarks
    (`align_landmarks` null; aligned crops, if asked for, from the detector's own points)."""
    from emoguide.vision.face_affect_stage import aggregate_utterances, predict_faces
    from emoguide.vision.faces_stage import FaceSettings, track_video
    from emoguide.vision.speakers import SpeakerSettings, apply_assignments, assign_speakers

    settings = FaceSettings(detector=detector_name, fps=fps, align_landmarks=ALIGN_LANDMARKS[0])
    if detector_name not in detectors:
        detectors[detector_name] = settings.make_detector().load()
    if "_refiner" not in detectors:
        refiner = settings.make_refiner()
        detectors["_refiner"] = refiner.load() if refiner is not None else None
    det = detectors[detector_name]
    r = ConfigRun(f"{detector_name}@{fps:g}", detector_name, fps, end_s)
    t0 = time.perf_counter()
    vf = track_video(video, det, fps=fps, tracker=settings.tracker, end=end_s, batch_size=settings.batch_size,
                     refiner=detectors["_refiner"] if refine else None)
    t1 = time.perf_counter()
    r.t_detect, r.t_align = vf.detect_seconds, vf.align_seconds
    r.t_decode_track = (t1 - t0) - vf.detect_seconds - vf.align_seconds
    faces = vf.table("bench")
    r.frames, r.face_rows = len(vf.times), len(faces)
    r.with_face = int(faces["t"].nunique()) if len(faces) else 0
    r.tracks = int(faces.loc[faces["track_id"] >= 0, "track_id"].nunique()) if len(faces) else 0
    r.faces = faces
    spk = SpeakerSettings()
    for k, crop_mode in enumerate(crop_modes):
        warnings: list[str] = []
        t2 = time.perf_counter()
        rows = predict_faces(faces, video, backend, max_gap_s=spk.max_gap_s, warnings=warnings, crop_mode=crop_mode)
        t3 = time.perf_counter()
        res = assign_speakers(rows, utts, spk, {})
        rows = apply_assignments(rows, res)
        r.by_crop[crop_mode] = aggregate_utterances(utts, rows, backend.id)
        r.rows_by_crop[crop_mode] = rows
        if k == 0:
            r.utts = r.by_crop[crop_mode]
            r.t_emotion, r.t_assign = t3 - t2, time.perf_counter() - t3
            r.mode = res.mode
    return r


def run_box_path(video: Path, detector_name: str, fps: float, end_s: float, utts: pd.DataFrame, backend,
                 detectors: dict, crop_modes=("aligned", "box")) -> ConfigRun:
    """The default's path without the aligned crops (what main ran before them): no O-Net, box
    crops timed first; its aligned crops (for (c)) come from the detector's own points."""
    modes = ["box"] + [m for m in crop_modes if m != "box"]
    r = run_config(video, detector_name, fps, end_s, utts, backend, detectors, modes, refine=False)
    r.label = f"{detector_name}@{fps:g} box path"
    return r


def compare(cfg: ConfigRun, ref: ConfigRun, voice_grid, threshold: float, max_end: float | None = None,
            crop_mode: str | None = None) -> dict:
    """Per-utterance differences of cfg vs ref over utterances both cover (ending <= max_end), both
    under `crop_mode` (None: each one's default utterances)."""
    from emoguide.config import DissonanceSettings
    from emoguide.dissonance import compute_dissonance

    a, b = (cfg.utts, ref.utts) if crop_mode is None else (cfg.by_crop[crop_mode], ref.by_crop[crop_mode])
    keep = np.ones(len(a), bool) if max_end is None else (b["end"].to_numpy(float) <= max_end + 1e-6)
    va, vb = a["face_valence"].to_numpy(float)[keep], b["face_valence"].to_numpy(float)[keep]
    aa, ab = a["face_arousal"].to_numpy(float)[keep], b["face_arousal"].to_numpy(float)[keep]
    both = np.isfinite(va) & np.isfinite(vb) & np.isfinite(aa) & np.isfinite(ab)
    dv, da = np.abs(va - vb)[both], np.abs(aa - ab)[both]
    out = {
        "n": int(keep.sum()), "both": int(both.sum()),
        "only_one": int((np.isfinite(va) != np.isfinite(vb)).sum()),
        "mae_v": float(dv.mean()) if dv.size else np.nan, "max_v": float(dv.max()) if dv.size else np.nan,
        "mae_a": float(da.mean()) if da.size else np.nan, "max_a": float(da.max()) if da.size else np.nan,
    }
    s = DissonanceSettings(threshold=threshold)
    changed = total = null_changed = 0
    for v_voice, a_voice in voice_grid:
        fl = []
        for u in (a[keep], b[keep]):
            u = u.copy()
            u["voice_valence"], u["voice_arousal"] = v_voice, a_voice
            fl.append(compute_dissonance(u, s)["dissonance"])
        f1, f2 = fl
        m = f1.notna().to_numpy() & f2.notna().to_numpy()
        total += int(m.sum())
        changed += int((f1[m].astype(bool).to_numpy() != f2[m].astype(bool).to_numpy()).sum())
        null_changed += int((f1.notna() != f2.notna()).sum())
    out["flag_pairs"], out["flag_changed"], out["flag_null_changed"] = total, changed, null_changed
    return out


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    p.add_argument("--seconds", type=float, default=None, help="use only the first N seconds of the video")
    p.add_argument("--paper-seconds", type=float, default=None,
                   help="run the paper configuration (MTCNN every frame) on the first N seconds only; "
                        "its real-time factor is then extrapolated and (c) uses the utterances inside")
    p.add_argument("--utterances", type=Path, default=None,
                   help="CSV with start,end[,speaker,role] (default: consecutive 3/2/4 s windows, speaker B, patient)")
    p.add_argument("--detector-fps", type=float, default=3.0, help="(a): frames sampled for the detector timing")
    p.add_argument("--detectors", default="mtcnn,blazeface,blazeface-short,haar")
    p.add_argument("--rates", default="1,2,5,10,30", help="BlazeFace sampling rates to compare")
    p.add_argument("--extra", default="blazeface@5:box,mtcnn@5,blazeface-short@5,haar@5",
                   help="more detector@fps configurations for (c) ('' for none); detector@fps:box = the box path "
                        "(no O-Net landmarks, box crops timed; main's default before aligned crops)")
    p.add_argument("--speed-rounds", type=int, default=3,
                   help="(b): time the default and its box path (blazeface@5:box) this many more times, "
                        "alternating, and compare their median RTFs (0: skip)")
    p.add_argument("--threshold", type=float, default=0.5, help="T of Eq. 1")
    p.add_argument("--voice", default=None,
                   help="fixed voice 'V,A' for the flag check (default: the 3x3 grid {-0.5,0,0.5}^2)")
    p.add_argument("--out", type=Path, default=None,
                   help="default: results/faces.txt, or results/faces_engine.txt with --before-after")
    p.add_argument("--before-after", action="store_true",
                   help="the faces + face_affect stages before (--before-rev) vs now, on the 10-minute session")
    p.add_argument("--before-rev", default="HEAD", help="git revision of the 'before' code")
    p.add_argument("--rounds", type=int, default=1, help="--before-after: before/after pairs, alternating")
    p.add_argument("--minutes", type=float, default=None,
                   help="--before-after: use this many minutes of the session (default: all 598.4 s)")
    p.add_argument("--stage-run", type=Path, default=None, help=argparse.SUPPRESS)  # --before-after's child
    p.add_argument("--crop-modes", default="aligned,box",
                   help="(b)/(c): face crops for the emotion model, compared side by side on the same detections: "
                        "aligned (on the eyes and mouth; the default) and/or box (the square box crop, as before); "
                        "(b) times the first")
    p.add_argument("--align-landmarks", default="onet", choices=("onet", "detector"),
                   help="landmarks of the aligned crops: onet (O-Net on each box, the default) | detector (its own)")
    p.add_argument("--clips", nargs="*", type=Path, default=None,
                   help="only the (c) comparison, paper (mtcnn@30) vs default (blazeface@5) under each crop mode, "
                        "on each of these videos (no paths: the shared face clips); output results/faces_clips.txt")
    p.add_argument("--interpolation", action="store_true",
                   help="what detecting every N-th sampled frame (boxes interpolated) does to the values "
                        "(default: the first 120 s of the 10-minute session)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    ALIGN_LANDMARKS[0] = args.align_landmarks
    if args.stage_run is not None:
        stage_run(args.stage_run)
        return 0
    if args.out is None:
        name = ("faces_interpolation.txt" if args.interpolation else "faces_engine.txt" if args.before_after
                else "faces_clips.txt" if args.clips is not None else "faces.txt")
        args.out = HERE / "results" / name
    if args.before_after or args.interpolation:
        if args.video == DEFAULT_VIDEO:
            args.video = long_session_video()
        if args.interpolation and args.seconds is None:
            args.seconds = 120.0
    if args.clips is not None:
        args.clips = args.clips or shared_face_clips()
        missing = [c for c in args.clips if not c.exists()]
        if missing or not args.clips:
            print(f"no such video: {', '.join(map(str, missing)) or 'no shared face clips found'}", file=sys.stderr)
            return 2
    elif not args.video.exists():
        print(f"no such video: {args.video}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    with redirect_stdout(Tee(sys.stdout, buf)):
        if args.clips is not None:
            clips(args)
        elif args.interpolation:
            interpolation(args)
        elif args.before_after:
            before_after(args)
        else:
            run(args)
    args.out.write_text(buf.getvalue())
    print(f"written {args.out}")
    return 0


def run(args) -> None:
    import torch

    from emoguide.media.probe import probe
    from emoguide.vision.emotion import get_face_emotion

    info = probe(args.video)
    dur = float(info.duration_s)
    end_s = min(dur, args.seconds) if args.seconds else dur
    native = info.video.nominal_fps or info.video.avg_fps
    print("emoguide faces benchmark: what the CPU shortcuts cost")
    print(f"video: {args.video.name}  {info.video.display_width}x{info.video.display_height}, "
          f"{native:.3f} fps native, {dur:.2f} s; using 0-{end_s:.2f} s")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} at start; torch threads {torch.get_num_threads()}; "
          f"python {platform.python_version()}")
    print("All timings are on this shared machine in this one run; compare ratios, not absolute values.\n")

    # (a)
    det_names = [d for d in args.detectors.split(",") if d]
    rows = bench_detectors(args.video, end_s, args.detector_fps, det_names, batch=8)
    print(f"{'detector':<16}{'frames/s':>10}{'ms/frame':>10}{'x mtcnn':>9}{'frames w/ face':>16}{'faces/frame':>13}{'load s':>8}")
    ref_fps = next((r["fps"] for r in rows if r["detector"] == "mtcnn"), None)
    for r in rows:
        rel = f"{r['fps'] / ref_fps:8.1f}x" if ref_fps else "      - "
        print(f"{r['detector']:<16}{r['fps']:>10.1f}{r['ms_per_frame']:>10.1f}{rel:>9}"
              f"{r['with_face']:>9}/{r['frames']:<6}{r['faces_per_frame']:>13.2f}{r['load_s']:>8.2f}")
    print()

    # utterances
    if args.utterances:
        utts = _utt_table(pd.read_csv(args.utterances))
        utts = utts[utts["start"] < end_s].reset_index(drop=True)
        utt_desc = f"{len(utts)} utterances from {args.utterances}"
    else:
        utts = pseudo_utterances(end_s)
        utt_desc = f"{len(utts)} pseudo-utterances (consecutive 3/2/4 s windows, speaker B, role patient; the clip has no speech)"

    backend = get_face_emotion("fer").load()
    detectors: dict = {}
    paper_end = min(end_s, args.paper_seconds) if args.paper_seconds else end_s
    paper_utts = utts[utts["start"] < paper_end].reset_index(drop=True)
    print(f"(b) pipeline = decode + detect + track (track_video) + fer emotion incl. re-decode (predict_faces) "
          f"+ speakers + per-utterance means; models loaded before timing\n    {utt_desc}")
    runs: dict[str, ConfigRun] = {}
    t_all = time.perf_counter()
    crop_modes = [m for m in args.crop_modes.split(",") if m]
    paper = run_config(args.video, "mtcnn", 30.0, paper_end, paper_utts if paper_end < end_s else utts, backend,
                       detectors, crop_modes)
    paper.label = "paper: mtcnn@30"
    runs["paper"] = paper
    configs = [("blazeface", float(r), "") for r in args.rates.split(",") if r]
    for item in (args.extra or "").split(","):
        if item:
            item, _, tag = item.partition(":")
            d, f = item.split("@")
            configs.append((d, float(f), tag))
    for d, f, tag in configs:
        key = f"{d}@{f:g}" + (f":{tag}" if tag else "")
        if key not in runs:
            runs[key] = run_box_path(args.video, d, f, end_s, utts, backend, detectors, crop_modes) if tag == "box" \
                else run_config(args.video, d, f, end_s, utts, backend, detectors, crop_modes)
    default = runs["blazeface@5"]
    default.label = "default: blazeface@5"

    print(f"{'configuration':<22}{'video s':>8}{'frames':>7}{'w/face':>7}{'tracks':>7}{'decode+trk':>11}{'detect':>8}"
          f"{'O-Net':>7}{'emotion':>8}{'assign':>7}{'total s':>8}{'RTF':>8}{'utts w/ face':>14}")
    for r in runs.values():
        cov = int(r.utts["face_n"].notna().sum())
        print(f"{r.label:<22}{r.end_s:>8.2f}{r.frames:>7}{r.with_face:>7}{r.tracks:>7}{r.t_decode_track:>11.2f}"
              f"{r.t_detect:>8.2f}{r.t_align:>7.2f}{r.t_emotion:>8.2f}{r.t_assign:>7.2f}{r.total:>8.2f}{r.rtf:>8.3f}"
              f"{cov:>7}/{len(r.utts):<6}")
    print(f"(all configurations: {time.perf_counter() - t_all:.0f} s wall; @30 on a {native:.2f} fps clip = every frame, "
          "iter_frames never repeats one; RTF = total s / video s)")
    ratio = paper.rtf / default.rtf
    print(f"\nreal-time factor, paper (MTCNN, every frame; 30 fps asked, the clip has {native:.2f}) : {paper.rtf:.3f}"
          + (f"  [measured on the first {paper_end:g} s only; EXTRAPOLATED to the whole clip as the same RTF]"
             if paper_end < end_s else ""))
    print(f"real-time factor, default (BlazeFace at 5 fps)                     : {default.rtf:.3f}")
    print(f"ratio paper / default                                               : {ratio:.1f}x")
    box = runs.get("blazeface@5:box")
    if box is not None:
        print(f"real-time factor, default's box path (no O-Net, box crops)         : {box.rtf:.3f}"
              f"  (default / box path: {default.rtf / box.rtf:.2f}x)")
        if args.speed_rounds > 0:
            rtf: dict[str, list[float]] = {"default": [default.rtf], "box": [box.rtf]}
            for _ in range(args.speed_rounds):
                rtf["default"].append(run_config(args.video, "blazeface", 5.0, end_s, utts, backend, detectors,
                                                 crop_modes[:1]).rtf)
                rtf["box"].append(run_box_path(args.video, "blazeface", 5.0, end_s, utts, backend, detectors, ["box"]).rtf)
            med_d, med_b = float(np.median(rtf["default"])), float(np.median(rtf["box"]))
            print(f"  {len(rtf['default'])} alternating timings each (the table's and {args.speed_rounds} more): default RTF "
                  f"{' '.join(f'{x:.3f}' for x in rtf['default'])} (median {med_d:.3f}); box path "
                  f"{' '.join(f'{x:.3f}' for x in rtf['box'])} (median {med_b:.3f}); median ratio {med_d / med_b:.2f}x")
    print(f"EXTRAPOLATED to the paper's {PAPER_HOURS:g} h of video at these RTFs on this machine: paper configuration "
          f"{paper.rtf * PAPER_HOURS:.0f} h, default {default.rtf * PAPER_HOURS:.1f} h "
          f"(paper reports {PAPER_GPU_HOURS:g} GPU-hours for its whole pipeline)\n")

    # (c)
    if args.voice:
        v, a = (float(x) for x in args.voice.split(","))
        grid = [(v, a)]
        grid_desc = f"voice fixed at V={v:g}, A={a:g}"
    else:
        grid = [(v, a) for v in (-0.5, 0.0, 0.5) for a in (-0.5, 0.0, 0.5)]
        grid_desc = "voice fixed at each of the 9 points {-0.5, 0, 0.5}^2 in turn"
    bf30 = runs.get("blazeface@30")
    crop_modes = list(paper.by_crop)
    for crop_mode, (ref, title) in itertools.product(
        crop_modes, ((paper, "vs the paper configuration (mtcnn@30)"), (bf30, "vs blazeface@30 (sampling cost only)"))
    ):
        if ref is None:
            continue
        limit = paper_end if ref is paper and paper_end < end_s else None
        print(f"(c) per-utterance face V/A (fer, circumplex approximation) {title}, {_crop_desc(crop_mode)}"
              + (f"; utterances ending by {paper_end:g} s" if limit else ""))
        print(f"    |diff| over utterances both configurations cover; flag = Eq. 1 at T={args.threshold:g}, {grid_desc}")
        print(f"{'configuration':<22}{'utts':>5}{'both':>5}{'1 null':>7}{'MAE V':>8}{'max V':>8}{'MAE A':>8}{'max A':>8}"
              f"{'flag changed':>15}{'null<->flag':>12}")
        for r in runs.values():
            if r is ref:
                continue
            c = compare(r, ref, grid, args.threshold, limit, crop_mode)
            share = f"{c['flag_changed']}/{c['flag_pairs']} ({100 * c['flag_changed'] / c['flag_pairs']:.1f}%)" if c["flag_pairs"] else "-"
            print(f"{r.label:<22}{c['n']:>5}{c['both']:>5}{c['only_one']:>7}{c['mae_v']:>8.3f}{c['max_v']:>8.3f}"
                  f"{c['mae_a']:>8.3f}{c['max_a']:>8.3f}{share:>15}{c['flag_null_changed']:>12}")
        print()
    vals = paper.utts[["start", "end", "face_n"]].rename(columns={"face_n": "paper_n"}).copy()
    vals["default_n"] = default.utts["face_n"].to_numpy()[: len(vals)]
    for crop_mode in crop_modes:
        tag = "al" if crop_mode == "aligned" else crop_mode
        for who, r in (("paper", paper), ("default", default)):
            vals[f"{who}_V_{tag}"] = r.by_crop[crop_mode]["face_valence"].to_numpy()[: len(vals)]
            vals[f"{who}_A_{tag}"] = r.by_crop[crop_mode]["face_arousal"].to_numpy()[: len(vals)]
    print("per utterance, paper (mtcnn@30) vs default (blazeface@5), per crop mode (al: aligned, box: box crops):")
    print(vals.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    for crop_mode in crop_modes:
        counts = {r.label: r.rows_by_crop[crop_mode]["crop_mode"].value_counts().to_dict() for r in runs.values()}
        print(f"crop modes per predicted row under crop_mode={crop_mode!r}: "
              + "; ".join(f"{k} {dict(sorted(v.items()))}" for k, v in counts.items()))
    spread_v = np.nanstd(paper.utts["face_valence"].to_numpy(float))
    spread_a = np.nanstd(paper.utts["face_arousal"].to_numpy(float))
    print(f"\nfor scale: the paper configuration's per-utterance values spread with SD {spread_v:.3f} (V), "
          f"{spread_a:.3f} (A) across utterances; T = {args.threshold:g}.")
    print(f"speaker assignment modes: {', '.join(sorted({r.mode for r in runs.values()}))}")
    print(f"load average at end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


def _crop_desc(crop_mode: str) -> str:
    return (f"aligned crops (eyes + mouth onto the FER2013 template; landmarks: {ALIGN_LANDMARKS[0]})"
            if crop_mode == "aligned" else "box crops (square box + 10 %, as before)")


# --------------------------------------------------------------------------- --clips


def shared_face_clips() -> list[Path]:
    """The shared face videos: ../shared/data/media/*.mp4|.mov, real/mead_faces, real/talking_face."""
    root = DEFAULT_VIDEO.parents[1]
    out = sorted((root / "media").glob("*.mp4")) + sorted((root / "media").glob("*.mov"))
    out += sorted((root / "real/mead_faces").glob("*.mp4")) + sorted((root / "real/talking_face").glob("*.mp4"))
    return out


def matched_rows(a: pd.DataFrame, b: pd.DataFrame, min_iou: float = 0.3) -> list[tuple[int, int]]:
    """(row of a, row of b) for the same face in the same frame: equal times, box IoU >= min_iou,
    best match first, one to one."""
    pairs = []
    bt = {}
    for j, t in enumerate(np.round(b["t"].to_numpy(float), 4)):
        bt.setdefault(t, []).append(j)
    A, B = a[["x1", "y1", "x2", "y2"]].to_numpy(float), b[["x1", "y1", "x2", "y2"]].to_numpy(float)
    by_t: dict = {}
    for i, t in enumerate(np.round(a["t"].to_numpy(float), 4)):
        by_t.setdefault(t, []).append(i)
    for t, ii in by_t.items():
        cand = []
        for i in ii:
            for j in bt.get(t, []):
                iw = max(0.0, min(A[i, 2], B[j, 2]) - max(A[i, 0], B[j, 0]))
                ih = max(0.0, min(A[i, 3], B[j, 3]) - max(A[i, 1], B[j, 1]))
                inter = iw * ih
                union = (A[i, 2] - A[i, 0]) * (A[i, 3] - A[i, 1]) + (B[j, 2] - B[j, 0]) * (B[j, 3] - B[j, 1]) - inter
                if union > 0 and inter / union >= min_iou:
                    cand.append((inter / union, i, j))
        used_i, used_j = set(), set()
        for _, i, j in sorted(cand, reverse=True):
            if i not in used_i and j not in used_j:
                used_i.add(i)
                used_j.add(j)
                pairs.append((i, j))
    return pairs


def clips(args) -> None:
    """(c) only, on several clips: the paper's setup (MTCNN, every frame) vs the default (BlazeFace
    at 5 fps), per crop mode, from the same detections; per utterance (the pseudo-utterances of
    (c)) and, as a diagnostic free of the speaker assignment, per face row matched across the two
    (same frame, box IoU >= 0.3)."""
    from emoguide.media.probe import probe
    from emoguide.vision.emotion import get_face_emotion

    crop_modes = [m for m in args.crop_modes.split(",") if m]
    backend = get_face_emotion("fer").load()
    detectors: dict = {}
    print("emoguide faces benchmark, (c) on the shared face clips: paper (mtcnn@30, every frame) vs default "
          f"(blazeface@5), fer, per crop mode, from the same detections; aligned-crop landmarks: {ALIGN_LANDMARKS[0]}")
    print(f"machine: {os.cpu_count()} CPUs, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())} at start")
    print("per utterance: consecutive 3/2/4 s pseudo-utterances (speaker B, patient; >= 1 s), |diff| over those both "
          "cover; per face row: rows of the two runs in the same frame with box IoU >= 0.3\n")
    head = (f"{'clip':<38}{'crop':<8}{'utts':>5}{'both':>5}{'1 null':>7}{'mean|dV|':>9}{'max':>7}{'mean|dA|':>9}"
            f"{'max':>7}{'rows':>6}{'row|dV|':>8}{'row|dA|':>8}  modes paper / default")
    print(head)
    summary: dict = {m: [] for m in crop_modes}
    t_all = time.perf_counter()
    for clip in args.clips:
        info = probe(clip)
        dur = float(info.duration_s or 0.0)
        end_s = min(dur, args.seconds) if args.seconds else dur
        utts = pseudo_utterances(end_s)
        if not len(utts):
            print(f"{clip.name[:37]:<38}(shorter than 1 s: no utterance)")
            continue
        paper = run_config(clip, "mtcnn", 30.0, end_s, utts, backend, detectors, crop_modes)
        default = run_config(clip, "blazeface", 5.0, end_s, utts, backend, detectors, crop_modes)
        pairs = matched_rows(default.faces, paper.faces)
        for crop_mode in crop_modes:
            c = compare(default, paper, [(0.0, 0.0)], args.threshold, None, crop_mode)
            ra, rb = default.rows_by_crop[crop_mode], paper.rows_by_crop[crop_mode]
            dv = [abs(ra["valence"].iloc[i] - rb["valence"].iloc[j]) for i, j in pairs]
            da = [abs(ra["arousal"].iloc[i] - rb["arousal"].iloc[j]) for i, j in pairs]
            dv = np.array([x for x in dv if np.isfinite(x)])
            da = np.array([x for x in da if np.isfinite(x)])
            modes = " / ".join(
                ",".join(f"{k} {v}" for k, v in sorted(r.rows_by_crop[crop_mode]["crop_mode"].value_counts().items()))
                or "-" for r in (paper, default))
            f = lambda x: f"{x:.3f}" if np.isfinite(x) else "-"  # noqa: E731
            print(f"{clip.name[:37]:<38}{crop_mode:<8}{c['n']:>5}{c['both']:>5}{c['only_one']:>7}{f(c['mae_v']):>9}"
                  f"{f(c['max_v']):>7}{f(c['mae_a']):>9}{f(c['max_a']):>7}{len(dv):>6}"
                  f"{f(dv.mean() if dv.size else np.nan):>8}{f(da.mean() if da.size else np.nan):>8}  {modes}"
                  f"  [{paper.mode}/{default.mode}]")
            summary[crop_mode].append((clip.name, c))
        print(f"{'':<38}(paper {paper.frames} frames, {paper.face_rows} rows, {paper.tracks} tracks; default "
              f"{default.frames} frames, {default.face_rows} rows, {default.tracks} tracks; "
              f"{time.perf_counter() - t_all:.0f} s so far)", flush=True)
    print()
    for crop_mode in crop_modes:
        got = [(n, c) for n, c in summary[crop_mode] if c["both"]]
        ok = [n for n, c in got if c["mae_v"] <= 0.05 and c["mae_a"] <= 0.05]
        print(f"{crop_mode}: clips with an utterance both cover: {len(got)}; mean |dV| and |dA| <= 0.05 on {len(ok)}"
              + (f"; not on: {', '.join(n for n, _ in got if n not in ok)}" if len(ok) < len(got) else ""))
        if got:
            print(f"    over all their utterances: mean |dV| "
                  f"{np.average([c['mae_v'] for _, c in got], weights=[c['both'] for _, c in got]):.3f}, "
                  f"mean |dA| {np.average([c['mae_a'] for _, c in got], weights=[c['both'] for _, c in got]):.3f}")
    print(f"({time.perf_counter() - t_all:.0f} s wall; load average at end: "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())})")


# --------------------------------------------------------------------------- --before-after

LONG_S = 598.4  # benchmarks/run.py's 10-minute session (its dialogue's length)
CACHE = Path.home() / ".cache" / "emoguide-bench"


def long_session_video() -> Path:
    """The 10-minute session's video: run.py's session-10min.mp4 when cached, else the same video
    stream without the dialogue (Pexels clip looped with ffmpeg, same encoder settings)."""
    import subprocess

    full = CACHE / "session-10min.mp4"
    if full.exists():
        return full
    out = CACHE / "faces-10min.mp4"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.stem + ".part.mp4")
        subprocess.run(
            ["ffmpeg", "-y", "-v", "error", "-stream_loop", "-1", "-i", str(DEFAULT_VIDEO), "-map", "0:v:0",
             "-t", f"{LONG_S:.3f}", "-c:v", "libx264", "-preset", "veryfast", "-crf", "28", "-pix_fmt", "yuv420p",
             "-movflags", "+faststart", str(tmp)],
            check=True,
        )
        os.replace(tmp, out)
    return out


def export_rev(rev: str, dest: Path) -> Path:
    """The `src/` tree of git revision `rev`, unpacked into `dest` (read-only on the repository:
    `git archive`, no checkout). Returns the directory to put on PYTHONPATH."""
    import subprocess
    import tarfile

    dest.mkdir(parents=True, exist_ok=True)
    data = subprocess.run(["git", "-C", str(HERE.parent), "archive", rev, "src"], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def _bench_corpus(root: Path, video: Path, utts: pd.DataFrame, duration: float):
    from emoguide.corpus.layout import Corpus

    c = Corpus.open(root, create=True)
    s = c.session("bench")
    s.write_source({"kind": "media", "path": str(video), "probe": {"has_video": True, "duration_s": duration}})
    s.write_utterances(utts)
    return c


def stage_run(corpus_root: Path) -> None:
    """Child process of --before-after: time `faces` then `face_affect` as `run_one` runs them
    (serial executor; model loading and the commits included), print one JSON line."""
    import json

    import emoguide
    from emoguide.corpus.layout import Corpus
    from emoguide.pipeline.runner import run_one

    c = Corpus.open(corpus_root)
    t0, c0 = time.perf_counter(), time.process_time()
    s1 = run_one(c, "faces")
    t1, c1 = time.perf_counter(), time.process_time()
    s2 = run_one(c, "face_affect")
    t2, c2 = time.perf_counter(), time.process_time()
    bad = [str(o) for summ in (s1, s2) for o in summ.outcomes if o.status != "done"]
    rec = c.session("bench").stages.get("face_affect") or {}
    print("RESULT " + json.dumps({"faces_s": t1 - t0, "affect_s": t2 - t1, "bad": bad,
                                  "faces_cpu": c1 - c0, "affect_cpu": c2 - c1,
                                  "src": str(Path(emoguide.__file__).parent),
                                  "crops": (rec.get("extra") or rec).get("crops")}))


def before_after(args) -> None:
    import json
    import subprocess
    import tempfile

    from emoguide.media.probe import probe

    info = probe(args.video)
    dur = float(info.duration_s)
    end_s = min(dur, args.minutes * 60) if args.minutes else dur
    video = args.video
    tmpdir = Path(tempfile.mkdtemp(prefix="emoguide-faces-ba-"))
    if end_s < dur - 0.5:  # a cut of the session (stream copy: same frames up to a key frame)
        video = tmpdir / f"cut-{end_s:g}s.mp4"
        subprocess.run(["ffmpeg", "-y", "-v", "error", "-i", str(args.video), "-t", f"{end_s:.3f}", "-c", "copy",
                        str(video)], check=True)
        dur = float(probe(video).duration_s)
    rev = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", args.before_rev],
                         capture_output=True, text=True).stdout.strip()
    before_src = export_rev(args.before_rev, tmpdir / "before")
    after_src = HERE.parent / "src"
    print("emoguide faces + face_affect: before vs after, one run")
    print(f"video: {video.name}  {info.video.display_width}x{info.video.display_height}, {dur:.2f} s")
    print(f"before: the code at {args.before_rev} ({rev}); after: this working tree. Each: run_one(corpus, "
          "'faces') + run_one(corpus, 'face_affect'), serial executor, in a fresh process and a fresh corpus")
    print(f"machine: {os.cpu_count()} CPUs, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())} at start; "
          "the machine is shared: compare the ratios within this run")
    utts = pseudo_utterances(dur)
    print(f"utterances: {len(utts)} pseudo-utterances (3/2/4 s windows, speaker B, patient); defaults: BlazeFace at "
          "5 fps, fer\n")
    results: list[dict] = []
    for r in range(args.rounds):
        for which, src in (("before", before_src), ("after", after_src)):
            root = tmpdir / f"{which}-{r}"
            c = _bench_corpus(root, video, utts, dur)
            env = dict(os.environ, PYTHONPATH=str(src))
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--stage-run", str(root)],
                                  env=env, capture_output=True, text=True, cwd=str(tmpdir))
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                raise SystemExit(f"{which}: the stage run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
            got = json.loads(line[len("RESULT "):])
            if got["bad"]:
                raise SystemExit(f"{which}: {got['bad']}")
            if Path(got["src"]).resolve() != (Path(src) / "emoguide").resolve():
                raise SystemExit(f"{which}: ran {got['src']}, not {src}")
            sess = c.session("bench")
            results.append({"which": which, "round": r, "faces_s": got["faces_s"], "affect_s": got["affect_s"],
                            "faces_cpu": got["faces_cpu"], "affect_cpu": got["affect_cpu"],
                            "utts": sess.read_utterances(), "faces": pd.read_parquet(sess.faces_path),
                            "crops": got.get("crops"), "load": os.getloadavg()[0]})
            print(f"  round {r + 1} {which:<6}: faces {got['faces_s']:7.1f} s ({got['faces_cpu']:.1f} CPU s), "
                  f"face_affect {got['affect_s']:6.1f} s ({got['affect_cpu']:.1f} CPU s) "
                  f"(crops: {got.get('crops') or 'decoded'}), load {os.getloadavg()[0]:.1f}", flush=True)
    print()
    print(f"{'run':<16}{'faces s':>9}{'RTF':>8}{'face_affect s':>15}{'RTF':>8}{'both s':>9}{'RTF both':>10}")
    for x in results:
        both = x["faces_s"] + x["affect_s"]
        print(f"{x['which'] + ' ' + str(x['round'] + 1):<16}{x['faces_s']:>9.1f}{x['faces_s'] / dur:>8.4f}"
              f"{x['affect_s']:>15.1f}{x['affect_s'] / dur:>8.4f}{both:>9.1f}{both / dur:>10.4f}")

    def med(which: str, key: str) -> float:
        return float(np.median([x[key] for x in results if x["which"] == which]))

    fb, fa = med("before", "faces_s"), med("after", "faces_s")
    ab, aa = med("before", "affect_s"), med("after", "affect_s")
    print(f"\nmedian over rounds   before RTF   after RTF   before/after")
    print(f"faces                {fb / dur:>10.4f}  {fa / dur:>10.4f}  {fb / fa:>12.2f}x")
    print(f"face_affect          {ab / dur:>10.4f}  {aa / dur:>10.4f}  {ab / aa:>12.2f}x")
    print(f"faces + face_affect  {(fb + ab) / dur:>10.4f}  {(fa + aa) / dur:>10.4f}  {(fb + ab) / (fa + aa):>12.2f}x"
          f"   (target: <= 0.03 after)")
    cfb, cfa = med("before", "faces_cpu"), med("after", "faces_cpu")
    cab, caa = med("before", "affect_cpu"), med("after", "affect_cpu")
    print("\nCPU seconds (all threads of the process) per media second, median over rounds: less sensitive to")
    print("the other jobs on a shared machine than the wall-clock RTF above (with 2 threads it can exceed it)")
    print(f"faces                {cfb / dur:>10.4f}  {cfa / dur:>10.4f}  {cfb / cfa:>12.2f}x")
    print(f"face_affect          {cab / dur:>10.4f}  {caa / dur:>10.4f}  {cab / caa:>12.2f}x")
    print(f"faces + face_affect  {(cfb + cab) / dur:>10.4f}  {(cfa + caa) / dur:>10.4f}  {(cfb + cab) / (cfa + caa):>12.2f}x")

    b = next(x for x in results if x["which"] == "before")
    a = next(x for x in results if x["which"] == "after")
    key = ["t", "x1", "y1", "x2", "y2", "score", "track_id"]
    same_rows = len(a["faces"]) == len(b["faces"]) and np.array_equal(
        a["faces"][key].to_numpy(float), b["faces"][key].to_numpy(float))
    print(f"\nface rows: before {len(b['faces'])}, after {len(a['faces'])}; detections and tracks identical: {same_rows}")
    for col in ("valence", "arousal", "lower_energy"):
        x, y = b["faces"][col].to_numpy(float), a["faces"][col].to_numpy(float)
        if len(x) == len(y):
            m = np.isfinite(x) & np.isfinite(y)
            print(f"  per face row {col}: max |diff| {np.abs(x[m] - y[m]).max() if m.any() else float('nan'):.2e}, "
                  f"null in one only: {int((np.isfinite(x) != np.isfinite(y)).sum())}")
    for col in ("face_valence", "face_arousal"):
        x, y = b["utts"][col].to_numpy(float), a["utts"][col].to_numpy(float)
        m = np.isfinite(x) & np.isfinite(y)
        d = np.abs(x[m] - y[m])
        print(f"per utterance {col}: {int(m.sum())}/{len(x)} both non-null, null in one only "
              f"{int((np.isfinite(x) != np.isfinite(y)).sum())}; mean |diff| {d.mean() if d.size else float('nan'):.2e}, "
              f"max {d.max() if d.size else float('nan'):.2e} (target: mean <= 0.01)")
    n_b, n_a = b["utts"]["face_n"], a["utts"]["face_n"]
    print(f"per utterance face_n equal: {bool((n_b.fillna(-1) == n_a.fillna(-1)).all())}")
    print(f"load average at end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


def interpolation(args) -> None:
    """What detecting only every N-th sampled frame would cost (the way to fewer BlazeFace calls):
    the default path's faces table, with the boxes of the other frames replaced by the linear
    interpolation of the same track's detected boxes around them (rows with no detected box on
    both sides within N + 1/2 sampling intervals dropped, landmarks cleared), then face emotion and the
    per-utterance means as usual; compared with the default path per utterance."""
    from emoguide.vision.emotion import get_face_emotion
    from emoguide.vision.face_affect_stage import aggregate_utterances, predict_faces
    from emoguide.vision.faces_stage import FaceSettings, track_video
    from emoguide.vision.speakers import SpeakerSettings, apply_assignments, assign_speakers

    video = args.video
    s = FaceSettings()
    det, backend = s.make_detector().load(), get_face_emotion("fer").load()
    vf = track_video(video, det, fps=s.fps, tracker=s.tracker, end=args.seconds)
    ref_faces = vf.table("bench")
    end = max(vf.times) if vf.times else 0.0
    utts = pseudo_utterances(end)

    def per_utterance(faces: pd.DataFrame) -> pd.DataFrame:
        rows = predict_faces(faces, video, backend)
        res = assign_speakers(rows, utts, SpeakerSettings(), {})
        return aggregate_utterances(utts, apply_assignments(rows, res), backend.id)

    ref = per_utterance(ref_faces)
    print(f"detect every N-th sampled frame, boxes interpolated in between: {video.name}, 0-{end:.1f} s, "
          f"BlazeFace at {s.fps:g} fps, fer; {len(utts)} pseudo-utterances; vs the default path")
    print(f"{'N':>3}{'detector calls':>16}{'rows':>7}{'mean|dV|':>10}{'max|dV|':>9}{'mean|dA|':>10}{'max|dA|':>9}"
          f"{'null in one':>13}")
    times = np.array(sorted(set(vf.times)))
    confirmed = ref_faces[ref_faces["track_id"] >= 0]
    print(f"{1:>3}{len(times):>16}{len(confirmed):>7}{0:>10.4f}{0:>9.4f}{0:>10.4f}{0:>9.4f}{0:>13}")
    for n in (2, 3, 5):
        keyset = set(np.round(times[::n], 6))
        out = []
        for _, g in confirmed.groupby("track_id"):
            g = g.sort_values("t", kind="stable")
            gk = g[np.round(g["t"], 6).isin(keyset)]
            kt = gk["t"].to_numpy(float)
            for _, row in g.iterrows():
                if round(float(row["t"]), 6) in keyset:
                    out.append(row)
                    continue
                j = int(np.searchsorted(kt, row["t"]))
                if j == 0 or j >= len(kt) or kt[j] - kt[j - 1] > (n + 0.5) / s.fps:
                    continue
                a, b = gk.iloc[j - 1], gk.iloc[j]
                w = (row["t"] - a["t"]) / (b["t"] - a["t"])
                r2 = row.copy()
                for c in ("x1", "y1", "x2", "y2"):
                    r2[c] = np.float32((1 - w) * a[c] + w * b[c])
                r2["landmarks"] = None
                out.append(r2)
        sim = pd.DataFrame(out).sort_values("t", kind="stable").reset_index(drop=True).astype(ref_faces.dtypes.to_dict())
        got = per_utterance(sim)
        stats = []
        for c in ("face_valence", "face_arousal"):
            x, y = ref[c].to_numpy(float), got[c].to_numpy(float)
            m = np.isfinite(x) & np.isfinite(y)
            d = np.abs(x - y)[m]
            stats += [d.mean() if d.size else np.nan, d.max() if d.size else np.nan]
        nulls = int((ref["face_valence"].notna() != got["face_valence"].notna()).sum())
        print(f"{n:>3}{len(times[::n]):>16}{len(sim):>7}{stats[0]:>10.4f}{stats[1]:>9.4f}{stats[2]:>10.4f}{stats[3]:>9.4f}"
              f"{nulls:>13}")
    print("target (issue 10): mean |dV|, |dA| <= 0.01")


if __name__ == "__main__":
    raise SystemExit(main())
