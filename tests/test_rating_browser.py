"""The rating study in a real browser: Debian's Chromium driven by Playwright against a real
`emoguide rate serve` process on loopback.

A rater opens the invite link, fills the questionnaire, rates three items with the keyboard
alone, plays and seeks the video, reloads and finds the ratings; a second rater sees none of it
and cannot change it; `emoguide rate export` holds exactly those rows with the right model and
condition; and neither the page source nor any response the browser received (bodies and
headers) names a model or a condition.

The screenshots of docs/rating.md come from a second run on a study with video = "blurred" (the
project's face blur; the video region is blurred in the screenshot as well). They go to the
test's tmp dir, and to EMOGUIDE_SCREENSHOTS=DIR when set:
`EMOGUIDE_SCREENSHOTS=docs/img pytest tests/test_rating_browser.py -k screenshots` refreshes them.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from eval_fixtures import CONDITIONS, MODELS, eval_corpus

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync"]
BLINDED = re.compile(
    r"(?<![\w-])(" + "|".join(re.escape(x) for x in (*CONDITIONS, *MODELS, "llamacpp", "openai")) + r")(?![\w-])",
    re.IGNORECASE,
)
CRITERIA = ("applicability", "empathy", "comprehensiveness")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _emoguide(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emoguide", *args], capture_output=True, text=True, timeout=600, **kw)


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"{proc.args}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


class Server:
    def __init__(self, root: Path, port: int, log: Path):
        self.root, self.port, self.log = root, port, log
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Server":
        self._fh = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "emoguide", "rate", "serve", "--corpus", str(self.root), "--port", str(self.port)],
            stdout=self._fh, stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rate serve exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.base + "/static/app.css", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"rate serve did not come up:\n{self.log.read_text()}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()


def _build(tmp: Path, video: str) -> tuple[Path, str]:
    root = Path(eval_corpus(tmp / video).root)
    cfg = tmp / f"{video}.toml"
    cfg.write_text(
        '[study]\ntitle = "Emotion-guided interventions: expert ratings"\n'
        f'video = "{video}"\n[assignment]\nretest_fraction = 0.0\nseed = 3\n'
    )
    proc = _emoguide("rate", "init", "--corpus", str(root), "--raters", "2", "--config", str(cfg))
    return root, (proc.stdout + proc.stderr) if proc.returncode else ""


@pytest.fixture(scope="module")
def playwright_browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Recorder:
    """Every response a page received: URL, status, headers and body."""

    def __init__(self):
        self.seen: list[tuple[str, int, dict, bytes]] = []

    def __call__(self, response) -> None:
        try:
            body = response.body()
        except Exception:  # redirects and aborted media requests have no body to read
            body = b""
        self.seen.append((response.url, response.status, dict(response.headers), body))

    def check_blinded(self) -> int:
        for url, status, headers, body in self.seen:
            blob = url + "\n" + "\n".join(f"{k}: {v}" for k, v in headers.items()) + "\n" + body.decode("latin-1")
            found = BLINDED.search(blob)
            assert not found, f"{url} ({status}): {found.group(0)!r} reached the browser"
        return len(self.seen)


def _invites(root: Path, base: str) -> dict[str, str]:
    out = _ok(_emoguide("rate", "invite", "--corpus", str(root), "--base-url", base))
    return dict(line.split("\t") for line in out.splitlines() if "\t" in line)


def _truth(root: Path, rater: str) -> dict[int, tuple[str, str, str]]:
    """position -> (item_id, model, condition), read from the study file like the export does."""
    conn = sqlite3.connect(root / "ratings.sqlite")
    rows = conn.execute(
        "SELECT a.position, a.item_id, u.model, u.condition FROM assignments a JOIN unblinding u USING (item_id) "
        "WHERE a.rater_id = ? ORDER BY a.position", (rater,)).fetchall()
    conn.close()
    return {int(p): (i, m, c) for p, i, m, c in rows}


def _fill_questionnaire(page) -> None:
    page.wait_for_url(re.compile(r"/questionnaire$"))
    page.check('input[name="degree"][value="phd"]')
    page.fill('input[name="years_experience"]', "12")
    page.check('input[name="orientation"][value="integrative"]')
    page.check('input[name="cbt_training"][value="yes"]')
    page.check('input[name="nonverbal_cues"][value="often"]')
    page.click("#background button[type=submit]")
    page.wait_for_url(re.compile(r"/item/\d+$"))


def _acked(page, criterion: str, score: int | str) -> None:
    page.wait_for_selector(f'#ack-{criterion}[data-score="{score}"]', timeout=10000)


def _position(page) -> int:
    return int(re.search(r"/item/(\d+)$", page.url).group(1))


def _wait_js(page, expr: str, timeout: float = 20.0):
    """Poll a JS expression from Python (page.wait_for_function evaluates strings in the page,
    which the app's CSP, rightly, forbids)."""
    deadline = time.time() + timeout
    while True:
        value = page.evaluate(f"() => ({expr})")
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {expr}")
        time.sleep(0.1)


def _blur_video(page) -> None:
    # belt and braces for the docs: the clip is face-blurred already when the study could blur
    page.evaluate("() => document.querySelectorAll('video').forEach(v => { v.style.filter = 'blur(24px)'; })")


def test_rating_study_in_a_real_browser(playwright_browser, tmp_path):
    root, err = _build(tmp_path, "original")
    assert not err, err
    port = _free_port()
    with Server(root, port, tmp_path / "serve.log") as server:
        links = _invites(root, server.base)
        assert set(links) == {"r01", "r02"}
        truth = _truth(root, "r01")

        # ---------------- rater 1: invite link, questionnaire, three items by keyboard
        ctx = playwright_browser.new_context(viewport={"width": 1360, "height": 900})
        page = ctx.new_page()
        rec = Recorder()
        page.on("response", rec)
        console_errors: list[str] = []
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.goto(links["r01"])
        _fill_questionnaire(page)
        assert "/r/" not in page.url
        rated: dict[int, dict[str, int]] = {}
        plans = [(4, 3, 5), (2, 2, 1), (5, 4, 4)]
        sources = []
        for k, plan in enumerate(plans):
            pos = _position(page)
            assert page.evaluate("document.activeElement.id") == "crit-applicability"
            if k == 2:
                # offline: the key press is not acknowledged, so nothing shows as saved and
                # Enter stays on the item; back online the same key saves
                ctx.set_offline(True)
                page.keyboard.press("1")
                page.wait_for_selector("#save-status.error", timeout=10000)
                assert "NOT saved" in page.locator("#save-status").inner_text()
                assert page.locator('#crit-applicability button.score[aria-checked="true"]').count() == 0
                page.keyboard.press("Enter")
                time.sleep(1.0)
                assert _position(page) == pos
                ctx.set_offline(False)
            if k == 0:
                # quick presses queue up in order: the last one is what gets stored (export checks it)
                page.keyboard.press("1")
                page.keyboard.press("2")
            for i, (crit, value) in enumerate(zip(CRITERIA, plan)):
                if i:
                    page.keyboard.press("Tab" if k == 1 else "ArrowDown")
                assert page.evaluate("document.activeElement.id") == f"crit-{crit}"
                page.keyboard.press(str(value))
                _acked(page, crit, value)
            assert page.locator("#save-status").inner_text().startswith("Saved")
            rated[pos] = dict(zip(CRITERIA, plan))
            sources.append(page.content())
            page.keyboard.press("Enter")
            page.wait_for_url(lambda url, pos=pos: not url.endswith(f"/item/{pos}"))
        assert len(rated) == 3
        assert page.locator(".progress-text").inner_text() == f"3 of {len(truth)} rated"

        # ---------------- the video plays and seeks
        video_pos = None
        for pos in truth:
            page.goto(f"{server.base}/item/{pos}")
            if page.locator("video#media").count():
                video_pos = pos
                break
        assert video_pos is not None, "no item with a video clip"
        _wait_js(page, "document.getElementById('media').readyState >= 1")
        duration = page.evaluate("document.getElementById('media').duration")
        assert duration > 1
        page.locator("#crit-applicability").focus()
        page.keyboard.press("Space")  # the keyboard plays the clip
        _wait_js(page, "!document.getElementById('media').paused && document.getElementById('media').currentTime > 0.2")
        page.keyboard.press("Space")  # and pauses it
        _wait_js(page, "document.getElementById('media').paused", 5)
        before = page.evaluate("document.getElementById('media').currentTime")
        target = round(min(duration - 0.5, before + duration / 2), 2)
        page.evaluate(f"document.getElementById('media').currentTime = {target}")
        _wait_js(page, f"Math.abs(document.getElementById('media').currentTime - {target}) < 0.3 && "
                 "!document.getElementById('media').seeking")
        assert page.evaluate("document.getElementById('media').currentTime") != pytest.approx(before, abs=0.1)
        ranged = [s for u, s, h, b in rec.seen if "/clip/" in u and s == 206]
        assert ranged, "the clip was never fetched with a range request"
        page.goto(f"{server.base}/review")  # leaving the item sends its viewing log
        page.wait_for_load_state("networkidle")

        # ---------------- reload: the ratings are still there
        for pos, scores in rated.items():
            page.goto(f"{server.base}/item/{pos}")
            page.reload()
            for crit, value in scores.items():
                btn = page.locator(f'#crit-{crit} button.score[data-score="{value}"]')
                assert btn.get_attribute("aria-checked") == "true", (pos, crit)
                assert page.locator(f'#crit-{crit} button.score[aria-checked="true"]').count() == 1
        page.goto(f"{server.base}/review")
        assert page.locator("#review tbody tr.complete").count() == 3
        assert "3 of" in page.locator(".progress-text").inner_text()
        sources += [page.content()]

        # ---------------- rater 2 sees none of it and cannot change it
        ctx2 = playwright_browser.new_context(viewport={"width": 1360, "height": 900})
        page2 = ctx2.new_page()
        rec2 = Recorder()
        page2.on("response", rec2)
        page2.goto(links["r02"])
        page2.wait_for_url(re.compile(r"/questionnaire$"))
        _fill_questionnaire(page2)
        first = next(iter(rated))
        page2.goto(f"{server.base}/item/{first}")
        assert page2.locator('button.score[aria-checked="true"]').count() == 0
        page2.locator('#crit-empathy button.score[data-score="1"]').click()  # the mouse works too
        _acked(page2, "empathy", 1)
        # a request forged from rater 2's page cannot name rater 1
        status = page2.evaluate(
            """async (pos) => { const r = await fetch('/api/score', {method: 'POST', headers: {
                 'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content,
                 'Content-Type': 'application/x-www-form-urlencoded'},
                 body: 'rater_id=r01&position=' + pos + '&criterion=applicability&score=1'}); return r.status; }""", first)
        assert status == 200
        # ...and without the CSRF token the server refuses it
        status = page2.evaluate(
            """async (pos) => (await fetch('/api/score', {method: 'POST', headers: {'Content-Type':
                 'application/x-www-form-urlencoded'}, body: 'position=' + pos + '&criterion=empathy&score=5'})).status""", first)
        assert status == 403
        assert page2.goto(f"{server.base}/item/{max(truth) + 5}").status == 404
        assert page2.goto(f"{server.base}/admin").status == 403
        sources.append(page2.content())
        ctx2.close()

        # ---------------- the admin dashboard
        admin_link = _ok(_emoguide("rate", "invite", "--corpus", str(root), "--admin", "--base-url", server.base))
        admin_url = admin_link.strip().split("\t")[1]
        ctx3 = playwright_browser.new_context(viewport={"width": 1360, "height": 700})
        page3 = ctx3.new_page()
        rec3 = Recorder()
        page3.on("response", rec3)
        page3.goto(admin_url)
        page3.wait_for_url(re.compile(r"/admin$"))
        assert page3.locator("#raters tbody tr").count() == 2
        sources.append(page3.content())
        ctx3.close()

        n_seen = rec.check_blinded() + rec2.check_blinded() + rec3.check_blinded()
        assert n_seen > 20
        for src in sources:
            assert not BLINDED.search(src)
        assert not [e for e in console_errors if "Content Security Policy" in e or "Refused" in e], console_errors
        ctx.close()

    # ---------------- the export holds exactly those rows, unblinded right
    out = tmp_path / "ratings.csv"
    _ok(_emoguide("rate", "export", "--corpus", str(root), "--out", str(out)))
    df = pd.read_csv(out)
    got = df[df["score"].notna()]
    mine = got[got["rater_id"] == "r01"]
    expected = {(truth[p][0], c, s) for p, scores in rated.items() for c, s in scores.items()}
    assert {(r.item_id, r.criterion, int(r.score)) for r in mine.itertuples()} == expected
    assert len(mine) == 9
    for r in mine.itertuples():
        pos = next(p for p, t in truth.items() if t[0] == r.item_id)
        assert (r.model, r.condition) == truth[pos][1:]
        assert r.seconds_on_item >= 0
    first_item = truth[next(iter(rated))][0]
    first_app = mine[(mine["item_id"] == first_item) & (mine["criterion"] == "applicability")]
    assert first_app["n_edits"].tolist() == [2]  # 1 -> 2 -> 4, every change kept
    other = got[got["rater_id"] == "r02"]
    assert {(r.criterion, int(r.score)) for r in other.itertuples()} == {("empathy", 1), ("applicability", 1)}
    viewed = df[(df["rater_id"] == "r01") & (df["item_id"] == truth[video_pos][0])]
    assert viewed["watched_fraction"].max() > 0



def test_docs_screenshots_with_blurred_faces(playwright_browser, tmp_path):
    root, err = _build(tmp_path, "blurred")
    if err and "cannot blur faces" in err:
        pytest.skip(f"no face detector to blur the clips: {err.strip().splitlines()[-1]}")
    assert not err, err
    shots = tmp_path / "shots"
    shots.mkdir()
    with Server(root, _free_port(), tmp_path / "serve.log") as server:
        links = _invites(root, server.base)
        ctx = playwright_browser.new_context(viewport={"width": 1360, "height": 1020})
        page = ctx.new_page()
        rec = Recorder()
        page.on("response", rec)
        page.goto(links["r01"])
        page.wait_for_url(re.compile(r"/questionnaire$"))
        page.check('input[name="degree"][value="master"]')
        page.fill('input[name="years_experience"]', "7")
        page.check('input[name="orientation"][value="cbt"]')
        page.check('input[name="cbt_training"][value="yes"]')
        page.screenshot(path=str(shots / "rating-questionnaire.png"), full_page=True)
        page.check('input[name="nonverbal_cues"][value="sometimes"]')
        page.click("#background button[type=submit]")
        page.wait_for_url(re.compile(r"/item/\d+$"))
        done_pos = []
        for plan in ((4, 4, 3), (3, 5, 4)):
            done_pos.append(_position(page))
            for i, (crit, value) in enumerate(zip(CRITERIA, plan)):
                if i:
                    page.keyboard.press("ArrowDown")
                page.keyboard.press(str(value))
                _acked(page, crit, value)
            page.keyboard.press("Enter")
            page.wait_for_url(lambda url, pos=done_pos[-1]: not url.endswith(f"/item/{pos}"))
        # an item with a clip and a safety flag if there is one, half rated, with a comment
        truth = _truth(root, "r01")
        chosen = None
        for pos in truth:
            page.goto(f"{server.base}/item/{pos}")
            if page.locator("video#media").count() and page.locator("#risk-notice").count():
                chosen = pos
                break
        assert chosen is not None
        _wait_js(page, "document.getElementById('media').readyState >= 2")
        page.evaluate("document.getElementById('media').currentTime = 5")
        _wait_js(page, "!document.getElementById('media').seeking && document.getElementById('media').readyState >= 2")
        _blur_video(page)
        page.locator('#crit-applicability button.score[data-score="4"]').click()
        _acked(page, "applicability", 4)
        page.locator('#crit-empathy button.score[data-score="3"]').click()
        _acked(page, "empathy", 3)
        page.fill("#comment", "Names the worry but skips the hopelessness in the second turn.")
        page.locator("#crit-comprehensiveness").focus()
        page.wait_for_selector("#note-ack:text('saved')", timeout=10000)
        page.screenshot(path=str(shots / "rating-item.png"))
        page.goto(f"{server.base}/review")
        page.screenshot(path=str(shots / "rating-review.png"), full_page=True)
        rec.check_blinded()
        ctx.close()
        # a second rater rates the same items, so the dashboard has overlap to compute alpha on
        rated_items = {truth[p][0] for p in (*done_pos, chosen)}
        ctx2 = playwright_browser.new_context(viewport={"width": 1360, "height": 1020})
        page2 = ctx2.new_page()
        page2.goto(links["r02"])
        _fill_questionnaire(page2)
        for pos, (item_id, _, _) in _truth(root, "r02").items():
            if item_id not in rated_items:
                continue
            page2.goto(f"{server.base}/item/{pos}")
            for crit, value in zip(CRITERIA, (3, 4, 4)):
                page2.locator(f'#crit-{crit} button.score[data-score="{value}"]').click()
                _acked(page2, crit, value)
        ctx2.close()
        admin_url = _ok(_emoguide("rate", "invite", "--corpus", str(root), "--admin", "--base-url", server.base))
        ctx3 = playwright_browser.new_context(viewport={"width": 1360, "height": 640})
        page3 = ctx3.new_page()
        page3.goto(admin_url.strip().split("\t")[1])
        page3.wait_for_url(re.compile(r"/admin$"))
        page3.screenshot(path=str(shots / "rating-admin.png"), full_page=True)
        ctx3.close()
    for name in ("rating-item.png", "rating-review.png", "rating-questionnaire.png", "rating-admin.png"):
        assert (shots / name).stat().st_size > 10000
    dest = os.environ.get("EMOGUIDE_SCREENSHOTS")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        for f in shots.glob("*.png"):
            shutil.copy(f, Path(dest) / f.name)
