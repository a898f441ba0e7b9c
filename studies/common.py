"""What the studies share: training their runs with worker processes, and writing their numbers into a page.

Each study (``studies/*.py``) trains runs into the results store (reused when it runs again), writes a
json of every number, and replaces the section between its two markers in a page of the book.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from soundclr.runs.pool import train_in_processes, work  # noqa: E402


FINAL_RATE = 0.05       # the last epoch runs at 5 % of the peak rate (the released code's form of schedule)


def schedule(epochs: int) -> dict:
    """The book's schedule for ``epochs`` epochs: linear warm-up over a tenth of them, then exponential decay
    to FINAL_RATE of the peak rate at the last epoch (settings ``epochs``, ``warmup_epochs``, ``gamma``)."""
    warm = max(1, round(epochs / 10))
    return dict(epochs=epochs, warmup_epochs=warm, gamma=FINAL_RATE ** (1 / max(1, epochs - 1 - warm)))


def train_runs(runs: Callable[[], list], workers: int, script: str, where: str) -> None:
    """Train what ``runs()`` lists and is not finished: in this process (``workers`` 1) or in worker processes
    running ``script --worker``; a run left by a worker that died is taken over on the next round (three)."""
    if all(r.finished for r in runs()):
        return
    print(f"training {sum(not r.finished for r in runs())} of {len(runs())} runs (progress: soundclr status "
          f"--results {where})", flush=True)
    for _ in range(3):
        if workers == 1:
            work(runs(), verbose=False, log=None)
        else:
            train_in_processes([sys.executable, script, "--worker"], workers, runs()[0].config)
        if all(r.finished for r in runs()):
            return
        time.sleep(5)
    raise SystemExit(f"{sum(not r.finished for r in runs())} runs did not finish: see soundclr status --results {where}")


def study_args(doc: str, runs: Callable[[], list]) -> argparse.Namespace | None:
    """A study's command line: ``--workers N`` (training processes, default 2), ``--report`` (only write the json
    and the page section from finished runs) and ``--worker`` (a process :func:`train_runs` starts: it trains what
    ``runs()`` lists, then the script ends). Returns the arguments, or None after a worker's training."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--report", action="store_true", help="only write the json and the page section from finished runs")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        work(runs(), verbose=False, log=None)
        return None
    return args


def save(out_json: Path, result: dict, page: Path, markers: tuple[str, str], text: str, *, report: bool) -> None:
    """Write a study's ``result`` to ``out_json`` (with ``report``, a page rewrite that trained nothing, the date
    stays that of the training) and ``text`` between ``markers`` in ``page``."""
    if report and out_json.exists():
        result["date"] = json.loads(out_json.read_text()).get("date", result["date"])
    out_json.write_text(json.dumps(result, indent=1) + "\n")
    write_section(page, markers, text)


def write_section(page: Path, markers: tuple[str, str], text: str) -> None:
    """Replace the text between ``markers`` (both kept, as ``text`` starts and ends with them) in ``page``."""
    content = page.read_text()
    pattern = re.compile(re.escape(markers[0]) + r".*?" + re.escape(markers[1]), re.S)
    if not pattern.search(content):
        raise SystemExit(f"{page} has no markers {markers}: put them where the section belongs")
    page.write_text(pattern.sub(lambda _: text, content))
