"""`emoguide stats`: reference values from published worked examples, the mixed model on planted
effects, partial data, and the end-to-end run (tables, figures, report, CLI)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("scipy")
pytest.importorskip("statsmodels")
pytest.importorskip("pingouin")
pytest.importorskip("krippendorff")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from emoguide.errors import InputError  # noqa: E402
from emoguide.evaluation.schema import JUDGMENTS_COLUMNS, RATINGS_COLUMNS  # noqa: E402
from emoguide.evaluation.stats import agreement, descriptive, judge_vs_experts, models  # noqa: E402
from emoguide.evaluation.stats.load import load_ratings, prepare_ratings  # noqa: E402

# The column lists of issue 9, typed out again so that a change in the code cannot pass silently.
EXPECTED_COLUMNS = {
    "table1": ["statistic", "value"],
    "means": ["criterion", "model", "condition", "n", "mean", "sd", "ci_low", "ci_high"],
    "anova": ["criterion", "df_between", "df_within", "F", "p", "n"],
    "tukey": ["criterion", "group1", "group2", "meandiff", "ci_low", "ci_high", "p_adj"],
    "mixed": ["criterion", "term", "estimate", "se", "ci_low", "ci_high", "p", "p_holm"],
    "kappa": ["criterion", "rater1", "rater2", "kappa", "kappa_quadratic", "n"],
    "agreement": ["criterion", "alpha_ordinal", "alpha_ci_low", "alpha_ci_high", "icc2_1", "icc2_k", "n_items",
                  "n_raters"],
    "groups": ["criterion", "group", "n", "mean", "sd"],
    "judge_vs_experts": ["criterion", "judge_model", "pearson_r", "spearman_rho", "kendall_tau", "r_ci_low",
                         "r_ci_high", "n_items", "mean_diff"],
}


def ratings_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows with the fields a test cares about; the other RATINGS_COLUMNS get neutral values."""
    defaults = {"study_id": "t", "rater_group": "g", "item_id": None, "session_id": "s1", "target_index": 0,
                "model": "m", "condition": "base", "criterion": "empathy", "comment": "", "flagged": False,
                "seconds_on_item": 10.0, "watched_fraction": 1.0, "is_retest": False, "n_edits": 0,
                "created_at": "2026-12-01T00:00:00+00:00", "updated_at": "2026-12-01T00:00:00+00:00",
                "config_hash": "x"}
    df = pd.DataFrame([{**defaults, **r} for r in rows])
    return prepare_ratings(df[list(RATINGS_COLUMNS)])


def matrix_ratings(matrix: dict[str, list], criterion: str = "empathy") -> pd.DataFrame:
    """A raters x units table (None = missing) as ratings: unit k is context (s1, k)."""
    rows = []
    for rater, values in matrix.items():
        for k, v in enumerate(values):
            if v is not None:
                rows.append({"rater_id": rater, "target_index": k, "score": v, "criterion": criterion})
    return ratings_frame(rows)


def synth_study(seed: int = 0, raters: int = 5, contexts: int = 30, models_=("mA", "mB"),
                conditions=("base", "discrete", "continuous", "dissonance"), effect: float = 0.5,
                rater_sd: float = 0.5, context_sd: float = 0.6, noise: float = 0.7, groups=("psych", "student"),
                rate_share: float = 1.0) -> pd.DataFrame:
    """Crossed design: every rater scores every response of a context (with probability rate_share);
    dissonance is `effect` points above the others on the latent scale, rounded and clipped to 1-5."""
    rng = np.random.default_rng(seed)
    leniency = rng.normal(0, rater_sd, raters)
    difficulty = rng.normal(0, context_sd, contexts)
    rows = []
    for c in range(contexts):
        sid, tix = f"s{c % 3}", c
        for m in models_:
            for cond in conditions:
                for r in range(raters):
                    if rng.random() > rate_share:
                        continue
                    latent = 3.2 + leniency[r] + difficulty[c] + (effect if cond == "dissonance" else 0.0) \
                        + (0.2 if m == "mB" else 0.0) + rng.normal(0, noise)
                    rows.append({"rater_id": f"r{r}", "rater_group": groups[r % len(groups)], "session_id": sid,
                                 "target_index": tix, "model": m, "condition": cond, "criterion": "empathy",
                                 "score": float(np.clip(np.round(latent), 1, 5))})
    return ratings_frame(rows)


# --------------------------------------------------------------------------- reference values


# R's PlantGrowth data set (Dobson 1983, Table 7.1), typed from `datasets::PlantGrowth`.
PLANT_GROWTH = {
    "ctrl": [4.17, 5.58, 5.18, 6.11, 4.50, 4.61, 5.17, 4.53, 5.33, 5.14],
    "trt1": [4.81, 4.17, 4.41, 3.59, 5.87, 3.83, 6.03, 4.89, 4.32, 4.69],
    "trt2": [6.31, 5.12, 5.54, 5.50, 5.37, 5.29, 4.92, 6.15, 5.80, 5.26],
}


def plant_growth() -> pd.DataFrame:
    rows = [{"rater_id": f"r{i}", "target_index": i, "condition": g, "score": w, "criterion": "weight"}
            for g, ws in PLANT_GROWTH.items() for i, w in enumerate(ws)]
    return ratings_frame(rows)


def test_paper_anova_plantgrowth():
    # Reference: R, summary(aov(weight ~ group, data = PlantGrowth)):
    # group Df 2, Residuals 27, F value 4.846, Pr(>F) 0.01591.
    res = models.paper_anova(plant_growth(), "weight")
    assert (res["df_between"], res["df_within"], res["n"]) == (2, 27, 30)
    assert res["F"] == pytest.approx(4.846, abs=1e-3)
    assert res["p"] == pytest.approx(0.01591, abs=1e-5)


def test_paper_tukey_plantgrowth():
    # Reference: R, TukeyHSD(aov(weight ~ group, data = PlantGrowth)):
    #   trt1-ctrl -0.371 [-1.0622161, 0.3202161] p adj 0.3908711
    #   trt2-ctrl  0.494 [-0.1972161, 1.1852161] p adj 0.1979960
    #   trt2-trt1  0.865 [ 0.1737839, 1.5562161] p adj 0.0120064
    t = models.paper_tukey(plant_growth(), "weight")
    assert list(t.columns) == EXPECTED_COLUMNS["tukey"]
    got = {(r.group1, r.group2): r for r in t.itertuples()}
    assert set(got) == {("ctrl", "trt1"), ("ctrl", "trt2"), ("trt1", "trt2")}  # every pair once
    ref = {("ctrl", "trt1"): (-0.371, -1.0622161, 0.3202161, 0.3908711),
           ("ctrl", "trt2"): (0.494, -0.1972161, 1.1852161, 0.1979960),
           ("trt1", "trt2"): (0.865, 0.1737839, 1.5562161, 0.0120064)}
    for key, (diff, lo, hi, p) in ref.items():
        r = got[key]
        assert r.meandiff == pytest.approx(diff, abs=1e-3)  # group2 - group1
        assert r.ci_low == pytest.approx(lo, abs=1e-3)
        assert r.ci_high == pytest.approx(hi, abs=1e-3)
        assert r.p_adj == pytest.approx(p, abs=1e-3)


# Shrout & Fleiss (1979), "Intraclass correlations: uses in assessing rater reliability",
# Psychological Bulletin 86(2), Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = {"j1": [9, 6, 8, 7, 10, 6], "j2": [2, 1, 4, 1, 5, 2], "j3": [5, 3, 6, 2, 6, 4], "j4": [8, 2, 8, 6, 9, 7]}


def test_icc_shrout_fleiss():
    # Reference: Shrout & Fleiss (1979), Table 4: ICC(2,1) = .29, ICC(2,4) = .62 (printed to 2 decimals).
    block = pd.DataFrame(SHROUT_FLEISS)
    vals = agreement.icc(block)
    assert vals["icc2_1"] == pytest.approx(0.29, abs=5e-3)
    assert vals["icc2_k"] == pytest.approx(0.62, abs=5e-3)
    # The same numbers through the whole agreement table (complete block found in a ratings table).
    df = matrix_ratings(SHROUT_FLEISS)
    table = agreement.agreement_table(df, scale=range(1, 11), n_resamples=200)
    row = table.iloc[0]
    assert row["icc2_1"] == pytest.approx(0.29, abs=5e-3)
    assert row["icc2_k"] == pytest.approx(0.62, abs=5e-3)
    assert (row["n_items"], row["n_raters"]) == (6, 4)


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability" (Annenberg School for
# Communication, departmental paper 43), section C: 4 observers x 12 units with missing values.
KRIPP = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}


def test_krippendorff_alpha_worked_example():
    # Reference values printed there: nominal alpha = 0.743, ordinal alpha = 0.815, interval alpha = 0.849.
    m = np.array([[np.nan if v is None else v for v in row] for row in KRIPP.values()], float)
    scale = [1, 2, 3, 4, 5]
    assert agreement.krippendorff_alpha(m, scale, "nominal") == pytest.approx(0.743, abs=1e-3)
    assert agreement.krippendorff_alpha(m, scale, "ordinal") == pytest.approx(0.815, abs=1e-3)
    assert agreement.krippendorff_alpha(m, scale, "interval") == pytest.approx(0.849, abs=1e-3)
    # Through the agreement table: unit 12 (one value) is not pairable, so 11 items.
    table = agreement.agreement_table(matrix_ratings(KRIPP), scale=scale, n_resamples=300)
    row = table.iloc[0]
    assert row["alpha_ordinal"] == pytest.approx(0.815, abs=1e-3)
    assert row["n_items"] == 11 and row["n_raters"] == 4
    assert row["alpha_ci_low"] <= row["alpha_ordinal"] <= row["alpha_ci_high"]


def test_cohen_kappa_worked_example():
    # Reference: the worked example of Wikipedia's "Cohen's kappa" article (section "Simple
    # example"): 50 grant proposals, both readers yes 20, both no 15, A yes/B no 5, A no/B yes 10;
    # p_o = 0.70, p_e = 0.50, kappa = 0.40.
    pairs = [(1, 1)] * 20 + [(2, 2)] * 15 + [(1, 2)] * 5 + [(2, 1)] * 10
    y1, y2 = [a for a, _ in pairs], [b for _, b in pairs]
    assert agreement.cohen_kappa(y1, y2, [1, 2]) == pytest.approx(0.40, abs=1e-9)
    df = matrix_ratings({"A": y1, "B": y2})
    t = agreement.kappa_table(df)
    assert list(t.columns) == EXPECTED_COLUMNS["kappa"]
    assert t.iloc[0]["kappa"] == pytest.approx(0.40, abs=1e-9)
    assert t.iloc[0]["n"] == 50


def test_quadratic_kappa_matches_statsmodels():
    # An independent implementation: statsmodels' cohens_kappa(table, wt="quadratic").
    from statsmodels.stats.inter_rater import cohens_kappa

    rng = np.random.default_rng(3)
    a = rng.integers(1, 6, 80)
    b = np.clip(a + rng.integers(-1, 2, 80), 1, 5)
    table = np.zeros((5, 5))
    for x, y in zip(a, b):
        table[x - 1, y - 1] += 1
    ref = cohens_kappa(table, wt="quadratic").kappa
    assert agreement.cohen_kappa(a, b, range(1, 6), "quadratic") == pytest.approx(ref, abs=1e-9)


# --------------------------------------------------------------------------- mixed model and friends


# lme4's Penicillin data (24 plates x 6 samples, fully crossed), as in the Rdatasets copy
# csv/lme4/Penicillin.csv: diameters plate a..x, samples A..F within each plate.
PENICILLIN = (
    "27 23 26 23 23 21 27 23 26 23 23 21 25 21 25 24 24 20 26 23 25 23 23 20 25 22 26 22 23 20 24 22 25 23 22 19 "
    "24 20 23 21 22 19 26 22 26 24 24 21 24 21 24 22 22 20 24 21 24 23 22 19 26 23 26 24 24 21 25 22 26 24 24 20 "
    "26 24 26 24 25 22 26 23 26 23 23 20 26 23 25 24 24 22 25 22 25 23 23 20 25 21 24 23 23 20 25 22 24 23 23 19 "
    "24 21 23 21 21 19 26 23 26 24 24 21 25 21 24 22 22 18 25 22 25 22 22 20 24 21 24 22 24 19 24 21 24 22 21 18"
)


def test_crossed_fit_matches_lme4_penicillin():
    # Reference: Bates, "lme4: Mixed-effects modeling with R" (2010), ch. 2, fm03 =
    # lmer(diameter ~ 1 + (1|plate) + (1|sample), Penicillin) (REML): variances plate 0.7169,
    # sample 3.7311, residual 0.3024; (Intercept) 22.9722, Std. Error 0.8086.
    v = [float(x) for x in PENICILLIN.split()]
    data = pd.DataFrame({"score": v, "rater_id": [chr(97 + i // 6) for i in range(144)],
                         "context": [chr(65 + i % 6) for i in range(144)]})
    result, caught = models.fit_crossed(data, "score ~ 1")
    vc = models._variance_components(result)
    assert vc["rater"] == pytest.approx(0.7169, abs=1e-3)
    assert vc["context"] == pytest.approx(3.7311, abs=1e-3)
    assert vc["residual"] == pytest.approx(0.3024, abs=1e-3)
    assert result.fe_params.iloc[0] == pytest.approx(22.9722, abs=1e-3)
    assert result.bse.iloc[0] == pytest.approx(0.8086, abs=1e-3)
    assert caught == []


def test_mixed_recovers_planted_effect_and_holm():
    df = synth_study(seed=1, effect=0.6, contexts=20)
    m = models.mixed_contrasts(df, "empathy")
    assert list(m.columns) == EXPECTED_COLUMNS["mixed"]
    terms = m.set_index("term")
    assert {"condition[discrete]", "condition[continuous]", "condition[dissonance]", "model[mB]"} == set(terms.index)
    d = terms.loc["condition[dissonance]"]
    # rounding to the 1-5 lattice shrinks the effect a little; it must be clearly there
    assert 0.35 < d["estimate"] < 0.8 and d["ci_low"] > 0 and d["p_holm"] < 1e-6
    for t in ("condition[discrete]", "condition[continuous]"):
        assert terms.loc[t, "ci_low"] < 0 < terms.loc[t, "ci_high"] or abs(terms.loc[t, "estimate"]) < 0.15
    # Holm: adjusted >= raw, the model term is not part of the family
    cond = terms[terms.index.str.startswith("condition[")]
    assert (cond["p_holm"] >= cond["p"] - 1e-12).all()
    assert math.isnan(terms.loc["model[mB]", "p_holm"])
    vc = m.attrs["variance_components"]
    assert vc["rater"] > 0.05 and vc["context"] > 0.1 and vc["residual"] > 0.1
    assert isinstance(m.attrs["warnings"], list)


def test_mixed_needs_raters_and_conditions():
    df = synth_study(raters=1, contexts=6)
    with pytest.raises(ValueError, match="at least 2 raters"):
        models.mixed_contrasts(df, "empathy")
    one_cond = synth_study(raters=3, contexts=6, conditions=("base",))
    with pytest.raises(ValueError, match="at least 2 conditions"):
        models.mixed_contrasts(one_cond, "empathy")
    with pytest.raises(ValueError, match="no ratings for criterion"):
        models.mixed_contrasts(one_cond, "clarity")


def test_anova_is_overconfident_against_the_mixed_model_on_context_effects():
    # A between-context comparison: each context is seen under one condition only, so context
    # difficulty is confounded with condition in the pooled ANOVA but not in the mixed model.
    rng = np.random.default_rng(7)
    rows = []
    for c in range(20):
        cond = "base" if c % 2 == 0 else "dissonance"
        diff = rng.normal(0, 1.0)
        for r in range(6):
            for rep in range(5):
                rows.append({"rater_id": f"r{r}", "target_index": c, "model": f"m{rep}", "condition": cond,
                             "score": float(np.clip(np.round(3 + diff + rng.normal(0, 0.5)), 1, 5))})
    df = ratings_frame(rows)
    naive = models.paper_tukey(df, "empathy").iloc[0]
    mixed = models.mixed_contrasts(df, "empathy", with_model=False).set_index("term").loc["condition[dissonance]"]
    assert naive["meandiff"] == pytest.approx(mixed["estimate"], abs=0.05)
    assert (mixed["ci_high"] - mixed["ci_low"]) > 2 * (naive["ci_high"] - naive["ci_low"])


def test_ordinal_check_has_note_and_sign():
    df = synth_study(seed=2, effect=0.8, contexts=20)
    o = models.ordinal_check(df, "empathy")
    assert list(o.columns) == EXPECTED_COLUMNS["mixed"]
    assert "ignores the clustering by rater" in o.attrs["note"]
    d = o.set_index("term").loc["condition[dissonance]"]
    assert d["estimate"] > 0.5 and d["ci_low"] > 0


def test_group_effect():
    df = synth_study(seed=4, raters=6, contexts=15)
    g = models.mixed_group_effect(df, "empathy")
    assert "group[student]" in set(g["term"])
    assert "descriptive" in g.attrs["note"] and "6 raters in 2 groups" in g.attrs["note"]
    groups = descriptive.groups_table(df)
    assert list(groups.columns) == EXPECTED_COLUMNS["groups"]
    psych = df[(df["rater_group"] == "psych")]["score"]
    assert groups.set_index("group").loc["psych", "mean"] == pytest.approx(psych.mean())


def test_means_and_cluster_bootstrap():
    df = synth_study(seed=5, contexts=25, context_sd=1.0)
    means = descriptive.means_table(df, n_resamples=500)
    assert list(means.columns) == EXPECTED_COLUMNS["means"]
    cell = df[(df["model"] == "mA") & (df["condition"] == "base")]["score"]
    row = means[(means["model"] == "mA") & (means["condition"] == "base")].iloc[0]
    assert row["n"] == len(cell) and row["mean"] == pytest.approx(cell.mean()) and row["sd"] == pytest.approx(cell.std())
    assert row["ci_low"] < row["mean"] < row["ci_high"]
    # Ratings of a context are correlated: the cluster CI is wider than the iid t-interval.
    iid = 2 * 1.96 * cell.std() / math.sqrt(len(cell))
    assert row["ci_high"] - row["ci_low"] > 1.5 * iid
    imp = descriptive.improvement_table(df, n_resamples=500)
    r = imp[(imp["model"] == "mA") & (imp["condition"] == "dissonance")].iloc[0]
    dis = df[(df["model"] == "mA") & (df["condition"] == "dissonance")]["score"].mean()
    assert r["diff"] == pytest.approx(dis - cell.mean())
    assert r["ci_low"] < r["diff"] < r["ci_high"] and r["n_contexts"] == 25


def test_judge_vs_experts_and_ceiling():
    df = synth_study(seed=6, raters=3, contexts=12, models_=("mA",))
    em = judge_vs_experts.expert_means(df)
    judge = em.copy()
    judge["value"] = judge["expert_mean"] + 0.5  # a lenient judge that orders perfectly
    judge["judge_model"] = "llamacpp:judge"
    jve = judge_vs_experts.judge_vs_experts(df, judge[["criterion", "judge_model", "response", "value"]], n_resamples=200)
    assert list(jve.columns) == EXPECTED_COLUMNS["judge_vs_experts"]
    j = jve[jve["judge_model"] == "llamacpp:judge"].iloc[0]
    assert j["pearson_r"] == pytest.approx(1.0) and j["mean_diff"] == pytest.approx(0.5)
    assert j["n_items"] == df["response"].nunique()
    ceiling = jve[jve["judge_model"].str.startswith("expert:")]
    assert set(ceiling["judge_model"]) == {"expert:r0", "expert:r1", "expert:r2"}
    # expert r0 against the mean of r1 and r2, by hand
    first = agreement.first_ratings(df).pivot(index="response", columns="rater_id", values="score")
    ref = np.corrcoef(first["r0"], first[["r1", "r2"]].mean(axis=1))[0, 1]
    assert ceiling.set_index("judge_model").loc["expert:r0", "pearson_r"] == pytest.approx(ref)
    assert (ceiling["r_ci_low"] <= ceiling["pearson_r"]).all()


# --------------------------------------------------------------------------- loading


def test_load_rejects_bad_tables(tmp_path):
    df = synth_study(contexts=3)
    bad = tmp_path / "ratings.csv"
    df.drop(columns=["rater_id", "condition"]).to_csv(bad, index=False)
    with pytest.raises(InputError, match=r"ratings.csv.*missing column\(s\) rater_id, condition"):
        load_ratings(ratings=bad)
    df2 = df[list(RATINGS_COLUMNS)].astype({"score": object})
    df2.loc[0, "score"] = "great"
    df2.to_csv(bad, index=False)
    with pytest.raises(InputError, match="score is not a number"):
        load_ratings(ratings=bad)
    df3 = df[list(RATINGS_COLUMNS)].copy()
    df3.loc[:4, "score"] = np.nan
    p = tmp_path / "r.parquet"
    df3.to_parquet(p)
    loaded = load_ratings(ratings=p)
    assert len(loaded) == len(df) - 5 and "5 rating row(s) without a score dropped" in loaded.attrs["notes"]
    xlsx = tmp_path / "x.xlsx"
    xlsx.write_text("")
    with pytest.raises(InputError, match="unknown table format"):
        load_ratings(ratings=xlsx)
    with pytest.raises(InputError, match="no such file"):
        load_ratings(ratings=tmp_path / "absent.csv")
    from emoguide.corpus import Corpus

    Corpus.open(tmp_path / "c", create=True)
    with pytest.raises(InputError, match="no rating study in this corpus.*--ratings"):
        load_ratings(tmp_path / "c")


def test_load_from_a_real_rating_study(tmp_path):
    """The corpus route: ratings.sqlite written by the rating app's store, read via `rate export`'s
    ratings_table (helpers shared with tests/test_rating_study.py)."""
    from test_rating_study import rate_all, small_store

    store = small_store(tmp_path)
    for rater in ("r01", "r02"):
        for pos in range(1, 7):
            if not (rater == "r02" and pos == 6):  # one item left unscored by r02
                rate_all(store, rater, pos, 1 + pos % 5)
    store.close()
    df = load_ratings(tmp_path)
    assert len(df) == (6 + 5) * 3 and "3 rating row(s) without a score dropped" in df.attrs["notes"]
    kappa = agreement.kappa_table(df)
    assert set(kappa["n"]) == {5} and (kappa["kappa"] == 1.0).all()  # both raters gave the same scores


def test_load_judgments_value_and_error_rows(tmp_path):
    from emoguide.evaluation.stats.load import load_judgments

    rows = []
    for k, (score, expected, status) in enumerate([(4, 3.6, "ok"), (2, None, "ok"), (None, None, "error"), (5, 4.9, "error")]):
        rows.append({c: None for c in JUDGMENTS_COLUMNS} | {"session_id": "s1", "target_index": k, "model": "m",
                    "condition": "base", "judge_model": "j", "criterion": "empathy", "score": score,
                    "score_expected": expected, "status": status})
    path = tmp_path / "judgments.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    j = load_judgments(judgments=path)
    assert list(j["value"]) == [3.6, 2.0]  # expected score where known, else the score
    assert "2 judgment row(s) with status other than ok left out" in j.attrs["notes"]
    with pytest.raises(InputError, match="missing column"):
        pd.DataFrame(rows).drop(columns=["judge_model"]).to_csv(path, index=False)
        load_judgments(judgments=path)


# --------------------------------------------------------------------------- end to end


def _ratings_for(corpus, raters=("r1", "r2", "r3"), seed=0) -> pd.DataFrame:
    """Synthetic expert ratings for the corpus's ok generations (stand-in for `stats simulate`)."""
    gens = pd.read_parquet(corpus.generations_path)
    gens = gens[(gens["status"] == "ok") & (gens["response"].fillna("") != "")]
    rng = np.random.default_rng(seed)
    rows = []
    for g in gens.itertuples():
        for k, rater in enumerate(raters):
            for crit in ("applicability", "empathy", "comprehensiveness"):
                score = np.clip(np.round(3 + 0.4 * (g.condition == "dissonance") + 0.3 * k - 0.3 + rng.normal(0, 0.8)), 1, 5)
                rows.append({"study_id": "e2e", "rater_id": rater, "rater_group": "psych" if k < 2 else "student",
                             "item_id": f"{g.session_id}-{g.target_index}-{g.model}-{g.condition}",
                             "session_id": g.session_id, "target_index": g.target_index, "model": g.model,
                             "condition": g.condition, "criterion": crit, "score": score, "comment": "",
                             "flagged": False, "seconds_on_item": 20.0, "watched_fraction": 1.0, "is_retest": False,
                             "n_edits": 0, "created_at": "2026-12-01T10:00:00+00:00",
                             "updated_at": "2026-12-01T10:00:00+00:00", "config_hash": "h"})
    return pd.DataFrame(rows, columns=list(RATINGS_COLUMNS))


def _judgments_for(ratings: pd.DataFrame, seed=1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    mean = ratings.groupby(["session_id", "target_index", "model", "condition", "criterion"])["score"].mean().reset_index()
    rows = []
    for r in mean.itertuples():
        e = float(np.clip(r.score + 0.3 + rng.normal(0, 0.5), 1, 5))
        p = np.exp(-((np.arange(1, 6) - e) ** 2))
        p = p / p.sum()
        rows.append({"session_id": r.session_id, "target_index": r.target_index, "model": r.model,
                     "condition": r.condition, "judge_model": "llamacpp:smollm2", "criterion": r.criterion,
                     "score": int(np.argmax(p) + 1), "score_expected": float((p * np.arange(1, 6)).sum()),
                     "probs": json.dumps({str(k + 1): float(v) for k, v in enumerate(p)}), "method": "logprobs",
                     "n_samples": None, "reason": "", "prompt_hash": "p", "steps_hash": "steps123",
                     "created_at": "2026-12-01T11:00:00+00:00"})
    return pd.DataFrame(rows, columns=list(JUDGMENTS_COLUMNS))


def _assert_outputs(out, expect_judge=True):
    for name, cols in EXPECTED_COLUMNS.items():
        table = pd.read_csv(out / f"{name}.csv")
        assert list(table.columns) == cols, name
    for stem in ("fig5_ratings", "fig6_kappa") + (("bland_altman",) if expect_judge else ()):
        for ext in (".png", ".pdf"):
            f = out / f"{stem}{ext}"
            assert f.exists() and f.stat().st_size > 1000, f
    assert (out / "report.md").exists() and (out / "report.html").exists()


@pytest.mark.slow  # ~100 s on a shared 2-core machine (matplotlib and 9 mixed-model fits, twice)
def test_end_to_end_run_and_cli(tmp_path):
    from eval_fixtures import eval_corpus
    from typer.testing import CliRunner

    from emoguide.cli import app
    from emoguide.evaluation.stats.run import run_stats

    corpus = eval_corpus(tmp_path, sessions=3, pairs=4)
    ratings = _ratings_for(corpus, raters=("r1", "r2", "<b>r3</b>"))
    rpath = tmp_path / "ratings.csv"
    ratings.to_csv(rpath, index=False)
    jpath = corpus.root / "judgments.parquet"
    _judgments_for(ratings).to_parquet(jpath, index=False)

    res = run_stats(corpus.root, ratings=rpath, n_resamples=300)
    out = corpus.root / "reports" / "stats"
    assert res.out_dir == out
    _assert_outputs(out)
    means = pd.read_csv(out / "means.csv")
    assert set(means["criterion"]) == {"applicability", "empathy", "comprehensiveness"}
    assert len(means) == 3 * 2 * 4  # criteria x models x conditions (broken/empty rows were never rated)
    anova = pd.read_csv(out / "anova.csv")
    assert (anova["df_between"] == 3).all() and (anova["n"] == len(ratings) // 3).all()
    jve = pd.read_csv(out / "judge_vs_experts.csv")
    assert "llamacpp:smollm2" in set(jve["judge_model"]) and jve["judge_model"].str.startswith("expert:").sum() == 9
    md = (out / "report.md").read_text()
    order = [md.index(h) for h in ("## 1.", "## 2.", "## 3.", "## 4.", "## 5.", "## 6.", "## 7.", "## 8.", "## 9.")]
    assert order == sorted(order)
    assert "F(3, " in md and "Holm" in md and "judge llamacpp:smollm2: scoring method logprobs (" in md
    assert "steps123" in md and "table1.csv" in md
    html = (out / "report.html").read_text()
    assert "&lt;b&gt;r3&lt;/b&gt;" in html and "<b>r3</b>" not in html  # autoescaped
    assert 'src="fig5_ratings.png"' in html

    # The CLI writes the same files elsewhere.
    cli_out = tmp_path / "cli_out"
    result = CliRunner().invoke(app, ["stats", "--corpus", str(corpus.root), "--ratings", str(rpath),
                                      "--out", str(cli_out), "--resamples", "200"])
    assert result.exit_code == 0, result.output
    _assert_outputs(cli_out)
    bad = CliRunner().invoke(app, ["stats", "--ratings", str(rpath)])
    assert bad.exit_code == 2 and "--out" in bad.output


@pytest.mark.slow
def test_partial_data_skips_and_says_so(tmp_path):
    from emoguide.evaluation.stats.run import run_stats

    one = synth_study(raters=1, contexts=5, models_=("mA",))
    rpath = tmp_path / "one.csv"
    one[list(RATINGS_COLUMNS)].to_csv(rpath, index=False)
    res = run_stats(None, ratings=rpath, out_dir=tmp_path / "out", n_resamples=200)
    out = tmp_path / "out"
    for name, cols in EXPECTED_COLUMNS.items():
        assert list(pd.read_csv(out / f"{name}.csv").columns) == cols
    assert pd.read_csv(out / "mixed.csv").empty and pd.read_csv(out / "kappa.csv").empty
    assert len(pd.read_csv(out / "anova.csv")) == 1  # the paper's ANOVA still runs
    skipped = "\n".join(res.skipped)
    assert "at least 2 raters" in skipped and "no judgments" in skipped and "no corpus given" in skipped
    md = (out / "report.md").read_text()
    assert "at least 2 raters" in md and "no judgments" in md
    assert (out / "fig5_ratings.png").exists() and not (out / "fig6_kappa.png").exists()


@pytest.mark.slow
def test_cli_on_simulated_study_with_partial_overlap(tmp_path):
    """`stats simulate` (the other half of `emoguide stats`) -> `stats`: 3 raters, 2 per context,
    so no complete block holds every rater and every rater pair shares only some responses."""
    pytest.importorskip("emoguide.evaluation.stats.simulate")
    from eval_fixtures import eval_corpus
    from typer.testing import CliRunner

    from emoguide.cli import app

    corpus = eval_corpus(tmp_path, sessions=3, pairs=5)
    rpath, jpath, out = tmp_path / "sim.csv", tmp_path / "judge.parquet", tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(app, ["stats", "simulate", "--corpus", str(corpus.root), "--out", str(rpath),
                              "--judgments-out", str(jpath), "--raters", "3", "--raters-per-context", "2",
                              "--effect", "empathy:dissonance=0.6", "--seed", "3"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["stats", "--corpus", str(corpus.root), "--ratings", str(rpath), "--judgments", str(jpath),
                              "--out", str(out), "--resamples", "200"])
    assert res.exit_code == 0, res.output
    _assert_outputs(out)
    agr = pd.read_csv(out / "agreement.csv")
    assert (agr["n_raters"] == 3).all() and agr["alpha_ordinal"].notna().all()
    assert agr["icc2_1"].notna().all()  # on a 2-rater block
    md = (out / "report.md").read_text()
    assert "x 2 raters (of 3 raters)" in md
    kappa = pd.read_csv(out / "kappa.csv")
    assert len(kappa) == 3 * 3 and (kappa["n"] < pd.read_csv(rpath)["session_id"].size).all()
