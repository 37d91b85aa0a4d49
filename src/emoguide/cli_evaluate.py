"""`emoguide evaluate`: how far to trust the corpus's columns, measured on the user's references.

`evaluate transcript` compares transcripts, speakers, roles and utterance boundaries with reference
files (RTTM, STM, CHAT, the paper's table, SRT/WebVTT, JSON, AnnoMI); `evaluate affect` compares the
face and voice channels with labelled clips. Both print a table and write CSV + JSON to
`<corpus>/reports/evaluate/` (docs/evaluate.md). Heavy imports stay inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

evaluate_app = typer.Typer(
    help="Measure the corpus against references: `transcript` (WER, DER/JER, speaker attribution, roles, "
    "utterance boundaries) and `affect` (face/voice channels vs labelled clips). Writes "
    "<corpus>/reports/evaluate/.",
    no_args_is_help=True,
)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    try:
        import math

        if isinstance(v, float) and math.isnan(v):
            return "-"
    except TypeError:  # pragma: no cover
        pass
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _usage(message: str, hint: str | None = None) -> typer.Exit:
    from emoguide.cli import _print_error

    _print_error([message] + ([hint] if hint else []))
    return typer.Exit(2)


@evaluate_app.command("transcript")
def transcript_cmd(
    corpus: Annotated[Path, typer.Option("--corpus", "-c", help="Corpus directory (holds corpus.toml).")],
    reference: Annotated[
        list[Path],
        typer.Option("--reference", "-r", help="Reference file or folder (repeatable): .rttm, .stm, .cha, the paper's "
                     "table (.csv/.tsv), .srt, .vtt, .json/.jsonl, the AnnoMI csv. Matched to sessions by name."),
    ],
    collar: Annotated[float, typer.Option("--collar", min=0.0, help="DER/JER collar in seconds, pyannote.metrics' "
                                          "convention: total width centred on each reference boundary "
                                          "(md-eval's -c 0.25 is --collar 0.5).")] = 0.0,
    skip_overlap: Annotated[bool, typer.Option("--skip-overlap", help="Leave overlapped reference speech out of "
                                               "DER/JER and word attribution.")] = False,
    session: Annotated[Optional[list[str]], typer.Option("--session", "-s", help="Only these session ids (repeatable).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default <corpus>/reports/evaluate/).")] = None,
) -> None:
    """WER, DER/JER (+ missed, false alarm, confusion), word speaker attribution, role accuracy and
    utterance boundary precision/recall (within 0.5 s), per session and overall. A figure the
    reference cannot support (an RTTM has no words: no WER) is shown as '-' and written as null."""
    from rich.table import Table

    from emoguide.cli import _open, console, out
    from emoguide.errors import InputError
    from emoguide.evaluation.transcript.run import evaluate_transcripts

    c = _open(corpus)
    try:
        result = evaluate_transcripts(c, reference, collar=collar, skip_overlap=skip_overlap, sessions=session,
                                      out_dir=out_dir)
    except InputError as exc:
        raise _usage(str(exc), "fix or leave out that reference file; nothing was evaluated") from None
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    table = Table(title=f"emoguide evaluate transcript (collar {collar:g} s{', overlap skipped' if skip_overlap else ''})")
    cols = [("session", "session_id"), ("ref", "format"), ("WER", "wer"), ("DER", "der"), ("miss", "missed_s"),
            ("FA", "false_alarm_s"), ("conf", "confusion_s"), ("JER", "jer"), ("attrib", "attribution"),
            ("role", "role_accuracy"), ("bnd P", "boundary_precision"), ("bnd R", "boundary_recall"),
            ("spk ref/hyp", None)]
    for name, _ in cols:
        table.add_column(name, justify="left" if name in ("session", "ref") else "right")
    for r in [*result.rows, *([result.overall] if result.overall else [])]:
        cells = []
        for name, key in cols:
            if key is None:
                cells.append("" if r["session_id"] == "ALL" else f"{r['ref_speakers']}/{r['hyp_speakers']}")
            elif key in ("missed_s", "false_alarm_s", "confusion_s"):
                cells.append(_fmt(r.get(key), 1))
            else:
                cells.append(_fmt(r.get(key)))
        table.add_row(*cells, end_section=r is result.rows[-1] if result.rows else False)
    out.print(table)
    console.print("miss / FA / conf: seconds of missed speech, false alarm and speaker confusion; "
                  "'-': the reference cannot support the figure (null in the files).", style="dim")
    for u in result.unmatched_references:
        console.print(f"[yellow]no session matches[/] reference {u['reference']!r} ({u['file']})", highlight=False)
    if result.sessions_without_reference:
        console.print(f"sessions without a reference: {', '.join(result.sessions_without_reference)}", highlight=False)
    for f in result.failed:
        console.print(f"[red]failed:[/] {f['session_id']} against {f['reference']}: {f['error']}", highlight=False)
    console.print(f"wrote {result.csv_path} and {result.json_path}", highlight=False)
    if not result.rows and not result.failed:
        console.print("[red]error:[/] no reference matched a session of the corpus (names are compared "
                      "case-insensitively with session ids and media file names)", highlight=False)
        raise typer.Exit(1)
    if result.failed:
        raise typer.Exit(1)


@evaluate_app.command("affect")
def affect_cmd(
    corpus: Annotated[Path, typer.Option("--corpus", "-c", help="Corpus directory (holds corpus.toml).")],
    labels: Annotated[Optional[Path], typer.Option("--labels", "-l", help="Labels CSV: session (or file name), optional "
                                                   "start/end, label and/or valence/arousal, optional arousal_group.")] = None,
    labels_from_names: Annotated[Optional[str], typer.Option("--labels-from-names", help="Decode labels from the "
                                                             "sessions' media file names: ravdess or mead.")] = None,
    session: Annotated[Optional[list[str]], typer.Option("--session", "-s", help="Only these session ids (repeatable).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default <corpus>/reports/evaluate/).")] = None,
) -> None:
    """Accuracy and macro-F1 of the channels' labels, AUC of arousal for high- vs low-arousal items,
    valence AUC/separation for positive vs negative items, Pearson/Spearman r against dimensional
    labels, for the face_* and voice_* channels."""
    from rich.table import Table

    from emoguide.cli import _open, console, out
    from emoguide.errors import InputError
    from emoguide.evaluation.affect_eval.run import evaluate_affect

    if (labels is None) == (labels_from_names is None):
        raise _usage("give exactly one of --labels FILE or --labels-from-names ravdess|mead")
    if labels_from_names is not None and labels_from_names.strip().lower() not in ("ravdess", "mead"):
        raise _usage(f"--labels-from-names: {labels_from_names!r} is not ravdess or mead")
    c = _open(corpus)
    if labels is not None:
        from emoguide.evaluation.affect_eval.labels import read_labels

        try:
            read_labels(labels)  # a bad labels file is a usage error: nothing is evaluated
        except InputError as exc:
            raise _usage(str(exc), "fix the labels file") from None
    result = evaluate_affect(c, labels, from_names=labels_from_names, sessions=session, out_dir=out_dir)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    table = Table(title="emoguide evaluate affect")
    cols = [("channel", "channel"), ("items", "n_items"), ("with value", "n_covered"), ("acc", "accuracy"),
            ("macro-F1", "macro_f1"), ("arousal AUC", "arousal_auc"), ("hi/lo", None), ("valence AUC", "valence_auc"),
            ("V sep", "valence_separation"), ("r(V)", "valence_pearson"), ("r(A)", "arousal_pearson"), ("source", "source")]
    for name, _ in cols:
        table.add_column(name, justify="left" if name in ("channel", "source") else "right")
    for m in result.metrics:
        table.add_row(*[f"{m['n_high']}/{m['n_low']}" if key is None else _fmt(m.get(key)) for _, key in cols])
    out.print(table)
    console.print("'-': no value (the channel gave none for these items, or a group is empty); "
                  "items without a channel value are left out of its figures.", style="dim")
    if result.unmatched_labels:
        console.print(f"[yellow]labels matching no session:[/] {', '.join(result.unmatched_labels)}", highlight=False)
    if result.unlabelled_sessions:
        console.print(f"sessions without labels: {', '.join(result.unlabelled_sessions)}", highlight=False)
    console.print(f"wrote {result.csv_path}, {result.items_path} and {result.json_path}", highlight=False)
