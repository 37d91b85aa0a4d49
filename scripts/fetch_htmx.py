"""Put htmx (from the npm registry, pinned and integrity-checked) beside the rating app.

The rating page loads nothing from the internet, so htmx is served by the app as a local file.
It is fetched at setup time from the npm registry (a registry this project may reach), checked
against the sha512 integrity the registry publishes for the pinned release, and written to
src/emoguide/evaluation/rating/static/vendor/htmx.min.js (not committed: it is not our code).
Usage: python scripts/fetch_htmx.py [--force]
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

VERSION = "2.0.4"
URL = f"https://registry.npmjs.org/htmx.org/-/htmx.org-{VERSION}.tgz"
INTEGRITY = "sha512-HLxMCdfXDOJirs3vBZl/ZLoY+c7PfM4Ahr2Ad4YXh6d22T5ltbTXFFkpx9Tgb2vvmWFMbIc3LqN2ToNkZJvyYQ=="
MEMBERS = {"package/dist/htmx.min.js": "htmx.min.js", "package/LICENSE": "htmx.LICENSE"}
DEST = Path(__file__).resolve().parent.parent / "src/emoguide/evaluation/rating/static/vendor"


def main(argv: list[str]) -> int:
    target = DEST / "htmx.min.js"
    if target.exists() and "--force" not in argv:
        print(f"fetch_htmx: {target} is there")
        return 0
    with urllib.request.urlopen(URL, timeout=60) as resp:
        blob = resp.read()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(blob).digest()).decode()
    if digest != INTEGRITY:
        print(f"fetch_htmx: {URL}: integrity {digest} != pinned {INTEGRITY}; nothing written", file=sys.stderr)
        return 1
    DEST.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for member, name in MEMBERS.items():
            data = tar.extractfile(member)
            if data is None:
                print(f"fetch_htmx: {member} missing from {URL}", file=sys.stderr)
                return 1
            (DEST / name).write_bytes(data.read())
    (DEST / "htmx.VERSION").write_text(VERSION + "\n")
    print(f"fetch_htmx: htmx {VERSION} -> {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
