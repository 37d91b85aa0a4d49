"""Figures of the paper, on the user's own corpus (docs/dissonance.md, docs/text_affect.md).

* `sentiment_by_role` — Figure 3 (middle): the distribution of VADER sentiment for therapist and
  patient utterances.
* `dissonance_timeline` — Figure 4: voice and face valence (top) and arousal (bottom) per
  utterance over a session's time axis, with the dissonant patient utterances shaded.
* `abs_difference_plot` — Figure 10: |dV| against |dA| per patient utterance with the threshold
  lines, the plot the paper chose T = 0.5 from.

Each function writes one file (PNG, PDF or SVG, by the extension; written atomically) and returns
a `FigureResult` holding the matplotlib Figure and axes (for inspection or further styling) and
the numbers drawn. Figures are built with `matplotlib.figure.Figure` on the Agg canvas, without
pyplot, so nothing depends on a display or global state. They draw values only, never video
frames, so there are no faces to blur. Missing values are gaps, never zeros.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from emoguide.corpus.atomic import atomic_path
from emoguide.dissonance_variants import DIMENSIONS, parse_channels, channel_source, channel_values
from emoguide.errors import require

FORMATS = (".png", ".pdf", ".svg")
CHANNEL_COLOURS = {
    "voice": "tab:blue", "face": "tab:orange", "text": "tab:green", "sentiment": "tab:olive", "nonverbal": "tab:purple",
}
ROLE_COLOURS = {"therapist": "tab:blue", "patient": "tab:red", "unknown": "tab:gray"}
ROLE_LINESTYLES = ("-", ":", "--")
SHADE = {"color": "tab:red", "alpha": 0.18, "lw": 0}


@dataclass
class FigureResult:
    path: Path
    figure: Any  # matplotlib.figure.Figure
    axes: list = field(default_factory=list)
    stats: Any = None  # a DataFrame or dict of the numbers drawn
    shaded: int = 0  # spans shaded per axis (timeline)


def _new_figure(figsize: tuple[float, float]):
    require("matplotlib", "figures", "pip install matplotlib")
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _save(fig, out_path: str | Path, dpi: int = 150) -> Path:
    path = Path(out_path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: figure format by extension, one of {', '.join(FORMATS)}")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=suffix[1:], dpi=dpi)
    return path


def _one_session(df: pd.DataFrame, session_id: str | None) -> tuple[str | None, pd.DataFrame]:
    if "session_id" not in df.columns:
        return session_id, df
    ids = sorted(df["session_id"].dropna().astype(str).unique())
    if session_id is None:
        if len(ids) > 1:
            raise ValueError(f"the table holds {len(ids)} sessions ({', '.join(ids[:5])}...): pass session_id")
        session_id = ids[0] if ids else None
        return session_id, df
    sub = df[df["session_id"].astype("string") == session_id]
    if sub.empty:
        raise ValueError(f"no utterances of session {session_id!r} (have: {', '.join(ids[:5])})")
    return session_id, sub


def _legend_name(df: pd.DataFrame, channel: str) -> str:
    src = channel_source(df, channel)
    approx = src is not None and "approx" in src.lower()
    return f"{channel}" + (" (approx)" if approx else "")


# --------------------------------------------------------------------------- Figure 3 (middle)


def sentiment_stats(utterances_df: pd.DataFrame, column: str = "text_sentiment",
                    roles: Sequence[str] = ("therapist", "patient")) -> pd.DataFrame:
    """Per role: n, mean, sd, median, quartiles and the shares VADER calls positive/neutral/negative."""
    rows = []
    for role in roles:
        v = pd.to_numeric(utterances_df.loc[utterances_df["role"] == role, column], errors="coerce").dropna()
        x = v.to_numpy(dtype=float)
        n = len(x)
        rows.append(
            {
                "role": role,
                "n": n,
                "mean": float(np.mean(x)) if n else np.nan,
                "sd": float(np.std(x, ddof=1)) if n > 1 else np.nan,
                "median": float(np.median(x)) if n else np.nan,
                "q1": float(np.percentile(x, 25)) if n else np.nan,
                "q3": float(np.percentile(x, 75)) if n else np.nan,
                "share_positive": float(np.mean(x >= 0.05)) if n else np.nan,
                "share_neutral": float(np.mean((x > -0.05) & (x < 0.05))) if n else np.nan,
                "share_negative": float(np.mean(x <= -0.05)) if n else np.nan,
            }
        )
    return pd.DataFrame(rows).set_index("role")


def sentiment_by_role(
    utterances_df: pd.DataFrame,
    out_path: str | Path,
    *,
    column: str = "text_sentiment",
    roles: Sequence[str] = ("therapist", "patient"),
    bins: int = 20,
) -> FigureResult:
    """Paper Figure 3 (middle): histogram (left) and box plot (right) of VADER compound by role.

    `result.stats` is `sentiment_stats(...)` (one row per role)."""
    if column not in utterances_df.columns or pd.to_numeric(utterances_df[column], errors="coerce").notna().sum() == 0:
        raise ValueError(f"no {column} values: run the text_affect stage first")
    stats = sentiment_stats(utterances_df, column, roles)
    fig = _new_figure((9.0, 3.6))
    ax_h, ax_b = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    edges = np.linspace(-1.0, 1.0, bins + 1)
    data, names = [], []
    for role in roles:
        x = pd.to_numeric(utterances_df.loc[utterances_df["role"] == role, column], errors="coerce").dropna().to_numpy(float)
        if not len(x):
            continue
        colour = ROLE_COLOURS.get(role, "tab:gray")
        ax_h.hist(x, bins=edges, density=True, histtype="stepfilled", alpha=0.35, color=colour,
                  label=f"{role} (n={len(x)}, mean {x.mean():+.2f})")
        ax_h.axvline(float(x.mean()), color=colour, ls="--", lw=1)
        data.append(x)
        names.append(role)
    ax_h.set_xlim(-1, 1)
    ax_h.set_xlabel("VADER compound sentiment")
    ax_h.set_ylabel("density")
    ax_h.legend(loc="upper left", fontsize=8)
    ax_h.set_title("Sentiment of utterances by role")
    if data:
        try:
            ax_b.boxplot(data, tick_labels=names, showmeans=True)
        except TypeError:  # matplotlib < 3.9
            ax_b.boxplot(data, labels=names, showmeans=True)
    ax_b.axhline(0.0, color="0.6", lw=0.8)
    ax_b.set_ylim(-1.05, 1.05)
    ax_b.set_ylabel("compound")
    path = _save(fig, out_path)
    return FigureResult(path, fig, [ax_h, ax_b], stats)


# --------------------------------------------------------------------------- Figure 4


def dissonance_timeline(
    utterances_df: pd.DataFrame,
    out_path: str | Path,
    *,
    session_id: str | None = None,
    channels: Sequence[str] | str = ("voice", "face"),
    flag_column: str = "dissonance",
    roles: Sequence[str] = ("patient",),
    style: str = "points",
    plot_roles: Sequence[str] | None = None,
) -> FigureResult:
    """Paper Figure 4: per-utterance valence (top) and arousal (bottom) of each channel over the
    session's time axis; utterances of `roles` whose `flag_column` is true are shaded on both axes.

    `style="points"`: a marker at each utterance's midpoint, joined by lines that break at missing
    values; `style="steps"`: a level segment over each utterance's span. A channel whose
    `{channel}_source` mentions "approx" is marked "(approx)" in the legend. `flag_column` may be
    a `dissonance_table` column (e.g. `diss_zscore_voice_face`). `plot_roles` (default: `roles`)
    are the utterances whose values are drawn, one line per role and channel, so a line never
    joins two people's readings; missing values break the line.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    chans = parse_channels(channels)
    if style not in ("points", "steps"):
        raise ValueError("style: 'points' or 'steps'")
    session_id, sdf = _one_session(utterances_df, session_id)
    sdf = sdf.sort_values(["start", "index"] if "index" in sdf.columns else ["start"], kind="stable").reset_index(drop=True)
    start = pd.to_numeric(sdf["start"], errors="coerce").to_numpy(float)
    end = pd.to_numeric(sdf["end"], errors="coerce").to_numpy(float) if "end" in sdf.columns else start.copy()
    end = np.where(np.isnan(end), start, end)
    mid = (start + end) / 2.0

    in_roles = sdf["role"].isin(list(roles)).fillna(False).to_numpy(bool) if "role" in sdf.columns else np.zeros(len(sdf), bool)
    if flag_column in sdf.columns:
        flags = sdf[flag_column].astype("boolean").fillna(False).to_numpy(bool) & in_roles
    else:
        flags = np.zeros(len(sdf), bool)
    methods = []
    if flag_column == "dissonance" and "dissonance_method" in sdf.columns:
        methods = sorted(set(sdf.loc[flags, "dissonance_method"].dropna().astype(str)))

    plot_roles = tuple(roles) if plot_roles is None else tuple(plot_roles)
    role_of = sdf["role"].astype("string").fillna("unknown").to_numpy(object) if "role" in sdf.columns else np.full(len(sdf), "unknown", object)
    fig = _new_figure((10.0, 5.6))
    axes = list(fig.subplots(2, 1, sharex=True))
    stats: dict[str, Any] = {"session_id": session_id, "n_utterances": int(len(sdf)), "n_flagged": int(flags.sum()),
                             "flag_column": flag_column, "methods": methods, "plot_roles": list(plot_roles), "values": {}}
    handles = []
    for ax, dim in zip(axes, DIMENSIONS):
        for i in np.flatnonzero(flags):
            ax.axvspan(start[i], end[i] if end[i] > start[i] else start[i] + 0.5, **SHADE)
        for ch in chans:
            v_all = channel_values(sdf, ch, dim)
            colour = CHANNEL_COLOURS.get(ch)
            for k, role in enumerate(plot_roles):
                # one line per role: a line never joins two people's readings
                sel = role_of == role
                v = v_all[sel]
                stats["values"][f"{ch}_{dim}" + (f"[{role}]" if len(plot_roles) > 1 else "")] = int(np.sum(~np.isnan(v)))
                label = _legend_name(sdf, ch) + (f" [{role}]" if len(plot_roles) > 1 else "")
                ls = ROLE_LINESTYLES[k % len(ROLE_LINESTYLES)]
                if style == "points":
                    ax.plot(mid[sel], v, marker="o", ms=3.5, lw=1.2, ls=ls, color=colour, label=label,
                            alpha=1.0 if k == 0 else 0.6)
                else:
                    st, en = start[sel], end[sel]
                    xs = np.column_stack([st, en, np.full_like(st, np.nan)]).ravel()
                    ys = np.column_stack([v, v, np.full_like(v, np.nan)]).ravel()
                    ax.plot(xs, ys, lw=2.0, ls=ls, color=colour, label=label, alpha=1.0 if k == 0 else 0.6)
        ax.axhline(0.0, color="0.6", lw=0.6)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel(dim)
    axes[-1].set_xlabel("time (s)")
    for ch in chans:
        handles.append(Line2D([], [], color=CHANNEL_COLOURS.get(ch), marker="o" if style == "points" else None,
                              label=_legend_name(sdf, ch)))
    if len(plot_roles) > 1:
        for k, role in enumerate(plot_roles):
            handles.append(Line2D([], [], color="0.3", ls=ROLE_LINESTYLES[k % len(ROLE_LINESTYLES)], label=role))
    shade_label = "dissonant (" + "/".join(roles) + ")"
    if methods:
        shade_label += ": " + "; ".join(methods)
    elif flag_column != "dissonance":
        shade_label += f": {flag_column}"
    handles.append(Patch(facecolor=SHADE["color"], alpha=SHADE["alpha"], label=shade_label))
    fig.legend(handles=handles, loc="outside upper center", fontsize=8, ncols=min(len(handles), 4))
    title = f"{' vs '.join(chans)} per utterance"
    axes[0].set_title(f"{session_id}: {title}" if session_id else title)
    path = _save(fig, out_path)
    return FigureResult(path, fig, axes, stats, shaded=int(flags.sum()))


# --------------------------------------------------------------------------- Figure 10


def abs_difference_plot(
    utterances_df: pd.DataFrame,
    out_path: str | Path,
    threshold: float = 0.5,
    *,
    channels: Sequence[str] | str = ("voice", "face"),
    roles: Sequence[str] = ("patient",),
    session_id: str | None = None,
) -> FigureResult:
    """Paper Figure 10: |V_a - V_b| against |A_a - A_b| per utterance of `roles` that has both
    dimensions on both channels, with the threshold lines; points past either line (Eq. 1's
    max > T) are drawn in red. Rows with only one comparable dimension are counted in the stats
    (`n_one_dim`) but cannot be placed on both axes."""
    a, b = parse_channels(channels)
    df = utterances_df
    if session_id is not None:
        session_id, df = _one_session(df, session_id)
    in_roles = df["role"].isin(list(roles)).fillna(False).to_numpy(bool)
    dv = np.abs(channel_values(df, a, "valence") - channel_values(df, b, "valence"))
    da = np.abs(channel_values(df, a, "arousal") - channel_values(df, b, "arousal"))
    both = in_roles & ~np.isnan(dv) & ~np.isnan(da)
    one = in_roles & (np.isnan(dv) ^ np.isnan(da))
    x, y = dv[both], da[both]
    above = np.maximum(x, y) > threshold
    fig = _new_figure((5.2, 5.0))
    ax = fig.subplots()
    ax.scatter(x[~above], y[~above], s=12, color="tab:blue", alpha=0.6, label=f"max <= T (n={int((~above).sum())})")
    ax.scatter(x[above], y[above], s=12, color="tab:red", alpha=0.7, label=f"max > T (n={int(above.sum())})")
    ax.axvline(threshold, color="k", ls="--", lw=1)
    ax.axhline(threshold, color="k", ls="--", lw=1, label=f"T = {threshold:g}")
    hi = max(2.0, float(np.nanmax(np.concatenate([x, y]))) * 1.05) if len(x) else 2.0
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_aspect("equal")
    ax.set_xlabel(f"|valence {a} - valence {b}|")
    ax.set_ylabel(f"|arousal {a} - arousal {b}|")
    ax.set_title(f"Absolute V/A difference, {a} vs {b}" + (f" ({session_id})" if session_id else ""))
    ax.legend(loc="upper right", fontsize=8)
    stats = {
        "n_points": int(both.sum()),
        "n_above": int(above.sum()),
        "share_above": float(above.mean()) if len(above) else float("nan"),
        "n_one_dim": int(one.sum()),
        "threshold": float(threshold),
        "channels": [a, b],
    }
    path = _save(fig, out_path)
    return FigureResult(path, fig, [ax], stats)
