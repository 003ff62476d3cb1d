"""The studio's first look in a real browser, upload after upload: how long from the end of the photo's upload
request to the framed photo and to the encoder's projection on screen, with the server's own steps on the same
clock (``--verbose``), for one source tree against another at the same load.

A server like ``tests/test_studio_browser.py``'s encoder server (the embedded default, a random conv encoder,
steps x0.02 so that each method lands quickly) is started from ``SRC`` (e.g. ``src`` or another checkout's), the
page is loaded afresh for each upload (the same photo), and the stage times are recorded with that test's
``STAGE_RECORDER``. Alternate the trees, with ``uptime`` next to each figure, on a shared machine::

    .venv/bin/python scripts/studio_first_look_timing.py src 4 photo.png --verbose
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER = Path(__file__).with_name("studio_first_look_server.py")
FETCH_SPY = """
window.__chunks = [];
const of = window.fetch;
window.fetch = async (...a) => {
  const r = await of(...a);
  const url = String(a[0] && a[0].url || a[0]);
  if (!url.includes('queue/data') || !r.body) return r;
  const [x, y] = r.body.tee();
  (async () => { const rd = x.getReader(); const dec = new TextDecoder();
    for (;;) { const {done, value} = await rd.read(); if (done) break;
      const t = dec.decode(value); for (const m of t.matchAll(/"msg":\\s*"(\\w+)"/g))
        window.__chunks.push([performance.now(), m[1]]); } })();
  return new Response(y, {headers: r.headers, status: r.status});
};
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="the source tree the server runs (its PYTHONPATH)")
    parser.add_argument("uploads", type=int)
    parser.add_argument("photo")
    parser.add_argument("--verbose", action="store_true", help="each upload's requests and server steps")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from playwright.sync_api import expect, sync_playwright

    from test_studio_browser import CHROMIUM_ARGS, STAGE_RECORDER, _free_port, _wait_for_server

    tmp = Path(tempfile.mkdtemp())
    uploads, log = tmp / "up", tmp / "events.jsonl"
    uploads.mkdir()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": args.src}
    server = subprocess.Popen(
        [sys.executable, str(SERVER), str(uploads), str(port), "0.02", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    res = []
    try:
        _wait_for_server(base + "/", server)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.add_init_script(FETCH_SPY)
            for i in range(args.uploads):
                page.goto(base + "/", wait_until="load")
                expect(page.locator("#estimate")).to_contain_text("about", timeout=60_000)
                time.sleep(1.0)
                page.evaluate(STAGE_RECORDER)
                load = os.getloadavg()[0]
                log.write_text("")
                page.locator("#upload input[type=file]").set_input_files(args.photo)
                page.wait_for_function("() => window.__magecStages.instant", timeout=60_000)
                page.wait_for_function("() => window.__magecStages.refined", timeout=120_000)
                st = page.evaluate("() => window.__magecStages")
                origin = page.evaluate("() => performance.timeOrigin")
                rs = page.evaluate(
                    "() => performance.getEntriesByType('resource').map(e => [new URL(e.name).pathname.slice(0, 60),"
                    " e.startTime, e.responseStart, e.responseEnd])"
                )
                up = [r for r in rs if r[0].endswith("/gradio_api/upload")][-1][3]
                res.append((st["framed"] - up, st["instant"] - up))
                print(
                    f"#{i} framed {st['framed'] - up:.0f} ms, instant caption {st['instantText'] - up:.0f} ms, "
                    f"instant {st['instant'] - up:.0f} ms, F's caption {st['described'] - up:.0f} ms after the "
                    f"upload's request ended (load {load:.2f})"
                )
                if args.verbose:
                    for t, msg in page.evaluate("() => window.__chunks"):
                        if up - 100 < t < st["instant"] + 5:
                            print(f"   sse {msg:20s} {t - up:7.0f}")
                    for name, start, first, end in rs:
                        if first + 1 >= up - 400 and start < st["instant"] + 5:
                            print(
                                f"   req {name:60s} {start - up:7.0f} first byte {first - up:7.0f} end {end - up:7.0f}"
                            )
                    for line in log.read_text().splitlines():
                        label, s, e = json.loads(line)
                        if s - origin < st["instant"] + 5:
                            print(
                                f"   srv {label:20s} {s - origin - up:7.0f} .. {e - origin - up:7.0f} ({e - s:.0f} ms)"
                            )
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    for k, name in enumerate(("framed", "instant")):
        print(f"{name}: median {statistics.median(r[k] for r in res):.0f} ms, all {[round(r[k]) for r in res]}")


if __name__ == "__main__":
    main()
