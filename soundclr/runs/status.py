"""What a results folder holds: per experiment, the runs finished, running, stale, failed and to do,
with an ETA (``soundclr status``).
"""
from __future__ import annotations

from pathlib import Path

from ..files import read_json
from ..train.record import read_metrics
from .lease import DEFAULT_STALE_SECONDS, FAILED, age, holder_gone, read_lease


# -- status of a results folder --------------------------------------------------------------
def status(results: Path | str = "results", dataset: str | None = None, experiment: str | None = None) -> list[dict]:
    """Per experiment folder ``results/<dataset>/<experiment>``: the runs finished, running
    (host, pid, epoch, heartbeat age), stale, failed (the error's last line), to do (with the
    epoch a checkpoint reached, if any), the mean epoch time and an ETA."""
    out = []
    root = Path(results)
    for exp_dir in sorted(root.glob(f"{dataset or '*'}/{experiment or '*'}")):
        if not exp_dir.is_dir() or exp_dir.name.startswith("."):
            continue
        manifest_path = exp_dir / "grid.json"
        try:
            manifest = read_json(manifest_path).get("runs", {}) if manifest_path.exists() else {}
        except ValueError:
            manifest = {}
        names = set(manifest) | {p.name for p in exp_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
        entry = {"dataset": exp_dir.parent.name, "experiment": exp_dir.name, "folder": str(exp_dir), "runs": len(names),
                 "finished": 0, "running": [], "stale": [], "failed": [], "todo": []}
        epoch_seconds, remaining = [], 0
        for name in sorted(names):
            run_dir = exp_dir / name
            epochs = (manifest.get(name) or {}).get("epochs")
            rows = []
            if run_dir.is_dir():
                try:
                    rows = read_metrics(run_dir)
                except ValueError:
                    rows = []
                epoch_seconds += [r["seconds"] for r in rows if isinstance(r.get("seconds"), (int, float))]
            if (run_dir / "summary.json").is_file():
                entry["finished"] += 1
                continue
            done = len(rows)
            current = read_lease(run_dir) if run_dir.is_dir() else None
            if current is not None:
                item = {"run": name, "host": current.get("host"), "pid": current.get("pid"), "slurm": current.get("slurm"),
                        "epoch": current.get("epoch", done), "epochs": current.get("epochs") or epochs,
                        "heartbeat_age": round(age(current), 1)}
                stale = age(current) >= _stale_seconds(run_dir) or holder_gone(current)
                entry["stale" if stale else "running"].append(item)
            elif (run_dir / FAILED).exists():
                try:
                    failed = read_json(run_dir / FAILED)
                except ValueError:
                    failed = {"error": "failed.json cannot be read"}
                entry["failed"].append({"run": name, "error": failed.get("error"), "host": failed.get("host"),
                                        "epoch": failed.get("epoch")})
            else:
                entry["todo"].append({"run": name, "epochs_done": done, "epochs": epochs})
            if epochs:
                remaining += max(0, epochs - done)
        mean = sum(epoch_seconds) / len(epoch_seconds) if epoch_seconds else None
        workers = len(entry["running"])
        entry["epoch_seconds"] = round(mean, 2) if mean is not None else None
        entry["remaining_epochs"] = remaining
        entry["eta_seconds"] = round(remaining * mean / workers) if mean is not None and workers else None
        out.append(entry)
    return out


def _stale_seconds(run_dir: Path) -> float:
    try:
        return float(read_json(run_dir / "config.json")["config"]["run"]["lease_stale_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_STALE_SECONDS


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_status(entries: list[dict], *, details: bool = True) -> str:
    """``status()`` for a terminal: one line per experiment, then its running, stale and failed runs."""
    if not entries:
        return "no experiments found (nothing has been trained into this results folder yet)"
    lines = []
    for e in entries:
        eta = (f"ETA {_duration(e['eta_seconds'])} at {len(e['running'])} worker(s)" if e["eta_seconds"] is not None
               else ("done" if e["finished"] == e["runs"] else "no worker running"))
        per_epoch = f", {e['epoch_seconds']:.1f} s per epoch" if e["epoch_seconds"] else ""
        lines.append(f"{e['dataset']}/{e['experiment']}: {e['runs']} runs: {e['finished']} finished, {len(e['running'])} running, "
                     f"{len(e['stale'])} stale, {len(e['failed'])} failed, {len(e['todo'])} to do; {eta}{per_epoch}")
        if not details:
            continue
        for r in e["running"]:
            lines.append(f"  running  {r['run']}  on {r['host']} (pid {r['pid']}{', SLURM ' + r['slurm'] if r.get('slurm') else ''}), "
                         f"epoch {r['epoch']}/{r['epochs'] or '?'}, heartbeat {_duration(r['heartbeat_age'])} ago")
        for r in e["stale"]:
            lines.append(f"  stale    {r['run']}  last seen on {r['host']} (pid {r['pid']}) {_duration(r['heartbeat_age'])} ago "
                         f"at epoch {r['epoch']}: the next worker takes it over")
        for r in e["failed"]:
            lines.append(f"  failed   {r['run']}  {r['error']}")
    return "\n".join(lines)
