"""Build the bundled demo session (src/emoguide/data/demo/demo_session.mp4).

Video: "WolfgangLanger_Pexels.mp4" (Pexels licence; credit "Wolfgang Langer / Pexels"), slowed to
the length of the dialogue. Audio: a short dialogue written for emoguide, spoken by two
espeak-ng voices (therapist off screen, male; patient on screen, female). Needs ffmpeg and
espeak-ng; run from the repository root with ../shared beside it:

    .venv/bin/python scripts/build_demo.py [--video PATH]

The output is committed, so users never need to run this.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from emoguide.speech.synth import synthesize_dialogue

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "src" / "emoguide" / "data" / "demo"
DIALOGUE = [
    ("T", "What brings you in today?"),
    ("P", "Work, I guess. I'm fine, really. It's just a busy season."),
    ("T", "You say you're fine. How has your sleep been?"),
    ("P", "Not great. I lie awake going over everything I said."),
    ("T", "What would be so bad about saying the wrong thing?"),
    ("P", "They would think I can't cope. Then maybe they let me go."),
    ("T", "And what would that mean to you?"),
    ("P", "That I'm a failure. But it's fine. I laugh about it."),
]
VOICES = {"T": "en-us+m3", "P": "en-us+f4"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default=str(ROOT.parent / "shared" / "data" / "media" / "WolfgangLanger_Pexels.mp4"))
    args = ap.parse_args()
    video = Path(args.video)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "dialogue.wav"
        truth = synthesize_dialogue(DIALOGUE, wav, voices=VOICES, gap_s=0.7, speed=150)
        duration = float(truth["end"].max()) + 0.5
        src = float(
            subprocess.run(
                ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(video)],
                check=True, capture_output=True, text=True,
            ).stdout
        )
        factor = max(1.0, duration / src)
        out = OUT_DIR / "demo_session.mp4"
        subprocess.run(
            [
                "ffmpeg", "-y", "-v", "error", "-i", str(video), "-i", str(wav),
                "-filter:v", f"setpts={factor:.4f}*PTS,fps=24000/1001",
                "-map", "0:v:0", "-map", "1:a:0",
                "-c:v", "libx264", "-preset", "slow", "-crf", "30", "-pix_fmt", "yuv420p",
                "-c:a", "aac", "-b:a", "48k", "-ac", "1", "-ar", "16000",
                "-t", f"{duration:.2f}", "-movflags", "+faststart", str(out),
            ],
            check=True,
        )
    truth = truth.assign(role=truth["speaker"].map({"T": "therapist", "P": "patient"}))
    truth.to_csv(OUT_DIR / "demo_session_truth.csv", index=False)
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB, {duration:.1f} s, video slowed x{factor:.2f})")


if __name__ == "__main__":
    main()
