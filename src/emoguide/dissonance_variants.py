"""Calibrated variants of emotional dissonance, beside the paper's raw Eq. 1 (docs/dissonance.md).

The paper's form (`emoguide.dissonance.compute_dissonance`) stays the default. The variants here
change *what is compared* and *where the line is drawn*, and hand the final comparison back to
`compute_dissonance`, so Eq. 1 and its null handling live in one place:

* `method="raw"`: Eq. 1 on the values as they are, T = 0.5 unless given (the paper).
* `method="zscore"`: each channel's valence and arousal are z-scored within a scope (a session, a
  speaker within a session, or the whole table), over the scored rows (`roles`) that have the
  value, before Eq. 1; T is in SD units (default 2.0, see `DEFAULT_THRESHOLDS`). This removes each
  model's baseline (the paper's Figure 3: audio skews positive, video negative) and its spread, so
  a channel that sits a constant offset above the other is not dissonance.
* `method="percentile"`: Eq. 1 on the raw values, with T = the P-th percentile (default 90) of the
  raw scores over the scope's scored rows, so about (100 - P)% of them are flagged.

Channels: `voice`, `face`, `text` (Warriner norms from the text_affect stage), `sentiment` (VADER
compound as a valence-only channel) and `nonverbal` (the mean of voice and face, per dimension;
null unless both are present). `channels=("text", "nonverbal")` measures "said vs shown".

Null-aware like the raw form: only dimensions both channels have are compared, the row records
which, and with none the score and flag are null (never 0/False). Rows outside `roles` stay null.
A scope group with fewer than `min_n` usable values gets null z-scores (zscore) or no threshold
(percentile): its rows stay null, and `result.attrs["dissonance"]["notes"]` says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from emoguide.config import DissonanceSettings
from emoguide.dissonance import METHOD_RAW, compute_dissonance

METHODS = ("raw", "zscore", "percentile")
SCOPES = ("session", "speaker", "corpus")
CHANNELS = ("voice", "face", "text", "sentiment", "nonverbal")
DIMENSIONS = ("valence", "arousal")
DEFAULT_THRESHOLDS = {"raw": 0.5, "zscore": 2.0}
DEFAULT_PERCENTILE = 90.0
DEFAULT_MIN_N = 5
OUTPUT_COLUMNS = ("dissonance_score", "dissonance", "dissonance_dims", "dissonance_compared", "dissonance_method")

_A, _B = "__diss_a", "__diss_b"  # temporary channel names handed to compute_dissonance


# --------------------------------------------------------------------------- channels


def channel_values(df: pd.DataFrame, channel: str, dim: str) -> np.ndarray:
    """One channel's values for one dimension as floats, NaN where unavailable."""
    n = len(df)

    def col(name: str) -> np.ndarray:
        if name not in df.columns:
            return np.full(n, np.nan)
        return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)

    if channel in ("voice", "face", "text"):
        return col(f"{channel}_{dim}")
    if channel == "sentiment":
        return col("text_sentiment") if dim == "valence" else np.full(n, np.nan)
    if channel == "nonverbal":
        return (col(f"voice_{dim}") + col(f"face_{dim}")) / 2.0  # NaN unless both present
    raise ValueError(f"unknown channel {channel!r}; choose from {', '.join(CHANNELS)}")


def channel_source(df: pd.DataFrame, channel: str) -> str | None:
    """The distinct `{channel}_source` values (for legends/notes); None when there are none."""
    names = {"nonverbal": ("voice", "face"), "sentiment": ("text",)}.get(channel, (channel,))
    found: list[str] = []
    for name in names:
        col = f"{name}_source"
        if col in df.columns:
            found.extend(str(v) for v in df[col].dropna().unique())
    return ",".join(sorted(set(found))) or None


def parse_channels(channels: str | Sequence[str]) -> tuple[str, str]:
    if isinstance(channels, str):
        parts = [p.strip() for p in channels.replace(",", "-").split("-") if p.strip()]
    else:
        parts = [str(p).strip() for p in channels]
    if len(parts) != 2:
        raise ValueError(f"channels: need two, got {channels!r}")
    for p in parts:
        if p not in CHANNELS:
            raise ValueError(f"unknown channel {p!r}; choose from {', '.join(CHANNELS)}")
    if parts[0] == parts[1]:
        raise ValueError(f"channels: compare two different channels, got {parts[0]!r} twice")
    return parts[0], parts[1]


def _group_keys(df: pd.DataFrame, scope: str) -> pd.Series:
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose from {', '.join(SCOPES)}")
    if scope == "corpus":
        return pd.Series(["corpus"] * len(df), index=df.index, dtype=object)
    sid = df["session_id"].astype("string").fillna("") if "session_id" in df.columns else pd.Series([""] * len(df), index=df.index)
    if scope == "session":
        return sid.astype(object)
    if "speaker" not in df.columns:
        raise ValueError("scope 'speaker' needs a speaker column")
    spk = df["speaker"].astype("string").fillna("?")
    return (sid + "/" + spk).astype(object)


# --------------------------------------------------------------------------- main entry


def compute_dissonance_variant(
    utterances: pd.DataFrame,
    method: str = "raw",
    channels: str | Sequence[str] = ("voice", "face"),
    threshold: float | None = None,
    percentile: float = DEFAULT_PERCENTILE,
    scope: str = "session",
    roles: Sequence[str] = ("patient",),
    *,
    dimensions: Sequence[str] = DIMENSIONS,
    min_n: int = DEFAULT_MIN_N,
) -> pd.DataFrame:
    """A copy of `utterances` with the dissonance columns filled by one variant.

    Same columns as `compute_dissonance`; `dissonance_method` names the method, scope, channels and
    the threshold actually used (per row: a percentile threshold differs between sessions), e.g.
    `eq1-raw:voice-face:T=0.5`, `eq1-zscore[session]:voice-face:T=2sd`,
    `eq1-pct90[session]:text-nonverbal:T=0.4123`. Details (thresholds per group, notes) are in
    `result.attrs["dissonance"]`.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    a, b = parse_channels(channels)
    roles = tuple(roles)
    dims = tuple(dimensions)
    if method == "percentile" and threshold is not None:
        raise ValueError("method 'percentile' chooses T from the data: give `percentile`, not `threshold`")
    if method == "percentile" and not 0.0 <= float(percentile) <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {percentile}")
    if threshold is None and method != "percentile":
        threshold = DEFAULT_THRESHOLDS[method]
    if threshold is not None and threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")

    out = utterances.copy()
    df = out.reset_index(drop=True)  # positional work; results go back onto the caller's index
    in_roles = (
        df["role"].isin(list(roles)).fillna(False).to_numpy(dtype=bool)
        if "role" in df.columns
        else np.zeros(len(df), dtype=bool)
    )
    notes: list[str] = []
    info: dict[str, Any] = {
        "method": method, "channels": [a, b], "scope": scope if method != "raw" else None,
        "roles": list(roles), "dimensions": list(dims), "notes": notes,
    }

    work = pd.DataFrame({"role": df["role"].to_numpy() if "role" in df.columns else [pd.NA] * len(df)}, index=df.index)
    values = {(ch, d): channel_values(df, c, d) for ch, c in ((_A, a), (_B, b)) for d in dims}

    if method == "zscore":
        keys = _group_keys(df, scope)
        for (ch, d), v in list(values.items()):
            z = np.full(len(df), np.nan)
            for key, idx in keys.groupby(keys, sort=True).groups.items():
                pos = np.asarray(idx, dtype=int)
                use = pos[in_roles[pos] & ~np.isnan(v[pos])]
                if len(use) == 0:
                    continue
                if len(use) < min_n:
                    notes.append(f"{key}: {a if ch == _A else b} {d}: {len(use)} value(s) < min_n={min_n}, not standardised")
                    continue
                mu, sd = float(np.mean(v[use])), float(np.std(v[use], ddof=1))
                if not np.isfinite(sd) or sd <= 1e-12:
                    notes.append(f"{key}: {a if ch == _A else b} {d}: constant, cannot be standardised")
                    continue
                z[pos] = (v[pos] - mu) / sd
            values[(ch, d)] = z
        info["threshold"] = float(threshold)

    for (ch, d), v in values.items():
        work[f"{ch}_{d}"] = v

    def settings(t: float) -> DissonanceSettings:
        # model_construct: the working channels are private column names (`__diss_a`), which the
        # settings validator rightly refuses from users.
        base = DissonanceSettings()
        return DissonanceSettings.model_construct(**{**base.model_dump(), "threshold": float(t), "channels": (_A, _B),
                                                     "dimensions": dims, "roles": roles})

    if method in ("raw", "zscore"):
        res = compute_dissonance(work, settings(threshold))
        label = (
            f"{METHOD_RAW}:{a}-{b}:T={threshold:g}" if method == "raw" else f"eq1-zscore[{scope}]:{a}-{b}:T={threshold:g}sd"
        )
        res["dissonance_method"] = _label(res, label)
        info["threshold"] = float(threshold)
    else:  # percentile
        res = compute_dissonance(work, settings(0.0))  # scores only; flags recomputed per group
        keys = _group_keys(df, scope)
        thresholds: dict[str, float] = {}
        out_parts = []
        for key, idx in keys.groupby(keys, sort=True).groups.items():
            scores = res.loc[idx, "dissonance_score"].dropna()
            sub = work.loc[idx]
            if len(scores) == 0:
                part = compute_dissonance(sub, settings(0.0))
            elif len(scores) < min_n:
                notes.append(f"{key}: {len(scores)} score(s) < min_n={min_n}, no percentile threshold")
                part = compute_dissonance(sub.assign(role=pd.NA), settings(0.0))  # all null
            else:
                t = float(np.percentile(scores.to_numpy(dtype=float), percentile))
                thresholds[str(key)] = t
                part = compute_dissonance(sub, settings(t))
                part["dissonance_method"] = _label(part, f"eq1-pct{percentile:g}[{scope}]:{a}-{b}:T={t:.4g}")
            out_parts.append(part[list(OUTPUT_COLUMNS)])
        res = pd.concat(out_parts).reindex(df.index) if out_parts else res
        info["percentile"] = float(percentile)
        info["thresholds"] = thresholds

    for col in OUTPUT_COLUMNS:
        out[col] = pd.Series(res[col].astype(compute_dtype(col)).to_numpy(), index=out.index, dtype=compute_dtype(col))
    out.attrs = {**utterances.attrs, "dissonance": info}
    return out


def compute_dtype(col: str) -> str:
    return {"dissonance_score": "float64", "dissonance": "boolean"}.get(col, "string")


def _label(res: pd.DataFrame, label: str) -> pd.Series:
    scored = res["dissonance_score"].notna()
    return pd.Series([label if s else pd.NA for s in scored], index=res.index, dtype="string")


# --------------------------------------------------------------------------- comparing variants


@dataclass(frozen=True)
class Variant:
    """One way of computing dissonance; `column` names its flag in `dissonance_table`."""

    method: str = "raw"
    channels: tuple[str, str] = ("voice", "face")
    threshold: float | None = None
    percentile: float = DEFAULT_PERCENTILE
    scope: str = "session"
    name: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # dimensions, min_n

    @classmethod
    def parse(cls, spec: "str | Mapping[str, Any] | Variant") -> "Variant":
        """`Variant`, a dict of its fields, or "method:a-b" (e.g. "zscore:text-nonverbal",
        "percentile95:voice-face", "raw:voice-face:T=0.3")."""
        if isinstance(spec, Variant):
            return spec
        if isinstance(spec, Mapping):
            kw = dict(spec)
            if "channels" in kw:
                kw["channels"] = parse_channels(kw["channels"])
            return cls(**kw)
        parts = str(spec).split(":")
        method = parts[0].strip()
        kw: dict[str, Any] = {}
        if method.startswith("percentile") and method != "percentile":
            kw["percentile"] = float(method[len("percentile"):])
            method = "percentile"
        if len(parts) > 1:
            kw["channels"] = parse_channels(parts[1])
        for extra in parts[2:]:
            k, _, v = extra.partition("=")
            if k.strip().upper() == "T":
                kw["threshold"] = float(v)
            elif k.strip() == "scope":
                kw["scope"] = v.strip()
            else:
                raise ValueError(f"variant {spec!r}: unknown option {extra!r} (T=..., scope=...)")
        return cls(method=method, **kw)

    @property
    def column(self) -> str:
        if self.name:
            return self.name
        m = self.method
        if m == "percentile" and self.percentile != DEFAULT_PERCENTILE:
            m = f"pct{self.percentile:g}"
        if self.threshold is not None and self.threshold != DEFAULT_THRESHOLDS.get(self.method):
            m = f"{m}_T{self.threshold:g}"
        if m != "raw" and self.scope != "session":
            m = f"{m}_{self.scope}"
        return f"diss_{m}_{self.channels[0]}_{self.channels[1]}"

    def compute(self, utterances: pd.DataFrame, roles: Sequence[str] = ("patient",)) -> pd.DataFrame:
        return compute_dissonance_variant(
            utterances, self.method, self.channels, self.threshold, self.percentile, self.scope, roles, **dict(self.options)
        )


DEFAULT_VARIANTS = (
    "raw:voice-face",
    "zscore:voice-face",
    "percentile:voice-face",
    "raw:text-nonverbal",
    "zscore:text-nonverbal",
)


def dissonance_table(
    utterances: pd.DataFrame,
    variants: Iterable[str | Mapping[str, Any] | Variant] = DEFAULT_VARIANTS,
    *,
    roles: Sequence[str] = ("patient",),
    scores: bool = False,
) -> pd.DataFrame:
    """A copy of `utterances` plus one nullable boolean column per variant (e.g.
    `diss_zscore_voice_face`), and with `scores=True` its score (`score_zscore_voice_face`).
    `variant_agreement(table)` summarises them. Method strings are in `attrs["variants"]`."""
    out = utterances.copy()
    described: dict[str, dict[str, Any]] = {}
    for spec in variants:
        v = Variant.parse(spec)
        col = v.column
        if col in out.columns:
            raise ValueError(f"two variants would both write {col!r}: give one a name")
        res = v.compute(utterances, roles)
        out[col] = res["dissonance"].astype("boolean")
        if scores:
            out["score_" + col.removeprefix("diss_")] = res["dissonance_score"].astype("float64")
        described[col] = {**res.attrs.get("dissonance", {}), "methods": sorted(set(res["dissonance_method"].dropna()))}
    out.attrs = {**utterances.attrs, "variants": described}
    return out


def cohen_kappa(x: Sequence[Any], y: Sequence[Any]) -> float:
    """Cohen's kappa between two raters' labels (same result as sklearn's `cohen_kappa_score`;
    NaN when chance agreement is 1, i.e. both raters used one same label throughout)."""
    xa, ya = np.asarray(list(x), dtype=object), np.asarray(list(y), dtype=object)
    if len(xa) != len(ya):
        raise ValueError("cohen_kappa: the two label lists differ in length")
    if len(xa) == 0:
        return float("nan")
    labels = sorted(set(xa.tolist()) | set(ya.tolist()), key=str)
    po = float(np.mean(xa == ya))
    pe = sum(float(np.mean(xa == k)) * float(np.mean(ya == k)) for k in labels)
    if pe >= 1.0 - 1e-12:
        return float("nan")
    return (po - pe) / (1.0 - pe)


def variant_agreement(table: pd.DataFrame, columns: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
    """Share flagged per variant, and pairwise agreement over the rows both variants scored.

    Returns {"shares": one row per variant (n_scored, n_flagged, share_flagged),
             "kappa": variant x variant Cohen's kappa, "agreement": variant x variant share of
             rows on which the two agree, "n_both": rows both scored}.
    """
    if columns is None:  # the variants dissonance_table added, else every diss_* column
        named = [c for c in table.attrs.get("variants", {}) if c in table.columns]
        columns = named or [c for c in table.columns if str(c).startswith("diss_")]
    cols = list(columns)
    rows = []
    for c in cols:
        s = table[c].astype("boolean")
        n = int(s.notna().sum())
        k = int(s.fillna(False).sum())
        rows.append({"variant": c, "n_scored": n, "n_flagged": k, "share_flagged": k / n if n else float("nan")})
    shares = pd.DataFrame(rows, columns=["variant", "n_scored", "n_flagged", "share_flagged"]).set_index("variant")
    kappa = pd.DataFrame(np.nan, index=cols, columns=cols, dtype=float)
    agree = kappa.copy()
    n_both = pd.DataFrame(0, index=cols, columns=cols, dtype=int)
    for i, ci in enumerate(cols):
        for cj in cols[i:]:
            both = table[ci].notna() & table[cj].notna()
            x = table.loc[both, ci].astype(bool).tolist()
            y = table.loc[both, cj].astype(bool).tolist()
            kv = cohen_kappa(x, y)
            av = float(np.mean(np.asarray(x) == np.asarray(y))) if x else float("nan")
            for p, q in ((ci, cj), (cj, ci)):
                kappa.loc[p, q] = kv
                agree.loc[p, q] = av
                n_both.loc[p, q] = int(both.sum())
    return {"shares": shares, "kappa": kappa, "agreement": agree, "n_both": n_both}
