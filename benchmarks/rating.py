"""Load and fault benchmark of the rating app, through its real HTTP endpoints.

    python benchmarks/rating.py [--raters 20] [--ratings 50] [--kill-after 300]

1. Builds a study (`emoguide rate init`, every rater rates every item), starts a real
   `emoguide rate serve` process on loopback and has N concurrent raters (threads, one HTTP
   client and cookie each) sign in with their invite link, fill the questionnaire and each submit
   M ratings through POST /api/score. Counts what the store holds: N x M rows expected, 0 lost, 0
   duplicated (an extra row, or an edit-log entry, would mean one submission landed twice), and
   prints the median and p95 latency of an acknowledged rating.
2. Fault: a second burst (new scores on the same positions: edits), and the server is killed with
   SIGKILL after `--kill-after` acknowledgements. It is restarted, and every rating whose HTTP 200
   the clients had received is looked up in the store: the count of acknowledged ratings missing
   must be 0 (acknowledged = committed, because save_score commits before it returns).

Figures go to stdout; the machines are shared and noisy, so read latencies as orders of magnitude.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402

from eval_fixtures import eval_corpus  # noqa: E402

EMOGUIDE = [sys.executable, "-m", "emoguide"]
BACKGROUND = {"degree": "master", "years_experience": "5", "orientation": "cbt", "cbt_training": "yes",
              "nonverbal_cues": "often"}
CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(corpus: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(EMOGUIDE + ["rate", "serve", "--corpus", str(corpus), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/static/app.css", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("rate serve did not come up within 60 s")


def build_study(tmp: Path, raters: int) -> Path:
    # 3 sessions x 2 targets x 2 models x 4 conditions = 48 items x 3 criteria per rater.
    corpus = eval_corpus(tmp, sessions=3, pairs=3, media=None, bad_rows=False).root
    (tmp / "study.toml").write_text("[assignment]\nretest_fraction = 0.0\n")
    subprocess.run(EMOGUIDE + ["rate", "init", "--corpus", str(corpus), "--raters", str(raters),
                               "--config", str(tmp / "study.toml")], check=True, capture_output=True)
    return corpus


def invite(corpus: Path, port: int) -> dict[str, str]:
    out = subprocess.run(EMOGUIDE + ["rate", "invite", "--corpus", str(corpus), "--base-url",
                                     f"http://127.0.0.1:{port}"], check=True, capture_output=True, text=True).stdout
    return dict(line.split("\t", 1) for line in out.strip().splitlines())


def sign_in(base: str, url: str) -> tuple[httpx.Client, str, list[int]]:
    client = httpx.Client(base_url=base, timeout=30)
    client.get(url.replace(base, ""))
    page = client.get("/questionnaire")
    token = CSRF.search(page.text).group(1)
    client.post("/questionnaire", data={**BACKGROUND, "csrf_token": token}, headers={"X-CSRF-Token": token})
    page = client.get("/review")
    token = CSRF.search(page.text).group(1)
    positions = sorted({int(p) for p in re.findall(r'href="/item/(\d+)"', page.text)})
    return client, token, positions


def burst(clients, n_ratings: int, criteria: list[str], score_of, acked: list, latencies: list, stop: threading.Event):
    def work(rater_id: str, client: httpx.Client, token: str, positions: list[int]):
        slots = [(p, c) for p in positions for c in criteria][:n_ratings]
        for position, criterion in slots:
            if stop.is_set():
                return
            score = score_of(rater_id, position, criterion)
            t0 = time.perf_counter()
            try:
                r = client.post("/api/score", data={"position": position, "criterion": criterion, "score": score},
                                headers={"X-CSRF-Token": token})
            except httpx.HTTPError:
                return  # the server is gone (fault phase)
            if r.status_code == 200:
                latencies.append(time.perf_counter() - t0)
                acked.append((rater_id, position, criterion, score))

    threads = [threading.Thread(target=work, args=(rid, *c)) for rid, c in clients.items()]
    for t in threads:
        t.start()
    return threads


def stored(corpus: Path) -> dict[tuple[str, int, str], int]:
    con = sqlite3.connect(corpus / "ratings.sqlite")
    rows = con.execute("SELECT rater_id, position, criterion, score FROM ratings WHERE score IS NOT NULL").fetchall()
    con.close()
    return {(r, p, c): s for r, p, c, s in rows}


def n_edits(corpus: Path) -> int:
    con = sqlite3.connect(corpus / "ratings.sqlite")
    n = con.execute("SELECT count(*) FROM edits").fetchone()[0]
    con.close()
    return n


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raters", type=int, default=20)
    ap.add_argument("--ratings", type=int, default=50, help="ratings each rater submits per burst")
    ap.add_argument("--kill-after", type=int, default=300, help="acknowledgements before SIGKILL in the fault burst")
    args = ap.parse_args()
    criteria = ["applicability", "empathy", "comprehensiveness"]
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        corpus = build_study(tmp, args.raters)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(corpus, port)
        try:
            links = invite(corpus, port)
            clients = {rid: sign_in(base, url) for rid, url in links.items()}
            # Phase 1: load.
            acked: list = []
            lat: list[float] = []
            t0 = time.perf_counter()
            threads = burst(clients, args.ratings, criteria, lambda r, p, c: 1 + (p + len(c)) % 5, acked, lat,
                            threading.Event())
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            have = stored(corpus)
            expected = args.raters * args.ratings
            lost = sum(1 for r, p, c, s in acked if have.get((r, p, c)) != s)
            print(f"load: {args.raters} raters x {args.ratings} ratings, concurrent, real HTTP (rate serve, 1 process)")
            print(f"  acknowledged {len(acked)} / {expected}; stored {len(have)}; lost {lost}; "
                  f"duplicated {len(have) - len(set((r, p, c) for r, p, c, _ in acked))}; edit-log rows {n_edits(corpus)}")
            print(f"  latency per rating: median {1000 * statistics.median(lat):.1f} ms, p95 {1000 * pct(lat, 95):.1f} ms; "
                  f"throughput {len(acked) / wall:.0f} ratings/s over {wall:.1f} s")
            # Phase 2: SIGKILL mid-burst.
            acked2: list = []
            lat2: list[float] = []
            stop = threading.Event()
            threads = burst(clients, args.ratings, criteria, lambda r, p, c: 1 + (p + len(c) + 2) % 5, acked2, lat2, stop)
            while len(acked2) < args.kill_after and any(t.is_alive() for t in threads):
                time.sleep(0.005)
            server.send_signal(signal.SIGKILL)
            server.wait()
            killed_at = len(acked2)
            stop.set()
            for t in threads:
                t.join()
            server = start_server(corpus, port)
            have = stored(corpus)
            missing = [a for a in acked2 if have.get(a[:3]) != a[3]]
            print(f"fault: SIGKILL after {killed_at} acknowledged edits, then restart")
            print(f"  acknowledged before the kill {len(acked2)}; missing after restart {len(missing)}; "
                  f"rows stored {len(have)} (phase 1 rows still {expected})")
            still_up = httpx.get(f"{base}/static/app.css", timeout=5).status_code
            print(f"  restarted server answers: HTTP {still_up}")
            return 1 if (lost or missing or len(have) != expected or len(acked) != expected) else 0
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=10)


if __name__ == "__main__":
    os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp())
    raise SystemExit(main())
