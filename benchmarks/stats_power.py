"""Power, CI coverage and mixed-model fit time of `emoguide stats` on simulated studies (issue 9).

    python benchmarks/stats_power.py                 # fit times, coverage study, power at 5 x 100
    python benchmarks/stats_power.py --quick         # fewer studies (a smoke run)
    python benchmarks/stats_power.py --sims 200 --sizes 5x20,5x50,5x100 --out benchmarks/results/stats_power.txt

(a) the time of one mixed-model fit, `models.mixed_contrasts` (statsmodels MixedLM, crossed
    variance components over one all-data group) and `power.fast_mixed_contrasts` (per-context
    blocks), against the paper's ANOVA + Tukey on the same table, per study size (raters x
    contexts x 4 conditions, one criterion), median of `--repeats` fits;
(b) the coverage study of tests/test_stats_sim.py (the same settings and seed), with each mixed
    model: coverage and power side by side for the mixed model, Tukey HSD and the pooled t;
(b') the same design over 1000 studies without the mixed model: the long-run coverage of the
    paper's Tukey interval and the pooled t;
(c) power at the issue's example (`--effect 0.4 --raters 5 --contexts 100`, fast mixed model)
    and the false-positive rate at effect 0, with the expert cost at $7 per rater-video.
Everything is printed and written to `--out`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# The coverage study's settings (kept in step with tests/test_stats_sim.py).
COVERAGE = dict(effect=0.4, raters=5, contexts=20, conditions=4, n_sims=200, seed=2026)


def fit_times(sizes: list[tuple[int, int]], repeats: int) -> list[str]:
    from emoguide.evaluation.stats.models import mixed_contrasts, paper_anova, paper_tukey
    from emoguide.evaluation.stats.power import fast_mixed_contrasts
    from emoguide.evaluation.stats.simulate import simulate_ratings

    lines = ["(a) seconds per fit (one criterion, 4 conditions, 1 model; median of "
             f"{repeats}): the paper's ANOVA + Tukey, models.mixed_contrasts (crossed, one all-data group), "
             "power.fast_mixed_contrasts (per-context blocks)",
             f"{'raters x contexts':>18} {'ratings':>8} {'ANOVA+Tukey':>12} {'crossed':>9} {'fast':>8} {'crossed/fast':>13}"]
    print(lines[0], lines[1], sep="\n", flush=True)
    for raters, contexts in sizes:
        paper_t, mixed_t, fast_t = [], [], []
        n = 0
        for rep in range(repeats):
            df = simulate_ratings(raters=raters, contexts=contexts, criteria=["empathy"], effect=0.4, seed=rep)
            n = len(df)
            for bucket, job in ((paper_t, lambda: (paper_anova(df, "empathy"), paper_tukey(df, "empathy"))),
                                (mixed_t, lambda: mixed_contrasts(df, "empathy", with_model=False)),
                                (fast_t, lambda: fast_mixed_contrasts(df, "empathy", with_model=False))):
                t0 = time.perf_counter()
                job()
                bucket.append(time.perf_counter() - t0)
        p, m, f = (statistics.median(x) for x in (paper_t, mixed_t, fast_t))
        lines.append(f"{raters:>8} x {contexts:<7} {n:>8} {p:>12.3f} {m:>9.2f} {f:>8.2f} {m / f:>12.1f}x")
        print(lines[-1], flush=True)
    return lines


def power_block(title: str, workers: int, **kwargs) -> list[str]:
    from emoguide.evaluation.stats.power import power

    t0 = time.perf_counter()
    res = power(workers=workers, **kwargs)
    lines = [title, res.format(), f"wall time {time.perf_counter() - t0:.0f} s with {res.settings['workers']} worker(s)"]
    print("\n".join(lines), flush=True)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5x20,5x50,5x100", help="raters x contexts for the fit times")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sims", type=int, default=200, help="studies for the power at 5 x 100")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="20 studies each, sizes 5x20,5x50")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "stats_power.txt")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.repeats, args.sims = "5x20,5x50", 2, 20
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",") if s]
    lines = fit_times(sizes, args.repeats)
    cov = dict(COVERAGE, n_sims=20 if args.quick else COVERAGE["n_sims"])
    for mixed in ("stats", "fast"):
        lines += [""] + power_block(f"(b) the coverage study (tests/test_stats_sim.py), mixed={mixed}", args.workers,
                                    mixed=mixed, **cov)
    lines += [""] + power_block("(b') the paper's intervals in the long run (same design, no mixed fits)", args.workers,
                                **dict(cov, n_sims=100 if args.quick else 1000, seed=7), with_mixed=False)
    lines += [""] + power_block("(c) power at the issue's example", args.workers, effect=0.4, raters=5, contexts=100,
                                n_sims=args.sims, seed=1)
    lines += [""] + power_block("(c') no effect: false-positive rate", args.workers, effect=0.0, raters=5, contexts=100,
                                n_sims=args.sims, seed=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
