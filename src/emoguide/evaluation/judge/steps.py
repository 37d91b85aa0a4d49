"""Evaluation steps per criterion: generated once, then frozen in a versioned file.

G-Eval (Liu et al. 2023) lets the judge model write the evaluation steps for a criterion ("auto
chain-of-thought") and then puts those steps into every scoring prompt. Regenerating them per run
(a DeepEval and promptfoo default) makes scores from two runs incomparable, so here they are
written once to ``<corpus>/judge/steps.toml``, which a psychologist can read, edit or replace;
the file's hash (``steps_hash``) goes on every judgment row, so an edit is visible in the data.

Where the steps come from, first match wins:

1. ``--steps FILE``: that file, as it is (every judged criterion must be in it);
2. ``<corpus>/judge/steps.toml`` when it exists (criteria missing from it are added, see 3/4,
   and the file's version goes up, the old one kept as ``steps.v<N>.toml``);
3. for the paper's three criteria, the packaged default below, written by hand, unless a model
   was asked to generate them (``--regenerate-steps`` or ``--steps-model``);
4. otherwise the steps model (the first judge model unless ``--steps-model`` names one) writes
   them, from :func:`step_prompt`.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from emoguide.errors import EmoguideError, InputError
from emoguide.evaluation.criteria import Criterion

STEPS_DIR = "judge"
STEPS_FILE = "steps.toml"
PACKAGED_SOURCE = "packaged default (hand-written for the paper's criteria)"
MAX_STEPS = 10

#: Hand-written steps for the paper's three criteria (the statements of criteria.PAPER_CRITERIA).
#: They follow the criterion descriptions of the paper's Section 5 and add what the known judge
#: biases call for (docs/judge.md, known limits: length is not quality; risk must not be overlooked).
DEFAULT_STEPS: dict[str, list[str]] = {
    "applicability": [
        "Read the session excerpt and identify the client's current concern, situation and any goal "
        "they express.",
        "Read the proposed technique and response, and decide whether the technique is a recognised "
        "therapeutic intervention suited to this concern at this point in the session.",
        "Judge practicality: could the therapist say this response now, and could the client engage "
        "with it or act on it?",
        "Lower the score for responses that are generic, ignore what the client said, or would be "
        "premature or unsafe in this context (for example advice when the client mentions risk).",
        "Assign a score from 1 (poor) to 5 (exceptional) for how relevant and practical the "
        "intervention is for this client.",
    ],
    "empathy": [
        "Read the excerpt and note what the client feels and has experienced, including feelings "
        "that are implied rather than stated.",
        "Check whether the response reflects those feelings accurately and conveys understanding of "
        "the client's point of view.",
        "Check the tone: warm, respectful and non-judgemental, without dismissing, minimising or "
        "lecturing.",
        "Lower the score for formulaic sympathy that could follow any statement, or for a tone that "
        "does not match the client's emotional state.",
        "Assign a score from 1 (poor) to 5 (exceptional) for the understanding, compassion and "
        "respect the intervention shows.",
    ],
    "comprehensiveness": [
        "List the distinct issues the client raises in the excerpt (practical, emotional, "
        "relational, any risk).",
        "Check which of them the technique and response address, and how deeply: a surface "
        "acknowledgement, an exploration, or a fuller therapeutic perspective.",
        "Consider whether a significant aspect is left out, above all a risk the client mentions.",
        "Do not reward length alone: a long response that repeats itself or strays from the "
        "client's issues is not comprehensive.",
        "Assign a score from 1 (poor) to 5 (exceptional) for how completely the intervention "
        "addresses the client's issues.",
    ],
}


class StepsError(EmoguideError):
    """Steps could not be read, found or generated."""


@dataclass
class CriterionSteps:
    steps: list[str]
    source: str
    statement: str = ""  # the statement the steps were written for


@dataclass
class StepsFile:
    path: Path
    version: int
    criteria: dict[str, CriterionSteps] = field(default_factory=dict)
    hash: str = ""

    def steps_for(self, name: str) -> list[str]:
        return self.criteria[name].steps


def steps_path(corpus_root: str | Path) -> Path:
    return Path(corpus_root) / STEPS_DIR / STEPS_FILE


def file_hash(path: str | Path) -> str:
    """``steps_hash``: sha256 of the file's bytes, 16 hex digits (comments and edits count)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def load_steps(path: str | Path) -> StepsFile:
    """Read and validate a steps file; InputError names the file and what is wrong."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "no such steps file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not valid TOML: {exc}") from exc
    version = data.get("version", 1)
    if not isinstance(version, int) or version < 1:
        raise InputError(path, f"'version' must be a positive integer, not {version!r}")
    table = data.get("criteria")
    if not isinstance(table, dict) or not table:
        raise InputError(path, "needs a [criteria.NAME] table with a 'steps' list per criterion")
    out: dict[str, CriterionSteps] = {}
    for name, entry in table.items():
        if not isinstance(entry, dict):
            raise InputError(path, f"[criteria.{name}] must be a table with a 'steps' list")
        steps = entry.get("steps")
        if (
            not isinstance(steps, list)
            or not steps
            or not all(isinstance(s, str) and s.strip() for s in steps)
        ):
            raise InputError(path, f"[criteria.{name}] 'steps' must be a non-empty list of non-empty strings")
        out[name] = CriterionSteps(
            steps=[" ".join(s.split()) for s in steps],
            source=str(entry.get("source", "")),
            statement=str(entry.get("statement", "")),
        )
    return StepsFile(path=path, version=version, criteria=out, hash=file_hash(path))


_HEADER = """\
# Evaluation steps for `emoguide judge` (G-Eval), one [criteria.NAME] table per criterion.
# They go, numbered, into every scoring prompt of that criterion. Edit or replace them freely
# (a psychologist's review is the point); every judgment row records this file's sha256 as
# steps_hash, and an edited file makes the judge rescore. `emoguide judge --regenerate-steps`
# writes a new version and keeps this one as steps.v<version>.toml.
"""


def write_steps(path: str | Path, version: int, criteria: dict[str, CriterionSteps]) -> StepsFile:
    """Write a steps file (atomically), archiving the file it replaces as ``steps.v<N>.toml``."""
    import tomli_w

    from emoguide.corpus.atomic import write_text

    path = Path(path)
    if path.exists():
        try:
            old_version = load_steps(path).version
        except InputError:
            old_version = version - 1
        archive = path.with_name(f"{path.stem}.v{old_version}{path.suffix}")
        if not archive.exists():
            write_text(archive, path.read_text(encoding="utf-8"))
    body = {
        "version": int(version),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "criteria": {
            name: {"source": c.source, "statement": c.statement, "steps": list(c.steps)}
            for name, c in criteria.items()
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, _HEADER + "\n" + tomli_w.dumps(body, multiline_strings=False))
    return load_steps(path)


def _scale_text(criterion: Criterion) -> str:
    lo, hi = criterion.scale_min, criterion.scale_max
    lo_a, hi_a = criterion.anchors.get(lo), criterion.anchors.get(hi)
    return f"{lo}{f' ({lo_a})' if lo_a else ''} to {hi}{f' ({hi_a})' if hi_a else ''}"


def step_prompt(criterion: Criterion) -> list[dict[str, str]]:
    """G-Eval's auto-CoT prompt: the task and the criterion, ending at "Evaluation Steps:"."""
    text = (
        "You will be given a short excerpt of a psychotherapy session and an intervention proposed "
        "for the therapist's next turn: a therapeutic technique and the therapist's response.\n\n"
        "Your task is to rate the intervention on one criterion.\n\n"
        "Evaluation Criterion:\n\n"
        f"{criterion.title}: {criterion.statement}\n"
        + (f"{criterion.description}\n" if criterion.description else "")
        + f"\nScale: {_scale_text(criterion)}.\n\n"
        "Write the evaluation steps an experienced clinical psychologist would follow to rate an "
        "intervention on this criterion: a numbered list of 3 to 6 short steps, one per line, and "
        "nothing else.\n\n"
        "Evaluation Steps:"
    )
    return [{"role": "user", "content": text}]


_NUMBERED = re.compile(r"^\s*(?:step\s*)?\d{1,2}\s*[.):]\s*(.+)$", re.IGNORECASE)
_BULLET = re.compile(r"^\s*[-*\u2022]\s+(.+)$")


def parse_steps(text: str) -> list[str]:
    """Numbered (or, failing that, bulleted) lines of a model's answer -> steps.

    Raises StepsError when there are none: prose without a list is not a set of steps, and
    putting it into every prompt would be worse than stopping here.
    """
    numbered, bullets = [], []
    for line in text.splitlines():
        m = _NUMBERED.match(line)
        if m:
            numbered.append(m.group(1))
            continue
        m = _BULLET.match(line)
        if m:
            bullets.append(m.group(1))
    found = numbered or bullets
    steps: list[str] = []
    for step in found:
        step = " ".join(step.replace("**", "").split()).strip()
        if len(step) >= 3 and step not in steps:
            steps.append(step[:500])
    if not steps:
        short = " ".join(text.split())[:200]
        raise StepsError(f"no numbered or bulleted steps in the model's answer: {short!r}")
    return steps[:MAX_STEPS]


Generate = Callable[[list[dict[str, str]]], str]


def ensure_steps(
    corpus_root: str | Path,
    criteria: list[Criterion],
    *,
    steps_file: str | Path | None = None,
    regenerate: bool = False,
    generate: Generate | None = None,
    generator_id: str | None = None,
    use_packaged: bool = True,
    log: Callable[[str], None] | None = None,
) -> StepsFile:
    """The steps file to judge with, writing ``<corpus>/judge/steps.toml`` when needed.

    ``generate(messages) -> text`` asks the steps model; ``generator_id`` names it in the file.
    ``use_packaged=False`` (a steps model was named) makes the model write steps even for the
    paper's criteria. ``regenerate`` writes every judged criterion anew as a new version.
    """
    log = log or (lambda _msg: None)
    names = [c.name for c in criteria]
    if steps_file is not None:
        sf = load_steps(steps_file)
        missing = [n for n in names if n not in sf.criteria]
        if missing:
            raise InputError(sf.path, f"no steps for criteria {missing} (it has {sorted(sf.criteria)})")
        _warn_statements(sf, criteria, log)
        return sf

    path = steps_path(corpus_root)
    current = load_steps(path) if path.exists() else None
    if current is not None and not regenerate:
        missing = [c for c in criteria if c.name not in current.criteria]
        if not missing:
            _warn_statements(current, criteria, log)
            return current
        todo, keep, version = missing, dict(current.criteria), current.version + 1
    else:
        todo, keep = list(criteria), dict(current.criteria) if current else {}
        version = current.version + 1 if current else 1

    for c in todo:
        packaged = DEFAULT_STEPS.get(c.name)
        paper = _is_paper_statement(c)
        if packaged and paper and use_packaged and not regenerate:
            keep[c.name] = CriterionSteps(list(packaged), PACKAGED_SOURCE, c.statement)
            log(f"steps for {c.name}: the packaged hand-written default")
            continue
        if generate is None:
            raise StepsError(
                f"criterion {c.name!r} has no evaluation steps: name a judge model to write them, "
                f"or write them into {path}"
            )
        text = generate(step_prompt(c))
        try:
            steps = parse_steps(text)
        except StepsError as exc:
            raise StepsError(f"steps for {c.name!r} from {generator_id}: {exc}") from exc
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        keep[c.name] = CriterionSteps(steps, f"generated by {generator_id} at {now}", c.statement)
        log(f"steps for {c.name}: generated by {generator_id} ({len(steps)} steps)")
    sf = write_steps(path, version, keep)
    log(f"steps: {path} (version {sf.version}, sha256 {sf.hash})")
    return sf


def _is_paper_statement(c: Criterion) -> bool:
    from emoguide.evaluation.criteria import PAPER_CRITERIA

    return any(p.name == c.name and p.statement == c.statement for p in PAPER_CRITERIA)


def _warn_statements(sf: StepsFile, criteria: list[Criterion], log: Callable[[str], None]) -> None:
    for c in criteria:
        recorded = sf.criteria[c.name].statement
        if recorded and recorded != c.statement:
            log(
                f"note: {sf.path} holds steps for {c.name} written for another statement "
                f"({recorded[:60]!r}...); edit them or use --regenerate-steps"
            )
