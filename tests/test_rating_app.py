"""The rating web app over a real study (built by `emoguide rate init`), through FastAPI's TestClient.

Fast: one study is built per module and copied per test. What is checked: sessions and cookies,
CSRF on every POST, the failed-login slowdown, admin separation, blinding of every page and
reply, autosave acknowledged only after the store committed, the edit log, the viewing log,
clip range requests and path traversal, and XSS payloads rendering inert.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import time
from html.parser import HTMLParser
from pathlib import Path

import markupsafe
import pytest

pytest.importorskip("fastapi", reason="the rating extra (fastapi) is not installed")
pytest.importorskip("httpx", reason="httpx (FastAPI's TestClient) is not installed")

from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from emoguide.cli import app as cli_app  # noqa: E402
from emoguide.evaluation.rating import app as app_module  # noqa: E402
from emoguide.evaluation.rating.app import create_app  # noqa: E402
from emoguide.evaluation.rating.store import RatingStore  # noqa: E402
from eval_fixtures import CONDITIONS, MODELS, eval_corpus  # noqa: E402

BLINDED = re.compile(
    r"(?<![\w-])(" + "|".join(re.escape(x) for x in (*CONDITIONS, *MODELS, "llamacpp", "openai")) + r")(?![\w-])",
    re.IGNORECASE,
)
ANSWERS = {"degree": "phd", "years_experience": "12", "orientation": "cbt", "cbt_training": "yes",
           "nonverbal_cues": "often"}


def cli(*args: str) -> str:
    result = CliRunner().invoke(cli_app, list(args))
    assert result.exit_code == 0, f"emoguide {' '.join(args)} failed:\n{result.output}"
    return result.stdout


def build_study(tmp: Path, raters: int = 2, toml: str = "", **corpus_kw) -> tuple[Path, dict[str, str], str]:
    corpus = eval_corpus(tmp, **corpus_kw)
    root = Path(corpus.root)
    config = tmp / "study.toml"
    config.write_text(toml or "[assignment]\nretest_fraction = 0.0\n")
    cli("rate", "init", "--corpus", str(root), "--raters", str(raters), "--config", str(config))
    tokens = {}
    for line in cli("rate", "invite", "--corpus", str(root)).splitlines():
        if "\t" in line:
            rater, url = line.split("\t")
            tokens[rater] = url.rsplit("/r/", 1)[1]
    admin_line = [x for x in cli("rate", "invite", "--corpus", str(root), "--admin").splitlines() if "\t" in x][0]
    admin = admin_line.split("\t")[1].rsplit("/admin/login/", 1)[1]
    return root, tokens, admin


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return build_study(tmp_path_factory.mktemp("rating_app"))


@pytest.fixture
def study(template, tmp_path):
    """A private copy of the module's study (ratings, sessions and failure counts start empty)."""
    root, tokens, admin = template
    copy = tmp_path / "corpus"
    shutil.copytree(root, copy)
    return copy, tokens, admin


def client_for(app, token: str | None = None, background: bool = True) -> TestClient:
    c = TestClient(app)
    if token is not None:
        r = c.get(f"/r/{token}")
        assert r.status_code == 200, r.text
        if background:
            r = c.post("/questionnaire", data={**ANSWERS, "csrf_token": csrf_of(c)}, follow_redirects=False)
            assert r.status_code == 303, r.text
    return c


def csrf_of(c: TestClient) -> str:
    page = c.get("/questionnaire")
    m = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
    assert m, page.text[:500]
    return m.group(1)


def positions(root: Path, rater: str) -> list[int]:
    store = RatingStore.open(root)
    try:
        return [a.position for a in store.assignments(rater)]
    finally:
        store.close()


def score(c: TestClient, csrf: str, position: int, criterion: str, value):
    return c.post("/api/score", data={"position": position, "criterion": criterion, "score": str(value)},
                  headers={"X-CSRF-Token": csrf, "HX-Request": "true"})


# ---------------------------------------------------------------------- access


def test_invite_link_sets_a_strict_httponly_cookie_and_hides_the_token(study):
    root, tokens, _ = study
    app = create_app(root)
    c = TestClient(app)
    r = c.get(f"/r/{tokens['r01']}")
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    assert tokens["r01"] not in r.text
    assert '<meta http-equiv="refresh" content="0; url=/">' in r.text
    raw = cookie.split(";", 1)[0].split("=", 1)[1]
    # the session id is stored hashed only
    rows = sqlite3.connect(root / "ratings.sqlite").execute("SELECT * FROM web_sessions").fetchall()
    assert len(rows) == 1 and raw not in repr(rows)
    # first visit: the questionnaire comes before any item
    first = c.get("/", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/questionnaire"
    pos = positions(root, "r01")[0]
    assert c.get(f"/item/{pos}", follow_redirects=False).headers["location"] == "/questionnaire"
    csrf = csrf_of(c)
    assert score(c, csrf, pos, "empathy", 4).status_code == 403  # no rating before the questionnaire
    for page in ("/questionnaire", f"/item/{pos}", "/review", "/"):
        assert tokens["r01"] not in c.get(page).text


def test_security_headers_on_every_page(study):
    root, tokens, _ = study
    c = client_for(create_app(root), tokens["r01"])
    pos = positions(root, "r01")[0]
    for path in ("/", f"/item/{pos}", "/review", "/questionnaire", "/nowhere", "/static/app.js"):
        r = c.get(path)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        if not path.startswith("/static/"):
            assert r.headers["cache-control"] == "no-store"
            assert "Research use only" in r.text  # the banner, error pages included
    page = c.get(f"/item/{pos}").text
    # nothing from the internet, no inline script or handler
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert re.findall(r"<script\b[^>]*>", page) == [
        '<script src="/static/vendor/htmx.min.js" defer>', '<script src="/static/app.js" defer>']
    assert not re.search(r"\son[a-z]+=", page)


def test_wrong_tokens_get_403_and_repeated_failures_are_slowed(study):
    root, tokens, admin = study
    app = create_app(root, login_delay_s=0.1, login_delay_max_s=5.0)
    c = TestClient(app)
    times = []
    for guess in ("x", "AAAA" * 11, tokens["r01"][:-1] + "A", admin, "secrets.token_urlsafe"):
        t0 = time.perf_counter()
        r = c.get(f"/r/{guess}")
        times.append(time.perf_counter() - t0)
        assert r.status_code == 403
        assert "set-cookie" not in r.headers
    # delays 0, 0.1, 0.2, 0.4, 0.8 s: the fifth answer is held at least 0.8 s
    assert times[4] >= 0.8 and times[4] > times[0] + 0.5, times
    assert app.state.throttle.failures("testclient") == 5
    # persisted in the study file: a restarted server keeps slowing this client
    assert create_app(root, login_delay_s=0.1).state.throttle.delay_for("testclient") == pytest.approx(1.6)
    # the right token still works (after the delay) and resets the count
    assert c.get(f"/r/{tokens['r01']}").status_code == 200
    assert app.state.throttle.failures("testclient") == 0


def test_admin_pages_refuse_raters_and_rater_tokens(study):
    root, tokens, admin = study
    app = create_app(root, login_delay_s=0.0)
    rater = client_for(app, tokens["r01"])
    assert rater.get("/admin").status_code == 403
    assert TestClient(app).get(f"/admin/login/{tokens['r01']}").status_code == 403  # a rater token is no admin token
    assert TestClient(app).get(f"/r/{admin}").status_code == 403  # and the admin token is no rater token
    assert TestClient(app).get("/admin").status_code == 403
    boss = TestClient(app)
    r = boss.get(f"/admin/login/{admin}")
    assert r.status_code == 200 and admin not in r.text
    board = boss.get("/admin")
    assert board.status_code == 200
    assert 'id="raters"' in board.text and ">r01<" in board.text and ">r02<" in board.text
    assert "Alpha (ordinal)" in board.text
    assert boss.get("/", follow_redirects=False).status_code == 403  # the admin does not rate
    assert not BLINDED.search(board.text)


def test_post_without_or_with_a_wrong_csrf_token_is_refused(study):
    root, tokens, _ = study
    c = client_for(create_app(root), tokens["r01"])
    csrf = csrf_of(c)
    pos = positions(root, "r01")[0]
    body = {"position": pos, "criterion": "empathy", "score": "4"}
    assert c.post("/api/score", data=body).status_code == 403
    assert c.post("/api/score", data=body, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert c.post("/api/score", data={**body, "csrf_token": "wrong"}).status_code == 403
    assert c.post("/api/note", data={"position": pos, "comment": "x"}).status_code == 403
    assert c.post("/api/view", json={"position": pos, "seconds": 1}).status_code == 403
    assert c.post("/questionnaire", data=ANSWERS).status_code == 403
    assert c.post("/logout").status_code == 403
    store = RatingStore.open(root)
    assert store.rating_state("r01", pos).scores == {} and store.rating_state("r01", pos).comment == ""
    assert c.post("/api/score", data={**body, "csrf_token": csrf}).status_code == 200  # form field
    assert c.post("/api/score", data={**body, "score": "5"}, headers={"X-CSRF-Token": csrf}).status_code == 200
    assert store.rating_state("r01", pos).scores == {"empathy": 5}
    # another session's token does not work either
    other = client_for(create_app(root), tokens["r02"])
    assert c.post("/api/score", data=body, headers={"X-CSRF-Token": csrf_of(other)}).status_code == 403


def test_questionnaire_validates_and_stores_the_background(study):
    root, tokens, _ = study
    c = client_for(create_app(root), tokens["r01"], background=False)
    csrf = csrf_of(c)
    page = c.get("/questionnaire").text
    for name in ANSWERS:
        assert f'name="{name}"' in page
    bad = c.post("/questionnaire", data={**ANSWERS, "years_experience": "200", "csrf_token": csrf})
    assert bad.status_code == 400 and "years_experience" in bad.text
    assert RatingStore.open(root).background("r01") is None
    ok = c.post("/questionnaire", data={**ANSWERS, "csrf_token": csrf}, follow_redirects=False)
    assert ok.status_code == 303
    assert RatingStore.open(root).background("r01") == {**ANSWERS, "years_experience": 12}
    assert c.get("/", follow_redirects=False).headers["location"] == f"/item/{positions(root, 'r01')[0]}"


# ---------------------------------------------------------------------- rating


def test_autosave_is_acknowledged_from_the_store_and_edits_are_logged(study):
    root, tokens, _ = study
    c = client_for(create_app(root), tokens["r01"])
    csrf = csrf_of(c)
    pos = positions(root, "r01")
    page = c.get(f"/item/{pos[0]}").text
    assert f"Item 1 of {len(pos)}" in page and f"0 of {len(pos)} rated" in page
    for crit in ("applicability", "empathy", "comprehensiveness"):
        assert f'id="crit-{crit}"' in page
    r = score(c, csrf, pos[0], "empathy", 4)
    assert r.status_code == 200
    assert 'id="ack-empathy"' in r.text and 'data-score="4"' in r.text and 'hx-swap-oob="true"' in r.text
    assert "Saved: Empathy" in r.text
    store = RatingStore.open(root)
    assert store.rating_state("r01", pos[0]).scores == {"empathy": 4}  # committed before the reply
    score(c, csrf, pos[0], "applicability", 3)
    r = score(c, csrf, pos[0], "comprehensiveness", 5)
    assert f"1 of {len(pos)} rated" in r.text  # progress comes back with the ack
    assert score(c, csrf, pos[0], "empathy", 2).status_code == 200
    assert score(c, csrf, pos[0], "empathy", 9).status_code == 400  # off the scale
    assert score(c, csrf, pos[0], "nosuch", 3).status_code == 400
    assert store.rating_state("r01", pos[0]).scores == {"empathy": 2, "applicability": 3, "comprehensiveness": 5}
    # the page shows the stored scores; / resumes at the next unrated item
    page = c.get(f"/item/{pos[0]}").text
    assert re.search(r'class="score selected"[^>]*data-score="2"', page)
    assert c.get("/", follow_redirects=False).headers["location"] == f"/item/{pos[1]}"
    # note and flags
    r = c.post("/api/note", data={"position": pos[0], "comment": "too long", "flags": ["harmful", "not_a_reply"]},
               headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and "flagged harmful, not-a-reply" in r.text
    assert c.post("/api/note", data={"position": pos[0], "comment": "x", "flags": ["nope"]},
                  headers={"X-CSRF-Token": csrf}).status_code == 400
    c.post("/api/note", data={"position": pos[0], "comment": "fine after all", "flags": []}, headers={"X-CSRF-Token": csrf})
    state = store.rating_state("r01", pos[0])
    assert state.comment == "fine after all" and state.flags == []
    # review: scores and every edit
    review = c.get("/review").text
    assert "Edit log" in review and "fine after all" in review
    edits = store.edits("r01")
    assert [(e["field"], e["old"], e["new"]) for e in edits] == [
        ("empathy", "4", "2"), ("comment", "too long", "fine after all"),
        ("flags", '["harmful", "not_a_reply"]', "[]")]
    assert re.search(r"<td>empathy</td><td>4</td><td>2</td>", review)


def test_a_rater_cannot_see_or_change_another_raters_ratings(study):
    root, tokens, _ = study
    app = create_app(root)
    a, b = client_for(app, tokens["r01"]), client_for(app, tokens["r02"])
    csrf_a, csrf_b = csrf_of(a), csrf_of(b)
    pa = positions(root, "r01")
    score(a, csrf_a, pa[0], "empathy", 5)
    a.post("/api/note", data={"position": pa[0], "comment": "SECRET-A-COMMENT"}, headers={"X-CSRF-Token": csrf_a})
    # b's pages never show a's work
    for p in positions(root, "r02"):
        text = b.get(f"/item/{p}").text
        assert "SECRET-A-COMMENT" not in text and "selected" not in text
    assert "SECRET-A-COMMENT" not in b.get("/review").text
    # b posting "a's position" changes b's own rating only (the rater comes from the session)
    score(b, csrf_b, pa[0], "empathy", 1)
    store = RatingStore.open(root)
    assert store.rating_state("r01", pa[0]).scores == {"empathy": 5}
    assert store.rating_state("r02", pa[0]).scores == {"empathy": 1}
    # positions outside b's list are refused
    beyond = max(positions(root, "r02")) + 1
    assert b.get(f"/item/{beyond}").status_code == 404
    assert score(b, csrf_b, beyond, "empathy", 3).status_code == 403
    assert b.post("/api/view", json={"position": beyond, "seconds": 3}, headers={"X-CSRF-Token": csrf_b}).status_code == 403
    # a form field cannot name another rater
    b.post("/api/score", data={"position": pa[0], "criterion": "empathy", "score": "2", "rater_id": "r01"},
           headers={"X-CSRF-Token": csrf_b})
    assert store.rating_state("r01", pa[0]).scores == {"empathy": 5}
    # no session, no pages
    anon = TestClient(app)
    assert anon.get(f"/item/{pa[0]}").status_code == 401
    assert anon.get("/review").status_code == 401


def test_viewing_log_accumulates(study):
    root, tokens, _ = study
    c = client_for(create_app(root), tokens["r01"])
    csrf = csrf_of(c)
    pos = positions(root, "r01")[0]
    h = {"X-CSRF-Token": csrf}
    assert c.post("/api/view", json={"position": pos, "seconds": 4.5, "watched_fraction": 0.5, "seeks": 2, "plays": 1},
                  headers=h).status_code == 204
    assert c.post("/api/view", json={"position": pos, "seconds": 1.5, "watched_fraction": 0.25, "seeks": 1, "plays": 0},
                  headers=h).status_code == 204
    assert RatingStore.open(root).view("r01", pos) == {"seconds": 6.0, "watched_fraction": 0.5, "seeks": 3, "plays": 1}
    for bad in ({"position": pos, "seconds": -1}, {"position": pos, "seconds": 1, "watched_fraction": 1.5},
                {"position": pos, "seconds": "NaN"}, {"position": "x"}, [1, 2]):
        assert c.post("/api/view", json=bad, headers=h).status_code == 400, bad


def test_every_page_and_reply_is_blinded(study):
    root, tokens, admin = study
    app = create_app(root)
    c = client_for(app, tokens["r01"])
    csrf = csrf_of(c)
    seen = []
    pos = positions(root, "r01")
    for p in pos:
        seen.append(c.get(f"/item/{p}"))
        seen.append(score(c, csrf, p, "empathy", 3))
        seen.append(c.post("/api/note", data={"position": p, "comment": "ok"}, headers={"X-CSRF-Token": csrf}))
    seen += [c.get("/review"), c.get("/questionnaire"), c.get("/"), c.get("/static/app.js"), c.get("/static/app.css")]
    clips = set()
    for r in seen:
        clips.update(re.findall(r'src="/clip/([^"]+)"', r.text))
    for name in clips:
        seen.append(c.get(f"/clip/{name}"))
    assert clips, "the study should have a video clip"
    for r in seen:
        blob = r.content.decode("latin-1") + "\n" + "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        found = BLINDED.search(blob)
        assert not found, f"{r.request.url}: {found.group(0)!r} reached the browser"
        assert "/clip/" not in str(r.request.url) or not BLINDED.search(str(r.request.url))


def test_clip_range_requests_and_traversal(study):
    root, tokens, _ = study
    app = create_app(root)
    c = client_for(app, tokens["r01"])
    pages = [c.get(f"/item/{p}").text for p in positions(root, "r01")]
    name = next(m.group(1) for t in pages for m in [re.search(r'<video[^>]+src="/clip/([^"]+)"', t)] if m)
    full = c.get(f"/clip/{name}")
    assert full.status_code == 200 and full.headers["accept-ranges"] == "bytes"
    assert full.headers["content-type"] == "video/mp4"
    size = len(full.content)
    assert size > 1000
    part = c.get(f"/clip/{name}", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-199/{size}"
    assert part.content == full.content[100:200]
    tail = c.get(f"/clip/{name}", headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == full.content[-50:]
    assert c.get(f"/clip/{name}", headers={"Range": f"bytes={size + 10}-{size + 20}"}).status_code == 416
    # only names the store knows resolve
    (root / "secret.txt").write_text("nope")
    for bad in ("nosuch.mp4", "..%2F..%2Fratings.sqlite", "%2e%2e%2fratings.sqlite", "%2e%2e%2f%2e%2e%2fsecret.txt",
                "..%5c..%5cratings.sqlite", "%2Fetc%2Fpasswd", name + "%00", name + "%2F..%2F..%2Fratings.sqlite", "%2F" + name):
        r = c.get(f"/clip/{bad}")
        assert r.status_code == 404, (bad, r.status_code)
        assert b"SQLite" not in r.content and b"nope" not in r.content
    for raw in ("/clip/../ratings.sqlite", "/clip/../../secret.txt", "/clip//etc/passwd", "/clip/" + str(root / "secret.txt")):
        r = c.get(raw)
        assert r.status_code in (404, 405), (raw, r.status_code)
        assert b"SQLite" not in r.content and b"nope" not in r.content and b"root:" not in r.content
    assert TestClient(app).get(f"/clip/{name}").status_code == 401  # no session, no clip


def test_a_new_invite_ends_the_sessions_of_the_old_link(study):
    root, tokens, admin = study
    app = create_app(root)
    a, b = client_for(app, tokens["r01"]), client_for(app, tokens["r02"])
    boss = TestClient(app)
    assert boss.get(f"/admin/login/{admin}").status_code == 200
    cli("rate", "invite", "--corpus", str(root), "--rater", "r01")  # r01's link leaked: re-invite
    assert a.get("/review").status_code == 401
    assert a.get(f"/r/{tokens['r01']}").status_code == 403  # the old link is dead too
    assert b.get("/review").status_code == 200  # other raters are not affected
    assert boss.get("/admin").status_code == 200
    cli("rate", "invite", "--corpus", str(root), "--admin")
    assert boss.get("/admin").status_code == 403


def test_audio_only_sessions_get_an_audio_player_and_transcripts_none(tmp_path):
    from eval_fixtures import DEMO_VIDEO

    corpus = eval_corpus(tmp_path / "c", sessions=2, media=None, risk_session=None)
    corpus.session("s2").write_source({"kind": "media", "session_id": "s2", "path": str(DEMO_VIDEO),
                                       "file_name": DEMO_VIDEO.name,
                                       "probe": {"duration_s": 32.0, "video": None, "audio": {"codec": "aac"}}})
    root = Path(corpus.root)
    (tmp_path / "study.toml").write_text("[assignment]\nretest_fraction = 0.0\n")
    cli("rate", "init", "--corpus", str(root), "--raters", "1", "--config", str(tmp_path / "study.toml"))
    token = cli("rate", "invite", "--corpus", str(root)).strip().splitlines()[-1].split("\t")[1].rsplit("/r/", 1)[1]
    c = client_for(create_app(root), token)
    pages = [c.get(f"/item/{p}").text for p in positions(root, "r01")]
    audio = [p for p in pages if '<audio id="media"' in p]
    plain = [p for p in pages if 'id="media"' not in p]
    assert audio and plain and not any("<video" in p for p in pages)
    assert all("Safety flag" not in p for p in pages)  # no risk in this corpus: no notice
    name = re.search(r'<audio id="media"[^>]+src="/clip/([^"]+)"', audio[0]).group(1)
    assert name.endswith(".m4a")
    r = c.get(f"/clip/{name}", headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and r.headers["content-type"] == "audio/mp4" and len(r.content) == 100


def test_logout_ends_the_session(study):
    root, tokens, _ = study
    c = client_for(create_app(root), tokens["r01"])
    csrf = csrf_of(c)
    assert c.post("/logout", data={"csrf_token": csrf}).status_code == 200
    assert c.get("/review").status_code == 401


# ---------------------------------------------------------------------- untrusted text

PAYLOADS = [
    '<script>alert("xss")</script>',
    "<img src=x onerror=alert(1)>",
    "[click me](javascript:alert(1))",
    '<a href="javascript:alert(2)">link</a>',
    "**bold** <b onmouseover=alert(3)>html in markdown</b>",
    '"><svg onload=alert(4)>',
    "</textarea><script>alert(5)</script>",
    "{{ 7*7 }} {% raw %}",
]


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _inert(page: str) -> None:
    p = _Tags()
    p.feed(page)
    for tag, attrs in p.tags:
        assert tag not in ("img", "svg", "iframe", "object", "embed"), (tag, attrs)
        if tag == "script":
            assert attrs.get("src") in ("/static/vendor/htmx.min.js", "/static/app.js"), attrs
        for k, v in attrs.items():
            assert not k.startswith("on"), (tag, k, v)
            assert not (v or "").strip().lower().startswith("javascript:"), (tag, k, v)


def test_xss_payloads_in_technique_response_context_and_comments_render_inert(tmp_path):
    text = {
        ("s1", 3, MODELS[0], CONDITIONS[0]): {"technique": PAYLOADS[0] + " " + PAYLOADS[2], "response": PAYLOADS[1] + PAYLOADS[4]},
        ("s1", 3, MODELS[0], CONDITIONS[1]): {"technique": PAYLOADS[3], "response": PAYLOADS[5] + PAYLOADS[6]},
        ("s1", 5, MODELS[1], CONDITIONS[2]): {"technique": PAYLOADS[7], "response": "\n".join(PAYLOADS)},
    }
    corpus = eval_corpus(tmp_path / "c", sessions=1, media=None, text=text)
    sess = corpus.session("s1")
    utts = sess.read_utterances()
    utts.loc[utts["index"] == 2, "text"] = PAYLOADS[1] + " " + PAYLOADS[0]
    utts.loc[utts["index"] == 3, "text"] = PAYLOADS[3] + " " + PAYLOADS[2] + " " + PAYLOADS[6]
    sess.write_utterances(utts)
    root = Path(corpus.root)
    (tmp_path / "study.toml").write_text("[assignment]\nretest_fraction = 0.0\n")
    cli("rate", "init", "--corpus", str(root), "--raters", "1", "--config", str(tmp_path / "study.toml"))
    token = cli("rate", "invite", "--corpus", str(root)).strip().splitlines()[-1].split("\t")[1].rsplit("/r/", 1)[1]
    c = client_for(create_app(root), token)
    csrf = csrf_of(c)
    pages = []
    for p in positions(root, "r01"):
        c.post("/api/note", data={"position": p, "comment": PAYLOADS[0] + PAYLOADS[6]}, headers={"X-CSRF-Token": csrf})
        pages.append(c.get(f"/item/{p}").text)
    pages.append(c.get("/review").text)
    joined = "\n".join(pages)
    for payload in PAYLOADS:
        assert str(markupsafe.escape(payload)) in joined, payload  # shown as text, escaped
    assert "<script>alert" not in joined and "<img src=x" not in joined and "<svg" not in joined
    assert "&lt;script&gt;alert(&#34;xss&#34;)&lt;/script&gt;" in joined
    assert "{{ 7*7 }}" in joined  # not evaluated as a template
    assert "Safety flag" in joined  # the fixture's risky context carries the notice
    for page in pages:
        _inert(page)


# ---------------------------------------------------------------------- server


def test_server_checks_htmx_and_redacts_tokens(tmp_path, monkeypatch):
    import logging

    from emoguide.evaluation.rating import server

    assert server.is_loopback("127.0.0.1") and server.is_loopback("::1") and server.is_loopback("localhost")
    assert not server.is_loopback("0.0.0.0") and not server.is_loopback("192.168.1.5")
    assert "NOT loopback" in server.loopback_warning("0.0.0.0", 8765)
    monkeypatch.setattr(app_module, "HTMX_PATH", tmp_path / "missing" / "htmx.min.js")
    with pytest.raises(FileNotFoundError, match=r"run python scripts/fetch_htmx\.py"):
        server.serve(tmp_path, "127.0.0.1", 1)
    rec = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                            ("127.0.0.1:5", "GET", "/r/SECRETTOKEN123", "1.1", 200), None)
    server.RedactTokens().filter(rec)
    assert "SECRETTOKEN123" not in rec.getMessage() and "/r/<token>" in rec.getMessage()
    rec = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                            ("127.0.0.1:5", "GET", "/admin/login/ADMINTOKEN", "1.1", 200), None)
    server.RedactTokens().filter(rec)
    assert "ADMINTOKEN" not in rec.getMessage()
