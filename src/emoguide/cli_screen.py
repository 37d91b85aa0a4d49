"""`emoguide screen`: run the risk screen on a statement or a file, so a team can audit it on its
own material (docs/safety.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True, highlight=False)

OUTPUT_COLUMNS = ["text", "risk_flag", "risk_level", "risk_categories", "risk_score", "risk_evidence", "risk_screen", "risk_terms"]
ID_COLUMNS = ["session_id", "index", "speaker", "role"]


def _fail(msg: str, code: int = 2) -> None:
    console.print(f"[red]error:[/] {escape(msg)}", highlight=False)
    raise typer.Exit(code)


def _build_screen(model_dir: Optional[Path], llm: Optional[str], lexical_only: bool, no_context: bool):
    from emoguide import safety

    if lexical_only:
        return safety.load_screen()
    from emoguide.risk import RiskScreen

    try:
        scr = RiskScreen(model_path=model_dir, llm=llm, use_context=not no_context)
    except (ValueError, OSError) as exc:
        _fail(str(exc))
    if scr.semantic_error:
        console.print(
            f"[red]error:[/] semantic layer unavailable: {escape(scr.semantic_error)}\n"
            f"screening with the lexical layer only; rows are marked risk_screen={scr.id}",
            highlight=False,
        )
    for w in scr.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    return scr


def _read_statements(path: Path, column: str):
    """A plain table of statements (CSV/TSV/JSONL with `column`), or None when it is a transcript."""
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv", ".tab", ".txt"):
            # .csv is comma-separated: the sniffer (sep=None) takes a letter for the delimiter of a one-column file
            sep = "\t" if suffix in (".tsv", ".tab") else ("," if suffix == ".csv" else None)
            df = pd.read_csv(path, sep=sep, engine="python", dtype=str, keep_default_na=False)
        elif suffix in (".jsonl", ".ndjson"):
            df = pd.read_json(path, lines=True, dtype=False)
        else:
            return None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        _fail(f"{path}: cannot read as a table: {exc}")
    cols = {str(c).lower() for c in df.columns}
    if column in df.columns and not ({"role", "speaker"} & cols):
        return df
    return None


def _read_transcript(path: Path, column: str):
    import pandas as pd

    from emoguide.errors import EmoguideError
    from emoguide.transcripts import read_transcript_file

    try:
        parsed = read_transcript_file(path)
    except EmoguideError as exc:
        _fail(f"{exc} (for a plain list of statements, give a CSV/TSV/JSONL with a {column!r} column)")
    frames = []
    for p in parsed:
        frames.append(p.utterances.assign(session_id=p.session_id) if "session_id" not in p.utterances else p.utterances)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"text": []})


def _write(df, dest: Path) -> None:
    from emoguide.corpus.atomic import write_text

    suffix = dest.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        text = "".join(json.dumps({k: (None if _na(v) else v) for k, v in row.items()}, ensure_ascii=False, default=str) + "\n"
                       for row in df.to_dict(orient="records"))
    elif suffix in (".csv", ".tsv", ".tab"):
        text = df.to_csv(index=False, sep="\t" if suffix in (".tsv", ".tab") else ",")
    else:
        _fail(f"{dest}: --out must end in .csv, .tsv or .jsonl")
    write_text(dest, text)


def _na(v) -> bool:
    import pandas as pd

    try:
        return v is None or bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def screen_command(
    file: Annotated[Optional[Path], typer.Argument(help="CSV/TSV/JSONL of statements, or a transcript (any format `emoguide ingest` reads).")] = None,
    text: Annotated[Optional[str], typer.Option("--text", "-t", help="Screen one statement.")] = None,
    previous: Annotated[Optional[str], typer.Option("--previous", help="With --text: the previous patient utterance (context).")] = None,
    column: Annotated[str, typer.Option("--column", help="The column holding the statements (plain tables).")] = "text",
    context_column: Annotated[Optional[str], typer.Option("--context-column", help="Plain tables: a column with each statement's previous patient utterance.")] = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write .csv/.tsv/.jsonl instead of printing CSV.")] = None,
    llm: Annotated[Optional[str], typer.Option("--llm", help="Add the LLM layer with this model (provider:model). Off by default.")] = None,
    model_dir: Annotated[Optional[Path], typer.Option("--model-dir", help="Sentence-transformers model directory (default: the packaged all-MiniLM-L6-v2).")] = None,
    lexical_only: Annotated[bool, typer.Option("--lexical-only", help="Only the lexical layer (lexical-v1).")] = False,
    no_context: Annotated[bool, typer.Option("--no-context", help="Do not read statements with the previous one.")] = False,
    all_roles: Annotated[bool, typer.Option("--all-roles", help="Transcripts: screen every utterance, not only the patient's.")] = False,
) -> None:
    """Screen statements for suicide, self-harm and harm-to-others risk (risk-v2; a research screen, not a clinical instrument)."""
    import pandas as pd

    from emoguide import safety

    if (file is None) == (text is None):
        _fail("give either --text \"...\" or a FILE")
    if file is not None and not file.is_file():
        _fail(f"{file}: no such file")
    scr = _build_screen(model_dir, llm, lexical_only, no_context)
    if text is not None:
        df = pd.DataFrame({"session_id": ["cli"] * (2 if previous else 1), "role": ["patient"] * (2 if previous else 1),
                           "text": ([previous] if previous else []) + [text]})
        res = safety.screen_utterances(df, screen=scr).iloc[[-1]]
        row = res.iloc[0]
        for col in OUTPUT_COLUMNS:
            val = row[col]
            if col == "risk_evidence" and not _na(val):
                val = "; ".join(json.loads(val)) or "-"
            out.print(f"{col}: {'' if _na(val) else escape(str(val))}")
        if out_path is not None:
            _write(res[OUTPUT_COLUMNS], out_path)
        return
    plain = _read_statements(file, column)
    if plain is not None:
        df = plain.copy()
        stmts = df[column].astype("string")
        work = pd.DataFrame({"text": stmts, "role": "patient"})
        if context_column:
            if context_column not in df.columns:
                _fail(f"{file}: no column {context_column!r}; columns: {list(df.columns)}")
            readings = _screen_with_given_context(scr, list(stmts), list(df[context_column]))
            res = pd.DataFrame(readings, index=df.index)
        else:
            # rows of a statement list are independent: no context between them
            work["session_id"] = range(len(work))
            res = safety.screen_utterances(work, screen=scr, context=False)
        result = df.drop(columns=[c for c in OUTPUT_COLUMNS if c in df.columns and c != column])
        for c in OUTPUT_COLUMNS[1:]:
            result[c] = res[c].to_numpy()
        if column != "text":
            result = result.rename(columns={column: "text"}) if "text" not in result.columns else result
    else:
        utts = _read_transcript(file, column)
        roles = ("patient", "therapist", "unknown") if all_roles else ("patient", "unknown")
        res = safety.screen_utterances(utts, roles=roles, screen=scr, context=not no_context)
        result = res[[c for c in ID_COLUMNS if c in res.columns] + OUTPUT_COLUMNS]
    if out_path is not None:
        _write(result, out_path)
        n = int(result["risk_flag"].fillna(False).astype(bool).sum())
        console.print(f"{n} of {int(result['risk_flag'].notna().sum())} screened statements flagged; wrote {out_path}")
    else:
        out.file.write(result.to_csv(index=False))


def _screen_with_given_context(scr, texts: list, previous: list) -> list[dict]:
    from emoguide.safety import LexicalScreen

    if isinstance(scr, LexicalScreen):
        import pandas as pd

        from emoguide import safety

        df = safety.screen_utterances(pd.DataFrame({"text": texts, "role": "patient"}), screen=scr)
        return df[OUTPUT_COLUMNS[1:]].to_dict(orient="records")
    prevs = [None if _na(p) or not str(p).strip() else str(p) for p in previous]
    return [r.to_dict() for r in scr.screen_many(texts, prevs)]


def register(app: typer.Typer) -> None:
    """Add `emoguide screen` to the `emoguide` app."""
    app.command("screen")(screen_command)
