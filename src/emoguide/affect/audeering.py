"""audeering's dimensional speech emotion model (the paper's Appendix C voice model).

Model: `audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim` (Wagner et al. 2023, "Dawn of the
transformer era in speech emotion recognition"; CC BY-NC-SA 4.0). A wav2vec2-large-robust encoder
pruned to 12 layers, fine-tuned on MSP-Podcast; the hidden states of the last layer are averaged
over time and a regression head (dense -> tanh -> dropout -> linear) gives three values, in this
order: arousal, dominance, valence, each roughly in [0, 1].

The classes here mirror the code on the model card (`EmotionModel`, `RegressionHead`, with the
submodules named `wav2vec2` and `classifier.dense` / `classifier.out_proj`) so the published state
dict loads unchanged. Input features are what the model card's `Wav2Vec2Processor` produces: the
raw 16 kHz signal normalised to zero mean and unit variance (`do_normalize` in
`preprocessor_config.json`), no padding, no attention mask.

emoguide converts the outputs to its [-1, 1] convention with 2x - 1 (clamped) and maps them by name
(the config's `id2label`, or the published order when the labels are generic). Long utterances are
cut into windows (10 s, 2.5 s overlap, the last one aligned to the end) and the window outputs are
averaged; `n_windows` records how many.

Weights are never downloaded implicitly: `model_path` is a local directory (config.json +
model.safetensors or pytorch_model.bin), or a hub name that is looked up in the local Hugging Face
cache only, unless `allow_download=True` (a machine that is online, by the user's choice).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from emoguide.affect.voice import (
    VoiceAffect,
    VoiceEstimate,
    VoiceModelError,
    clip_unit,
    register,
    unavailable,
    version_of,
)
from emoguide.errors import require

DEFAULT_MODEL = "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim"
#: the published head's output order
OUTPUT_ORDER = ("arousal", "dominance", "valence")
LICENCE = "CC BY-NC-SA 4.0"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
EXTRA = "voice-model"
#: the shortest input the wav2vec2 feature encoder accepts (its first conv: kernel 10, stride 5, ...)
MIN_SAMPLES = 400


def _torch():
    return require("torch", EXTRA, "the audeering voice model runs on PyTorch")


def _transformers():
    return require("transformers", EXTRA, "the audeering voice model is a transformers Wav2Vec2Model")


@lru_cache(maxsize=1)
def model_classes() -> tuple[type, type]:
    """(RegressionHead, EmotionModel), defined on first use so torch is imported lazily."""
    torch = _torch()
    transformers = _transformers()
    nn = torch.nn

    class RegressionHead(nn.Module):
        """Classification head (model card): dropout -> dense -> tanh -> dropout -> out_proj."""

        def __init__(self, config):
            super().__init__()
            self.dense = nn.Linear(config.hidden_size, config.hidden_size)
            self.dropout = nn.Dropout(getattr(config, "final_dropout", 0.0))
            self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

        def forward(self, features, **kwargs):
            x = self.dropout(features)
            x = self.dense(x)
            x = torch.tanh(x)
            x = self.dropout(x)
            return self.out_proj(x)

    class EmotionModel(transformers.Wav2Vec2PreTrainedModel):
        """Speech emotion regressor (model card): wav2vec2 -> mean over time -> RegressionHead."""

        def __init__(self, config):
            super().__init__(config)
            self.config = config
            self.wav2vec2 = transformers.Wav2Vec2Model(config)
            self.classifier = RegressionHead(config)
            self.post_init()

        def forward(self, input_values):
            outputs = self.wav2vec2(input_values)
            hidden_states = outputs[0]
            hidden_states = torch.mean(hidden_states, dim=1)
            logits = self.classifier(hidden_states)
            return hidden_states, logits

    return RegressionHead, EmotionModel


def normalise(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance: `Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm` (no padding)."""
    x = x.astype(np.float32, copy=False)
    return ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32)


def window_starts(n: int, win: int, hop: int) -> list[int]:
    """Starts of windows of `win` samples every `hop`, the last aligned to the end; [0] if n <= win."""
    if n <= win:
        return [0]
    starts = list(range(0, n - win, hop))
    if not starts or starts[-1] != n - win:
        starts.append(n - win)
    return starts


def _is_hub_name(text: str) -> bool:
    return (
        "/" in text
        and text.count("/") == 1
        and not text.startswith((".", "/", "~"))
        and not os.path.isabs(text)
        and all(part.strip() for part in text.split("/"))
    )


def output_names(config: Any) -> tuple[str, ...]:
    """Output index -> dimension, from the config's id2label when it names the dimensions."""
    id2label = getattr(config, "id2label", None) or {}
    n = int(getattr(config, "num_labels", len(id2label) or 3))
    names = []
    for i in range(n):
        lab = str(id2label.get(i, id2label.get(str(i), ""))).strip().lower()
        names.append(lab)
    if n == 3 and sorted(names) == sorted(OUTPUT_ORDER):
        return tuple(names)
    if n != 3:
        raise VoiceModelError(f"the voice model has {n} outputs; expected 3 (arousal, dominance, valence)")
    return OUTPUT_ORDER


@register("audeering", "wav2vec2-msp-dim", "w2v2-msp-dim")
class AudeeringVAD(VoiceAffect):
    """Arousal, dominance and valence from audeering's wav2vec2 MSP-Podcast model."""

    name = "audeering"
    dimensions = ("valence", "arousal", "dominance")
    approximate = False
    sample_rate = 16000

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        window_s: float = 10.0,
        hop_s: float = 7.5,
        batch_size: int = 4,
        device: str | None = None,
        allow_download: bool = False,
        revision: str | None = None,
    ) -> None:
        super().__init__()
        if window_s <= 0 or hop_s <= 0 or hop_s > window_s:
            raise ValueError("need 0 < hop_s <= window_s")
        self.model_path = str(model_path) if model_path is not None else (os.environ.get("EMOGUIDE_VOICE_MODEL") or DEFAULT_MODEL)
        self.window_s = float(window_s)
        self.hop_s = float(hop_s)
        self.batch_size = max(1, int(batch_size))
        self.device = device
        self.allow_download = bool(allow_download)
        self.revision = revision
        self.model = None
        self.names: tuple[str, ...] = OUTPUT_ORDER
        self.do_normalize = True

    # ------------------------------------------------------------------ identity

    @property
    def local_dir(self) -> Path | None:
        p = Path(self.model_path).expanduser()
        return p if p.exists() else None

    @property
    def id(self) -> str:
        d = self.local_dir
        label = d.name if d is not None else self.model_path
        return f"audeering-msp-dim({label})"

    def settings(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "id": self.id,
            "model": self.model_path if self.local_dir is None else str(self.local_dir.resolve()),
            "revision": self.revision,
            "window_s": self.window_s,
            "hop_s": self.hop_s,
        }

    def versions(self) -> dict[str, str]:
        return {
            "numpy": version_of("numpy"),
            "torch": version_of("torch"),
            "transformers": version_of("transformers"),
            "licence": LICENCE,
        }

    def model_files(self) -> list[Path]:
        d = self.local_dir
        if d is None or not d.is_dir():
            return []
        names = ["config.json", "preprocessor_config.json", *WEIGHT_FILES]
        return [d / n for n in names if (d / n).is_file()]

    # ------------------------------------------------------------------ loading

    def _resolve(self) -> tuple[str, dict[str, Any]]:
        """What to pass to from_pretrained, and its keyword arguments; raises VoiceModelError."""
        d = self.local_dir
        hint = (
            f"download the model on a machine with network access, e.g. "
            f"`huggingface-cli download {DEFAULT_MODEL} --local-dir DIR` (licence {LICENCE}), copy DIR "
            f"here and pass it with --voice-model DIR (or model_path=DIR)"
        )
        if d is not None:
            if not d.is_dir():
                raise VoiceModelError(f"{d}: expected a model directory (config.json + weights), found a file")
            if not (d / "config.json").is_file():
                raise VoiceModelError(f"{d}: no config.json; is this a saved transformers model directory? {hint}")
            if not any((d / n).is_file() for n in WEIGHT_FILES):
                raise VoiceModelError(f"{d}: no weights ({' or '.join(WEIGHT_FILES[:2])}). {hint}")
            return str(d), {"local_files_only": True}
        if not _is_hub_name(self.model_path):
            raise VoiceModelError(f"{self.model_path}: no such model directory. {hint}")
        kw: dict[str, Any] = {"local_files_only": not self.allow_download}
        if self.revision:
            kw["revision"] = self.revision
        return self.model_path, kw

    def _load(self) -> None:
        torch = _torch()
        _, EmotionModel = model_classes()
        source, kw = self._resolve()
        hf_logging = _transformers().utils.logging
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a batch shows its own progress
        try:
            model, info = EmotionModel.from_pretrained(source, output_loading_info=True, **kw)
        except (OSError, ValueError, EnvironmentError) as exc:
            where = "the local Hugging Face cache" if kw.get("local_files_only") else "the Hugging Face hub"
            msg = f"could not load the voice model {source!r} from {where}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if self.local_dir is None:
                msg += (
                    f". emoguide never downloads weights unless asked (allow_download=True on a machine that is "
                    f"online). Otherwise download {DEFAULT_MODEL} elsewhere (licence {LICENCE}), copy the "
                    f"directory here and pass it with --voice-model DIR"
                )
            raise VoiceModelError(msg) from exc
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        missing = sorted(k for k in info.get("missing_keys", []) if "masked_spec_embed" not in k)
        head = [k for k in missing if k.startswith("classifier.")]
        if head:
            raise VoiceModelError(
                f"{source}: the checkpoint has no regression head ({', '.join(head)} missing): "
                "not an audeering emotion model"
            )
        if missing:  # a randomly initialised encoder would give confident nonsense
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise VoiceModelError(f"{source}: weights missing from the checkpoint: {', '.join(missing[:5])}{more}")
        self.names = output_names(model.config)
        self.do_normalize = True
        if self.local_dir is not None:
            pre = self.local_dir / "preprocessor_config.json"
            if pre.is_file():
                try:
                    self.do_normalize = bool(json.loads(pre.read_text()).get("do_normalize", True))
                except (OSError, ValueError):
                    pass
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._device = device
        self.model = model.to(device).eval()

    # ------------------------------------------------------------------ prediction

    def raw_outputs(self, audio: np.ndarray) -> np.ndarray:
        """The head's outputs per window, shape (n_windows, 3), in the model's own order and scale."""
        torch = _torch()
        win = int(round(self.window_s * self.sample_rate))
        hop = int(round(self.hop_s * self.sample_rate))
        starts = window_starts(audio.size, win, hop)
        chunks = [audio[s : s + win] for s in starts]
        if self.do_normalize:
            chunks = [normalise(c) for c in chunks]
        outs: list[np.ndarray] = []
        with torch.inference_mode():
            for i in range(0, len(chunks), self.batch_size):
                batch = chunks[i : i + self.batch_size]
                if len({c.size for c in batch}) == 1:
                    x = torch.from_numpy(np.stack(batch)).to(self._device)
                    outs.append(self.model(x)[1].float().cpu().numpy())
                else:  # only a single clip shorter than a window can differ; run one by one
                    for c in batch:
                        x = torch.from_numpy(c[None, :]).to(self._device)
                        outs.append(self.model(x)[1].float().cpu().numpy())
        return np.concatenate(outs, axis=0)

    def _predict(self, audio: np.ndarray) -> VoiceEstimate:
        if audio.size < MIN_SAMPLES:
            return unavailable("too short")
        if not np.isfinite(audio).all():
            raise ValueError("audio contains NaN or infinite samples")
        if float(np.max(np.abs(audio))) == 0.0:
            return unavailable("silent")
        raw = self.raw_outputs(audio)
        mean = raw.mean(axis=0)
        values = {name: clip_unit(2.0 * float(v) - 1.0) for name, v in zip(self.names, mean)}
        return VoiceEstimate(
            valence=values.get("valence"),
            arousal=values.get("arousal"),
            dominance=values.get("dominance"),
            label=None,
            n_windows=int(raw.shape[0]),
        )
