"""The roles stage: therapist/patient per speaker, for every session, with overrides last."""

from __future__ import annotations

from collections.abc import Iterable

from emoguide.config import LLMSettings, RolesSettings
from emoguide.corpus import Corpus
from emoguide.errors import EmoguideError
from emoguide.runner.summary import BatchSummary
from emoguide.speech import roles as R


def run_roles(
    corpus: Corpus,
    settings: RolesSettings,
    sessions: Iterable[str] | None = None,
    force: bool = False,
    llm_settings: LLMSettings | None = None,
) -> BatchSummary:
    """Infer roles where they are unknown (or always, with method set), then apply overrides.

    Roles that came with a transcript file (a Role column, speaker names, `--role`) are kept as
    "given" unless every speaker is unknown; overrides from `roles.json` always win.
    """
    summary = BatchSummary("roles")
    backend = None
    for session in corpus.sessions(sessions):
        ov_path = R.overrides_path(session.path)
        run = session.stage(
            "roles",
            settings=settings,
            upstream=["ingest", "utterances"],
            inputs=[ov_path] if ov_path.exists() else [],
        )
        if run.current and not force:
            summary.add(session.id, "roles", "skipped", "unchanged")
            continue
        try:
            with run:
                df = session.read_utterances()
                if df.empty:
                    run.warn("no utterances")
                    summary.add(session.id, "roles", "skipped", "no utterances")
                    continue
                # Roles as first given (by the transcript or an earlier run) are kept in a column,
                # so overrides and re-inference always start from the same place.
                if "role_given" not in df.columns:
                    df["role_given"] = df["role"]
                given = df["role_given"].fillna("unknown")
                if (given != "unknown").any():
                    assignment = R.RoleAssignment(
                        dict(zip(df["speaker"].astype(str), given)), 1.0, "given", "roles came with the transcript"
                    )
                elif settings.method == "llm" and settings.llm_model:
                    if backend is None:
                        from emoguide.llm.registry import get_backend

                        backend = get_backend(settings.llm_model, llm_settings or LLMSettings())
                        backend.load()
                    ls = llm_settings or LLMSettings()
                    assignment = R.llm_roles(
                        df, backend, temperature=0.0, max_tokens=64, seed=ls.seed, timeout=ls.timeout_s
                    )
                else:
                    assignment = R.heuristic_roles(df)
                overrides = R.read_overrides(session.path)
                df = R.apply_roles(df, assignment, overrides)
                run.extra["roles"] = {**assignment.to_dict(), "overrides": overrides}
                run.backends["roles"] = assignment.method
                if assignment.confidence < 0.75 and not overrides:
                    run.warn(
                        f"low role confidence {assignment.confidence:.2f} ({assignment.reason}); "
                        f"check with `emoguide roles --corpus {corpus.root} {session.id} --set A=therapist`"
                    )
                session.write_utterances(df)
        except (EmoguideError, ValueError, KeyError, OSError) as exc:
            summary.add(session.id, "roles", "failed", str(exc))
            continue
        final = {s: r for s, r in zip(df["speaker"], df["role"])}
        desc = ", ".join(f"{s}={r}" for s, r in sorted(final.items()))
        summary.add(session.id, "roles", "done", f"{desc} ({assignment.method}, conf {assignment.confidence:.2f})")
    return summary
