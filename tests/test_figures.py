import atexit
import os
import shutil
import tempfile

if "MPLCONFIGDIR" not in os.environ:  # before matplotlib is imported: keep its cache out of $HOME
    _mpl_dir = tempfile.mkdtemp(prefix="emoguide-mpl-")
    os.environ["MPLCONFIGDIR"] = _mpl_dir
    atexit.register(shutil.rmtree, _mpl_dir, True)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from emoguide.dissonance import compute_dissonance  # noqa: E402
from emoguide.dissonance_variants import dissonance_table  # noqa: E402
from emoguide.evaluation.figures import abs_difference_plot, dissonance_timeline, sentiment_by_role  # noqa: E402

from helpers import utterances  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def session_table(session_id="s1"):
    rows = []
    vals = [  # (voice_v, face_v, voice_a, face_a)
        (0.1, 0.0, 0.2, 0.1),  # p: 0.1 -> no
        (0.6, -0.2, 0.3, 0.2),  # p: 0.8 -> dissonant
        (0.0, None, 0.5, None),  # p: face missing -> null
        (0.2, 0.1, -0.4, 0.5),  # p: arousal 0.9 -> dissonant
        (0.3, 0.2, 0.1, 0.0),  # p: no
        (None, None, None, None),  # p: nothing
    ]
    for i, (vv, fv, va, fa) in enumerate(vals):
        rows.append({"role": "therapist", "text": "How was your week?", "voice_valence": 0.4, "face_valence": None,
                     "voice_arousal": 0.1, "face_arousal": None})
        rows.append({"role": "patient", "text": "Fine I guess", "voice_valence": vv, "face_valence": fv,
                     "voice_arousal": va, "face_arousal": fa})
    df = utterances(rows, session_id)
    df["face_source"] = "fer:mini-xception(circumplex-approx)"
    df["voice_source"] = "audeering"
    return compute_dissonance(df)


def test_timeline_png_shades_dissonant_patient_utterances(tmp_path):
    df = session_table()
    assert int(df["dissonance"].sum()) == 2
    res = dissonance_timeline(df, tmp_path / "timeline.png")
    assert res.path.exists() and res.path.read_bytes()[:8] == PNG_MAGIC
    assert res.shaded == 2
    assert len(res.axes) == 2
    for ax in res.axes:
        assert len(ax.patches) == 2  # one span per dissonant utterance, on valence and on arousal
    labels = [t.get_text() for t in res.figure.legends[0].get_texts()]
    assert "face (approx)" in labels and "voice" in labels
    assert any("eq1-raw:voice-face:T=0.5" in lab for lab in labels)
    # missing values are gaps (NaN in the line data), never zeros
    face_line = [ln for ln in res.axes[0].get_lines() if ln.get_label() == "face (approx)"][0]
    y = np.asarray(face_line.get_ydata(), dtype=float)
    assert len(y) == 6 and np.isnan(y).sum() == 2  # patient rows only; two have no face valence
    both = dissonance_timeline(df, tmp_path / "both.png", plot_roles=("patient", "therapist"))
    assert len([ln for ln in both.axes[0].get_lines() if ln.get_label().startswith("face")]) == 2
    assert len(both.axes[0].patches) == 2
    assert res.stats["n_flagged"] == 2


def test_timeline_pdf_steps_other_flag_column_and_session_choice(tmp_path):
    both = pd.concat([session_table("a"), session_table("b")], ignore_index=True)
    with pytest.raises(ValueError):
        dissonance_timeline(both, tmp_path / "x.png")
    tab = dissonance_table(both, ["raw:voice-face:T=0.05"])
    res = dissonance_timeline(tab, tmp_path / "t.pdf", session_id="b", flag_column="diss_raw_T0.05_voice_face",
                              style="steps")
    assert res.path.read_bytes()[:5] == b"%PDF-"
    assert res.shaded == 4 and all(len(ax.patches) == 4 for ax in res.axes)
    with pytest.raises(ValueError):
        dissonance_timeline(tab, tmp_path / "t.jpg", session_id="b")


def test_sentiment_by_role(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"role": r, "text": "x"} for r in ["therapist", "patient"] * 30]
    df = utterances(rows)
    df["text_sentiment"] = np.where(df["role"] == "therapist", rng.uniform(0, 0.8, 60), rng.uniform(-0.8, 0.2, 60))
    df.loc[3, "text_sentiment"] = np.nan
    res = sentiment_by_role(df, tmp_path / "sent.png")
    assert res.path.stat().st_size > 1000
    st = res.stats
    assert st.loc["therapist", "mean"] > 0 > st.loc["patient", "mean"]
    assert st.loc["therapist", "n"] == 30 and st.loc["patient", "n"] == 29
    assert st.loc["patient", ["share_positive", "share_neutral", "share_negative"]].sum() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        sentiment_by_role(utterances(rows), tmp_path / "none.png")


def test_abs_difference_plot(tmp_path):
    df = session_table()
    res = abs_difference_plot(df, tmp_path / "absdiff.png", 0.5)
    assert res.path.stat().st_size > 1000
    assert res.stats["n_points"] == 4  # patient rows with both dimensions on both channels
    assert res.stats["n_above"] == 2
    assert res.stats["n_one_dim"] == 0
    ax = res.axes[0]
    xs = [ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert 0.5 in xs  # the threshold line
