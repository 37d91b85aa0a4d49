"""Parse an LLM answer to the `[Technique] [Your Response]` instruction (paper, Appendix A).

`parse_output(raw, finish_reason=None) -> ParsedOutput` splits what a model wrote into the named
technique and the reply to the patient, and attaches stable flags for the ways real answers go
wrong (docs/parsing.md lists and explains every flag). It accepts the forms models actually write
(the paper's Figures 7, 12, 13): bracketed names, `Technique:` labels (bold, numbered, headed),
"Name: reply" on one line, `Response:` / `Therapist:` labels, quoted replies, and leading chatter.

The function is total: it never raises on any input and always keeps `raw` unchanged.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

# -- flags (stable strings; documented in docs/parsing.md) -------------------------------------
EMPTY = "empty"
REFUSAL = "refusal"
PLACEHOLDER = "placeholder"
MISSING_TECHNIQUE = "missing_technique"
MISSING_RESPONSE = "missing_response"
EXPLANATION_NOT_REPLY = "explanation_not_reply"
MULTIPLE_RESPONSES = "multiple_responses"
TRUNCATED = "truncated"
PARSE_ERROR = "parse_error"  # an internal bug was caught; should never appear

FLAGS: tuple[str, ...] = (
    EMPTY,
    REFUSAL,
    PLACEHOLDER,
    MISSING_TECHNIQUE,
    MISSING_RESPONSE,
    EXPLANATION_NOT_REPLY,
    MULTIPLE_RESPONSES,
    TRUNCATED,
    PARSE_ERROR,
)

#: Flags that do not by themselves make a parsed answer unusable.
BENIGN_FLAGS = frozenset({MULTIPLE_RESPONSES})

#: finish_reason values (OpenAI, llama.cpp, other servers) meaning "stopped at the token limit".
LENGTH_FINISH_REASONS = frozenset({"length", "max_tokens", "max_length", "max_new_tokens"})


@dataclass
class ParsedOutput:
    """One parsed model answer. `raw` is always the input, unchanged."""

    technique: str | None
    response: str | None
    flags: list[str] = field(default_factory=list)
    raw: str = ""

    @property
    def ok(self) -> bool:
        """True when both parts were found and no flag other than `multiple_responses` is set."""
        return (
            self.technique is not None
            and self.response is not None
            and all(f in BENIGN_FLAGS for f in self.flags)
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- patterns -----------------------------------------------------------------------------------
_I = re.IGNORECASE

# "Technique: X", "**Technique:** X", "Technique 1: X", "[Technique]: X", "Intervention technique - X",
# "Technique used: X", "Therapeutic technique (CBT): X". Group 1 is the value (may be empty).
_LABEL_RE = re.compile(
    r"^\[?\s*(?:(?:the|chosen|selected|suggested|applied|therapeutic|intervention)\s+)?"
    r"(?:technique|intervention(?:\s+technique)?|therapeutic\s+approach)"
    r"(?:\s*#?\s*\d{1,2})?"
    r"(?:\s+(?:used|name|applied|chosen|selected|employed))?\s*\]?"
    r"(?:\s*\([^()\n]{0,40}\))?"
    r"\s*(?::|\s[-\u2013\u2014]\s)\s*(.*)$",
    _I,
)
# A bracketed lead: "[Reflective Listening] It sounds like ..."
_BRACKET_RE = re.compile(r"^\[([^\[\]\n]{1,150})\]\s*:?\s*(.*)$")
# Inline response label inside a technique line: "... [Your Response]: Y" / "... Response: Y"
_RESP_INLINE_RE = re.compile(
    r"\s*(?:\[\s*(?:your\s+)?response\s*\]\s*:?|\b(?:your\s+)?response\s*:)\s*", _I
)
# A response label at the start of the response: "Response:", "Your Response:", "Therapist:", ...
_RESP_LABEL_START_RE = re.compile(
    r"^(?:\[\s*(?:your\s+)?response\s*\]\s*:?"
    r"|(?:(?:your|my|the|therapist(?:['\u2019]s)?)\s+)?(?:response|reply)(?:\s*#?\s*\d{1,2})?"
    r"(?:\s*\([^()\n]{0,40}\))?\s*:"
    r"|(?:the\s+)?(?:therapist|counsell?or)(?:\s*\([^()\n]{0,40}\))?\s*:)\s*",
    _I,
)
# Alternative headers: "Option 1:", "Alternative 2 -", "Version 3.", "Example 1)" ("Response 2:" too).
_OPTION_RE = re.compile(
    r"^(?:option|alternative|version|example|variant|response)\s*#?\s*\d{1,2}\s*[:.)\-\u2013\u2014]?\s*",
    _I,
)
_BRACKETED_LABEL_RE = re.compile(r"^\[[^\]\n]{0,60}\]\s*(?::|\s[-\u2013\u2014]\s)")
_NAME_COLON_RE = re.compile(r"^([^:\n]{1,100}):\s*(.*)$")
_NUMBER_RE = re.compile(r"^\(?\d{1,2}[.)]\s+")
_FENCE_RE = re.compile(r"^\s*```")

_PLACEHOLDER_TECH_RE = re.compile(
    r"^(?:insert\s+|name\s+of\s+(?:the\s+)?|the\s+|your\s+)?(?:intervention\s+)?"
    r"(?:technique|intervention)(?:\s+(?:name|here|used))?$",
    _I,
)
_PLACEHOLDER_RESP_RE = re.compile(
    r"^\[?\s*(?:insert\s+|your\s+)?(?:response|reply)(?:\s+here)?\s*\]?$", _I
)
_PLACEHOLDER_ANY_RE = re.compile(r"\[\s*(?:technique|your\s+response)\s*\]", _I)

# Leading chatter: "Sure! Here is my response:", "Certainly.", "Here's a response in the requested form:"
_INTERJECTION = r"(?:sure(?:\s+thing)?|certainly|of\s+course|absolutely|got\s+it|understood|happy\s+to\s+help)"
_CHATTER_LINE_RE = re.compile(
    rf"^(?:{_INTERJECTION}[!.,]*\s*)?"
    r"(?:(?:here(?:['\u2019]s|\s+is|\s+are)|below\s+is|this\s+is)\b[^\n]{0,120}?)?[:.!]?\s*$",
    _I,
)
_CHATTER_PREFIX_RE = re.compile(
    rf"^(?:{_INTERJECTION}[!.,]*\s*)?(?:here(?:['\u2019]s|\s+is|\s+are)|below\s+is)\b[^:\n]{{0,120}}:\s*", _I
)
_INTERJECTION_PREFIX_RE = re.compile(rf"^{_INTERJECTION}[!.,]+\s+(?=\[|technique\b)", _I)
_CHATTER_WORDS_RE = re.compile(r"\b(?:response|reply|answer|intervention|technique|format|form)\b", _I)

# Words that do not occur in technique names but do in sentences (to tell "Active Listening: ..."
# from "It sounds like two things are true: ...").
_NOT_IN_NAMES = frozenset(
    """i i'm i've i'd i'll me my mine myself you you're you've you'd you'll your yours yourself
    we we're we've let's us our he she they it's that's there's what's is are was were am be been
    being do does did don't doesn't didn't can can't could would should will won't have has had
    not no yes so well okay ok hi hello hey thanks thank sure sounds seems seem feel feels felt
    think know want wanted like just really very maybe perhaps here there when why how where who
    remember imagine said say tell told see hear heard please if because but""".split()
)
_LABEL_WORDS = frozenset(
    {"therapist", "patient", "client", "counselor", "counsellor", "response", "reply", "answer",
     "note", "notes", "dialogue", "context", "assistant", "user", "explanation", "rationale",
     "reasoning", "summary", "output", "speaker", "a", "b"}
)

# Refusals: phrased so that "I'm sorry to hear..." or "I can't help but notice..." do not match.
_REFUSAL_RES = [
    re.compile(p, _I)
    for p in (
        r"\bas an ai\b",
        r"\bas a (?:large )?language model\b",
        r"\bI(?:'m| am) (?:just |only )?an? (?:ai\b|artificial intelligence|language model|chatbot|virtual assistant)",
        r"\bI(?:'m| am) (?:so |very |really |truly )?sorry,? but I (?:can(?:no|')?t|am not able|'m not able|am unable|'m unable|won't|will not|must decline)",
        r"\bI (?:can(?:no|')?t|am unable to|'m unable to|am not able to|'m not able to|won't|will not|must decline to)"
        r"\s+(?:help|assist)(?:\s+you)?\s+with\s+(?:that|this)\b",
        r"\bI (?:can(?:no|')?t|am unable to|'m unable to|am not able to|'m not able to|won't|will not|must decline to)"
        r"\s+(?:provide|offer|give|act as|pretend to be|role-?play|engage in|continue|comply|fulfil|fulfill)\b"
        r"[^.\n]{0,60}?\b(?:therap|counsel|medical|mental health|professional|clinical|diagnos|request|role)",
        r"\bI(?:'m| am) not an? (?:licensed |qualified |certified |real )?(?:therapist|mental health professional|"
        r"counsell?or|psychologist|psychiatrist|doctor|medical professional)\b",
    )
]

# Explanation-instead-of-reply signals (paper, Appendix F).
_ADDRESS_RE = re.compile(
    r"\b(?:you|your|yours|yourself|yourselves|you're|you've|you'd|you'll|y'all|let's|let us)\b", _I
)
_THIRD_PARTY_RE = re.compile(
    r"\b(?:the|this|our|my|a)\s+(?:patient|client|individual|speaker|counselee)(?:'s|s'|s)?\b"
    r"|\b(?:the|a)\s+(?:therapist|counsell?or)\s+(?:should|could|would|might|can|may|will|is|needs|wants|tries)\b",
    _I,
)
_META_RE = re.compile(
    r"\b(?:this|that|the|such an?|my|our)\s+(?:response|reply|technique|intervention|approach|question|"
    r"reflection|statement|strategy|method|answer|video|comment)\b(?:\s+[\w'-]+){0,4}?\s+"
    r"(?:encourag|help|seek|aim|allow|validat|provid|acknowledg|invit|focus|demonstrat|would|could|should|"
    r"will|serv|show|give|appear|attempt|tries|intend|enabl|support|foster|promot|address|highlight|"
    r"emphasi[sz]|prompt|creat|is\s+(?:designed|intended|meant|used|aimed|an?\s))\w*",
    _I,
)
_THIS_VERB_RE = re.compile(
    r"(?:^|[.!?:]\s+)this\s+(?:encourag|help|allow|validat|provid|acknowledg|invit|aim|seek|demonstrat|"
    r"show|give|enabl|support|foster|promot|creat|serv|demonstrat)\w*",
    _I,
)
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_INVISIBLE_RE = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff]")
_QUOTE_PAIRS = {'"': '"', "\u201c": "\u201d", "\u201e": "\u201c", "'": "'", "\u2018": "\u2019", "\u00ab": "\u00bb"}


@dataclass
class _Line:
    text: str
    numbered: bool = False
    marked: bool = False  # was bold or a header in markdown
    option: bool = False  # started with "Option 1:" or similar


# -- helpers ------------------------------------------------------------------------------------
def _norm_ws(s: str) -> str:
    return " ".join(s.split())


def _strip_line(raw_line: str) -> _Line:
    s = raw_line.strip()
    marked = False
    s = re.sub(r"^(?:>\s*)+", "", s)
    m = re.match(r"^#{1,6}\s*", s)
    if m:
        marked = True
        s = s[m.end():]
    s = re.sub(r"^[-*\u2022+]\s+", "", s)
    numbered = False
    m = _NUMBER_RE.match(s)
    if m:
        numbered = True
        s = s[m.end():]
    if "**" in s or "__" in s:
        marked = marked or s.startswith(("**", "__"))
        s = s.replace("**", "").replace("__", "")
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "*_" and s[1] not in " *_":
        s = s[1:-1].strip()
    # a numbered bold lead after removing bold: "**1. Technique: X**"
    if not numbered:
        m = _NUMBER_RE.match(s)
        if m:
            numbered = True
            s = s[m.end():]
    return _Line(s.strip(), numbered=numbered, marked=marked)


def _strip_quotes(s: str) -> str:
    s = s.strip()
    if len(s) >= 2:
        close = _QUOTE_PAIRS.get(s[0])
        if close is not None and s[-1] == close:
            inner = s[1:-1]
            if s[0] == '"' and '"' in inner:
                return s
            if s[0] in "\u201c\u201e" and ("\u201c" in inner or "\u201d" in inner):
                return s
            return inner.strip()
    return s


def _strip_emphasis(s: str) -> str:
    s = s.strip()
    for mark in ("***", "**", "__", "*", "_"):
        n = len(mark)
        if len(s) > 2 * n and s.startswith(mark) and s.endswith(mark):
            inner = s[n:-n]
            if inner.strip() and mark not in inner:
                return inner.strip()
    return s


def _words(s: str) -> list[str]:
    return re.findall(r"[A-Za-z][A-Za-z']*", s.translate(_APOSTROPHES))


def _name_like(s: str, max_words: int = 12) -> bool:
    """Could `s` be a technique name (a short noun phrase) rather than a sentence?"""
    s = s.strip().strip("*_[]").strip()
    if not s or len(s) > 100 or any(c in s for c in '?!"\u201c\u201d;'):
        return False
    if re.search(r"\.\s+[A-Z]", s) or re.search(r"https?$", s, _I):
        return False
    words = _words(s)
    if not words or len(words) > max_words:
        return False
    first_alpha = next((c for c in s if c.isalpha()), "")
    if not first_alpha.isupper():
        return False
    lower = [w.lower() for w in words]
    if lower[0] in _LABEL_WORDS and len(lower) <= 2:
        return False
    return not any(w in _NOT_IN_NAMES for w in lower)


def _clean_technique(s: str | None) -> tuple[str | None, bool]:
    """Return (technique or None, placeholder?)."""
    if s is None:
        return None, False
    t = s.translate({ord("*"): None})
    t = t.strip().strip("#").strip()
    for _ in range(3):
        before = t
        t = t.strip()
        if len(t) >= 2 and t[0] == "[" and t[-1] == "]":
            t = t[1:-1]
        t = _strip_quotes(t)
        m = _LABEL_RE.match(t)
        if m and m.group(1).strip():
            t = m.group(1)
        t = t.strip().rstrip(".:;,|-\u2013\u2014 ").lstrip(":;,|-\u2013\u2014 ")
        t = t.strip("_").strip()
        if t == before:
            break
    t = _norm_ws(t)
    if not t:
        return None, False
    if _PLACEHOLDER_TECH_RE.match(t):
        return None, True
    return t, False


def _clean_response(s: str | None) -> tuple[str | None, bool]:
    """Return (response or None, placeholder?)."""
    if s is None:
        return None, False
    t = s.replace("**", "").strip()
    for _ in range(6):
        before = t
        t = t.strip()
        t = _RESP_LABEL_START_RE.sub("", t, count=1)
        t = _strip_emphasis(t)
        t = _strip_quotes(t)
        if len(t) >= 2 and t[0] == "[" and t[-1] == "]" and "[" not in t[1:-1] and "]" not in t[1:-1]:
            t = t[1:-1]
        if t == before:
            break
    t = _norm_ws(t)
    if not t:
        return None, False
    if _PLACEHOLDER_RESP_RE.match(t):
        return None, True
    return t, False


def _split_name_sentence(value: str) -> tuple[str, str] | None:
    """'Reflective listening. It sounds like...' -> ('Reflective listening', 'It sounds like...')."""
    for m in re.finditer(r"(?:[:.]|\s[-\u2013\u2014])\s+", value):
        name, rest = value[: m.start()].strip(), value[m.end():].strip()
        if name and rest and len(_words(rest)) >= 2 and _name_like(name, max_words=10):
            return name, rest
        break
    return None


def _is_chatter(s: str) -> bool:
    if not s or not _CHATTER_LINE_RE.match(s):
        return False
    # A bare interjection ("Sure!") or a "here is ..." lead-in that talks about the answer itself.
    if re.match(rf"^{_INTERJECTION}[!.,]*$", s, _I):
        return True
    if re.match(r"^(?:\S+\s*[!.,]*\s*)?(?:here(?:['\u2019]s|\s+is|\s+are)|below\s+is|this\s+is)\b", s, _I):
        if s.endswith(":"):
            return ":" not in s[:-1]
        return ":" not in s and len(_words(s)) <= 15 and bool(_CHATTER_WORDS_RE.search(s))
    return False


def _tech_header(line: _Line, numbered_names: bool) -> bool:
    s = line.text
    m = _LABEL_RE.match(s)
    if m:
        return True
    m = _BRACKET_RE.match(s)
    if m:
        inner = m.group(1).strip()
        return not _PLACEHOLDER_RESP_RE.match(inner)
    if numbered_names and line.numbered:
        m = _NAME_COLON_RE.match(s)
        return bool(m and _name_like(m.group(1)))
    return False


def _prepare(text: str) -> list[_Line]:
    lines: list[_Line] = []
    pending_option = False
    for raw_line in text.split("\n"):
        if _FENCE_RE.match(raw_line):
            continue
        ln = _strip_line(raw_line)
        m = _OPTION_RE.match(ln.text)
        if m and (m.end() == len(ln.text) or not _RESP_LABEL_START_RE.match(ln.text)):
            ln.text = ln.text[m.end():].strip()
            ln.text = _strip_line(ln.text).text if ln.text else ""
            ln.option = True
        if ln.option and not ln.text:
            pending_option = True
            continue
        if pending_option and ln.text:
            ln.option = True
            pending_option = False
        lines.append(ln)
    return lines


def _drop_chatter(lines: list[_Line]) -> list[_Line]:
    out = list(lines)
    while out and (not out[0].text or _is_chatter(out[0].text)):
        out.pop(0)
    if out:
        first = out[0]
        s = _CHATTER_PREFIX_RE.sub("", first.text, count=1)
        s = _INTERJECTION_PREFIX_RE.sub("", s, count=1)
        if s != first.text:
            out[0] = _Line(_strip_line(s).text, first.numbered, first.marked, first.option)
            if not out[0].text:
                out.pop(0)
                return _drop_chatter(out)
    return out


def _split_blocks(lines: list[_Line]) -> list[list[_Line]]:
    content = [ln for ln in lines if ln.text]
    if not content:
        return []
    numbered_names = content[0].numbered
    blocks: list[list[_Line]] = [[]]
    has_header = False
    for i, ln in enumerate(content):
        header = _tech_header(ln, numbered_names)
        if i > 0 and (ln.option or (header and has_header)):
            blocks.append([])
            has_header = False
        blocks[-1].append(ln)
        has_header = has_header or header
    return [b for b in blocks if b]


def _parse_block(block: list[_Line]) -> tuple[str | None, str | None, bool]:
    """Return (technique text, response text, placeholder seen) for one technique/response pair."""
    first = block[0].text
    rest = [ln.text for ln in block[1:]]
    placeholder = False
    technique: str | None = None
    response_parts: list[str]

    m = _LABEL_RE.match(first)
    if m and first.startswith("[") and not _BRACKETED_LABEL_RE.match(first):
        m = None  # "[Technique: X] reply" is the bracket form, handled below
    if m:
        value = m.group(1).strip()
        if not value and rest and not _RESP_LABEL_START_RE.match(rest[0]):
            value = rest.pop(0)
        parts = _RESP_INLINE_RE.split(value, maxsplit=1)
        if len(parts) == 2:
            technique, response_parts = parts[0], [parts[1], *rest]
        else:
            technique, response_parts = value, rest
            if not any(p.strip() for p in rest):
                split = _split_name_sentence(value)
                if split:
                    technique, response_parts = split[0], [split[1]]
                elif _ADDRESS_RE.search(value.translate(_APOSTROPHES)) and not _name_like(value):
                    technique, response_parts = None, [value]
        return technique, "\n".join(response_parts), placeholder

    m = _BRACKET_RE.match(first)
    if m:
        inner, after = m.group(1).strip(), m.group(2)
        if _PLACEHOLDER_TECH_RE.match(inner.strip(" *_")):
            placeholder = True
        elif _PLACEHOLDER_RESP_RE.match(inner):
            pass  # "[Your Response]: ..." with no technique
        else:
            technique = inner
        return technique, "\n".join([after, *rest]), placeholder

    if _RESP_LABEL_START_RE.match(first):
        return None, "\n".join([first, *rest]), placeholder

    m = _NAME_COLON_RE.match(first)
    if m and _name_like(m.group(1)):
        name, after = m.group(1).strip(), m.group(2)
        if not after.startswith("//"):
            return name, "\n".join([after, *rest]), placeholder

    if rest and not re.search(r"[.?!,]$", first):
        if _name_like(first, max_words=8) and (block[0].marked or len(_words(first)) <= 6):
            return first, "\n".join(rest), placeholder

    # The technique may come after the reply: "It sounds like ...\n\nTechnique: Reflective listening"
    for j, s in enumerate(rest):
        m = _LABEL_RE.match(s)
        if m and m.group(1).strip():
            return m.group(1), "\n".join([first, *rest[:j], *rest[j + 1:]]), placeholder

    return None, "\n".join([first, *rest]), placeholder


def _is_refusal(text: str) -> bool:
    return any(r.search(text) for r in _REFUSAL_RES)


def _explanation_signals(s: str) -> int:
    return len(_THIRD_PARTY_RE.findall(s)) + len(_META_RE.findall(s)) + len(_THIS_VERB_RE.findall(s))


def is_explanation(text: str) -> bool:
    """True when `text` reads as an explanation of an intervention rather than a reply to the patient.

    Signals: third-person references to the patient/client ("the patient's statements"),
    meta-language about the reply itself ("This response seeks to...", "This encourages...",
    "the technique used ... could be"). Address: second-person words ("you", "your") or "let's".
    Flagged when there is at least one signal and no address anywhere, or when the first sentence
    carries a signal and no address (an explanation that leads, with the reply tucked in after it).
    """
    t = text.translate(_APOSTROPHES)
    if not t.strip():
        return False
    if _explanation_signals(t) and not _ADDRESS_RE.search(t):
        return True
    first = _SENTENCE_RE.split(t.strip(), maxsplit=1)[0]
    return bool(_explanation_signals(first)) and not _ADDRESS_RE.search(first)


def _order(flags: set[str]) -> list[str]:
    return [f for f in FLAGS if f in flags]


def _parse(raw: str, finish_reason: str | None) -> ParsedOutput:
    flags: set[str] = set()
    if isinstance(finish_reason, str) and finish_reason.strip().lower() in LENGTH_FINISH_REASONS:
        flags.add(TRUNCATED)

    text = _INVISIBLE_RE.sub("", raw).replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    if not text.strip():
        flags.add(EMPTY)
        return ParsedOutput(None, None, _order(flags), raw)

    lines = _drop_chatter(_prepare(text))
    blocks = _split_blocks(lines)
    technique_text: str | None = None
    response_text: str | None = None
    placeholder = False
    if blocks:
        if len(blocks) > 1:
            flags.add(MULTIPLE_RESPONSES)
        technique_text, response_text, placeholder = _parse_block(blocks[0])

    technique, tech_ph = _clean_technique(technique_text)
    response, resp_ph = _clean_response(response_text)
    if placeholder or tech_ph or resp_ph or (
        _PLACEHOLDER_ANY_RE.search(text) and (technique is None or response is None)
    ):
        flags.add(PLACEHOLDER)
    if technique is None:
        flags.add(MISSING_TECHNIQUE)
    if response is None:
        flags.add(MISSING_RESPONSE)
    if _is_refusal(text.translate(_APOSTROPHES)):
        flags.add(REFUSAL)
    if response is not None and is_explanation(response):
        flags.add(EXPLANATION_NOT_REPLY)
    return ParsedOutput(technique, response, _order(flags), raw)


def parse_output(raw: str, finish_reason: str | None = None) -> ParsedOutput:
    """Parse one model answer; never raises. See docs/parsing.md for the forms and flags."""
    if raw is None:
        raw = ""
    elif not isinstance(raw, str):
        raw = str(raw)
    try:
        return _parse(raw, finish_reason)
    except Exception:  # noqa: BLE001 - the parser must be total; a bug is reported as a flag
        response = _norm_ws(raw) or None
        flags = [PARSE_ERROR, MISSING_TECHNIQUE] + ([] if response else [MISSING_RESPONSE])
        return ParsedOutput(None, response, flags, raw)


# -- structured answers (JSON-schema-constrained decoding) ---------------------------------------
#: The answer's JSON schema: the paper's two parts as two fields, technique first (grammar-based
#: decoders emit properties in schema order, so the model names the technique before it replies,
#: as in the free form). No maxLength: llama.cpp compiles it into one nested optional per
#: character (an 800-deep grammar); max_tokens bounds the answer instead.
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "technique": {"type": "string", "minLength": 1},
        "response": {"type": "string", "minLength": 1},
    },
    "required": ["technique", "response"],
    "additionalProperties": False,
}

#: Output modes recorded on every generation row.
OUTPUT_MODES = ("free", "schema")


def answer_response_format() -> dict[str, Any]:
    """The ``response_format`` asking for :data:`ANSWER_SCHEMA`, in llama.cpp's form: both
    llama-cpp-python (0.3.x, in-process and its server) and llama.cpp's ``llama-server`` turn
    ``{"type": "json_object", "schema": ...}`` into a grammar; llama-cpp-python silently ignores
    OpenAI's ``{"type": "json_schema", ...}`` form."""
    return {"type": "json_object", "schema": ANSWER_SCHEMA}


def _json_answer(text: str) -> dict | None:
    import json

    t = text.strip()
    if t.startswith("```"):
        t = re.sub(r"^```(?:json)?\s*|\s*```$", "", t)
    try:
        value = json.loads(t)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _parse_structured(raw: str, finish_reason: str | None) -> ParsedOutput:
    flags: set[str] = set()
    if isinstance(finish_reason, str) and finish_reason.strip().lower() in LENGTH_FINISH_REASONS:
        flags.add(TRUNCATED)
    obj = _json_answer(_INVISIBLE_RE.sub("", raw))
    if obj is None:
        # not JSON (a backend that ignored the schema, or a cut-off object): read it as free text
        parsed = _parse(raw, finish_reason)
        return ParsedOutput(parsed.technique, parsed.response, _order(set(parsed.flags) | flags), raw)
    tech_raw = obj.get("technique")
    resp_raw = obj.get("response")
    tech_raw = str(tech_raw) if tech_raw is not None else None
    resp_raw = str(resp_raw) if resp_raw is not None else None
    technique, tech_ph = _clean_technique(tech_raw)
    response, resp_ph = _clean_response(resp_raw)
    if response is not None and technique is None:
        # the whole "[Technique] reply" written into the response field
        inner = _parse(response, None)
        if inner.technique is not None and inner.response is not None:
            technique, response = inner.technique, inner.response
    if tech_ph or resp_ph:
        flags.add(PLACEHOLDER)
    if technique is None:
        flags.add(MISSING_TECHNIQUE)
    if response is None:
        flags.add(MISSING_RESPONSE)
    joined = " ".join(x for x in (tech_raw, resp_raw) if x)
    if _is_refusal(joined.translate(_APOSTROPHES)):
        flags.add(REFUSAL)
    if response is not None and is_explanation(response):
        flags.add(EXPLANATION_NOT_REPLY)
    if not joined.strip():
        flags.add(EMPTY)
    return ParsedOutput(technique, response, _order(flags), raw)


def parse_structured(raw: str, finish_reason: str | None = None) -> ParsedOutput:
    """Parse a schema-constrained answer (``{"technique": ..., "response": ...}``) with the same
    cleaning and flags as :func:`parse_output`; text that is not a JSON object is parsed as free
    text. Never raises."""
    if raw is None:
        raw = ""
    elif not isinstance(raw, str):
        raw = str(raw)
    try:
        return _parse_structured(raw, finish_reason)
    except Exception:  # noqa: BLE001 - total, like parse_output
        return parse_output(raw, finish_reason)


def parse_answer(raw: str, finish_reason: str | None = None, mode: str = "free") -> ParsedOutput:
    """``parse_output`` for ``mode="free"``, ``parse_structured`` for ``mode="schema"``."""
    return parse_structured(raw, finish_reason) if mode == "schema" else parse_output(raw, finish_reason)


__all__ = [
    "ANSWER_SCHEMA",
    "FLAGS",
    "OUTPUT_MODES",
    "ParsedOutput",
    "answer_response_format",
    "is_explanation",
    "parse_answer",
    "parse_output",
    "parse_structured",
]
