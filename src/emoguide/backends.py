"""What every model-holding backend shares: `load()` separate from `__init__`, done
once, so a backend can be built cheaply (registries, tests, settings hashes) and loaded when used."""

from __future__ import annotations


class LazyModel:
    """Subclasses put the expensive part in `_load()`; `load()` runs it once and returns self."""

    def __init__(self) -> None:
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self):
        if not self._loaded:
            self._load()
            self._loaded = True
        return self

    def _load(self) -> None:
        return None
