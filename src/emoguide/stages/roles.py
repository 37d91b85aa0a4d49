"""Stage `roles`: therapist/patient per speaker, with the user's overrides applied last.

Reads the utterance rows (speakers, text, and roles that came with a transcript); writes the
`role` column and `role_given` (the roles as first given, so overrides and re-inference always
start from the same place). Roles given by a transcript are kept, row by row (a speaker label
whose Role column says therapist on some rows and patient on others keeps both, with a warning
and a confidence below 1), unless every speaker is unknown; otherwise the heuristic (default) or an LLM pass infers them. `sessions/<id>/roles.json`
(`emoguide roles --set A=therapist`) always wins and is an input of the fingerprint, so editing
it reruns this stage and its downstream, and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from emoguide.config import LLMSettings
from emoguide.pipeline.stage import NotApplicable, Resources, Result, SessionView, Stage

#: Below this confidence (and with no override) the run warns and says how to fix it.
LOW_CONFIDENCE = 0.75


class RolesStageSettings(BaseModel):
    """`[roles]` in corpus.toml, plus `[llm]` for the optional LLM pass."""

    method: str = Field("heuristic", description="heuristic | llm (the LLM pass runs only where no role was given)")
    llm_model: str | None = Field(None, description="provider:model for the LLM pass (method llm)")
    llm: LLMSettings = Field(default_factory=LLMSettings, description="[llm]: how the LLM backend is built")

    @property
    def uses_llm(self) -> bool:
        return self.method == "llm" and bool(self.llm_model)


class RolesStage(Stage[RolesStageSettings]):
    name = "roles"
    help = "Therapist/patient per speaker (heuristic or LLM); overrides from roles.json win."
    Settings = RolesStageSettings
    reads = ("utterances",)
    writes = ("utterances:role",)
    columns: ClassVar = {"utterances:role": ("role", "role_given")}
    version = 2  # 2: given roles kept per row (a speaker whose rows give both roles keeps both)
    resources = Resources(cpus=1, memory_mb=200)

    def __init__(self, settings: RolesStageSettings | None = None):
        super().__init__(settings)
        if self.settings.uses_llm:  # an in-process model needs room; an HTTP one does not hurt
            self.resources = Resources(cpus=1, memory_mb=3000)
        self._backend = None
        self._load_error: Exception | None = None

    @classmethod
    def from_corpus_settings(cls, settings: Any) -> "RolesStage":
        if settings is None:
            return cls()
        roles = settings.roles.model_dump() if isinstance(settings.roles, BaseModel) else dict(settings.roles or {})
        return cls(RolesStageSettings.model_validate({**roles, "llm": settings.llm}))

    def settings_for_hash(self) -> Any:
        s = self.settings
        out: dict[str, Any] = {"method": s.method, "llm_model": s.llm_model}
        if s.uses_llm:  # the heuristic ignores [llm]; only what changes the LLM's answer counts
            out["llm"] = {"seed": s.llm.seed, "n_ctx": s.llm.n_ctx, "format_hint": s.llm.format_hint,
                          "structured": s.llm.structured}
        return out

    def inputs(self, session: SessionView) -> list[Path]:
        from emoguide.speech.roles import overrides_path

        p = overrides_path(session.path)
        return [p] if p.exists() else []

    def __getstate__(self) -> dict[str, Any]:  # the backend is loaded in the worker, never pickled
        state = dict(self.__dict__)
        state["_backend"] = None
        state["_load_error"] = None
        return state

    def setup(self) -> None:
        if not self.settings.uses_llm or self._backend is not None:
            return
        from emoguide.llm.registry import get_backend
        from emoguide.threads import cpu_threads

        llm = self.settings.llm
        if llm.n_threads is None and cpu_threads() is not None:  # llama.cpp honours the worker's cap
            llm = llm.model_copy(update={"n_threads": cpu_threads()})
        try:
            backend = get_backend(self.settings.llm_model, llm)
            backend.load()
        except Exception as exc:  # remembered: every session that needs it fails, none retries
            self._load_error = exc
            return
        self._backend = backend

    def run(self, session: SessionView) -> Result:
        from emoguide.speech import roles as R

        df = session.utterances()
        if df.empty:
            raise NotApplicable("no utterances")
        if "role_given" not in df.columns:
            df["role_given"] = df["role"]
        given = df["role_given"].astype("string").fillna("unknown")
        per_row = None
        if (given != "unknown").any():
            # Per speaker by majority; each row keeps the role its transcript gave (a speaker label
            # whose rows alternate therapist/patient is not flattened to its last row's role).
            assignment = R.given_roles(df["speaker"], given)
            per_row = given
        elif self.settings.uses_llm:
            if self._backend is None and self._load_error is None:  # run() without setup()
                self.setup()
            if self._load_error is not None:
                raise self._load_error
            ls = self.settings.llm
            assignment = R.llm_roles(df, self._backend, temperature=0.0, max_tokens=64, seed=ls.seed, timeout=ls.timeout_s)
        else:
            assignment = R.heuristic_roles(df)
        overrides = R.read_overrides(session.path)
        df = R.apply_roles(df, assignment, overrides, per_row=per_row)
        res = Result()
        res.extra["roles"] = {**assignment.to_dict(), "overrides": overrides}
        res.backends["roles"] = assignment.method
        if assignment.mixed and not set(assignment.mixed) <= set(overrides):
            res.warn(
                f"{assignment.reason.removeprefix('roles came with the transcript; ')} "
                f"(role confidence {assignment.confidence:.2f}); if one label holds two people, give them "
                f"different Speaker names, or set one role with `emoguide roles --corpus {session.corpus_root} "
                f"{session.id} --set A=therapist`"
            )
        elif assignment.confidence < LOW_CONFIDENCE and not overrides:
            res.warn(
                f"low role confidence {assignment.confidence:.2f} ({assignment.reason}); "
                f"check with `emoguide roles --corpus {session.corpus_root} {session.id} --set A=therapist`"
            )
        final = {**assignment.roles, **overrides}
        for spk, g in df.groupby(df["speaker"].astype(str), sort=False):
            if g["role"].nunique() > 1:
                final[spk] = "/".join(sorted(g["role"].astype(str).unique()))
        desc = ", ".join(f"{s}={r}" for s, r in sorted(final.items()))
        res.summary = f"{desc} ({assignment.method}, conf {assignment.confidence:.2f})"
        out = df[["index", "role", "role_given"]].copy()
        out["role_given"] = out["role_given"].astype("string")
        res.tables["utterances:role"] = out
        return res
