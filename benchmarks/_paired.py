"""Paired rounds: time several contenders in one process, alternating them, so that load drift on
a shared machine hits every contender alike, and report per-round ratios rather than ratios of
best times.

Round r calls every contender once, in the order rotated by r (A B C, B C A, C A B, ...). Each
call records wall seconds, CPU seconds of the process (all threads, user + system; on a shared
machine less sensitive to load than wall time), its system part, the minor page faults, and the
peak resident memory during the call (VmHWM, reset before the call, so it is the process's peak
while that contender ran, on top of what the process already held).
"""

from __future__ import annotations

import gc
import json
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

MIN_ROUNDS = 5


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    try:
        return _status_mb("VmHWM:")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


@dataclass
class Timings:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    sys: list[float] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)
    peak_mb: float = 0.0

    def summary(self) -> dict:
        return {
            "wall_median_s": statistics.median(self.wall),
            "wall_min_s": min(self.wall),
            "wall_max_s": max(self.wall),
            "cpu_median_s": statistics.median(self.cpu),
            "sys_median_s": statistics.median(self.sys),
            "page_faults_median": statistics.median(self.faults),
            "peak_rss_mb": self.peak_mb,
            "wall_s": self.wall,
            "cpu_s": self.cpu,
        }


def rounds_ok(rounds: int) -> int:
    if rounds < MIN_ROUNDS:
        print(f"  (only {rounds} rounds: a smoke run, not numbers for a note)", flush=True)
    return rounds


def paired_rounds(
    contenders: dict[str, Callable[[], object]], rounds: int = MIN_ROUNDS, warmup: bool = True
) -> dict[str, Timings]:
    """Time every contender once per round for `rounds` rounds, the order rotated each round.
    `warmup` calls each once first (allocator, kernel selection, caches), untimed."""
    names = list(contenders)
    if warmup:
        for name in names:
            contenders[name]()
    out = {name: Timings() for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            gc.collect()
            _reset_peak()
            use0 = resource.getrusage(resource.RUSAGE_SELF)
            wall, cpu = time.perf_counter(), time.process_time()
            result = contenders[name]()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            use1 = resource.getrusage(resource.RUSAGE_SELF)
            del result
            t = out[name]
            t.wall.append(wall)
            t.cpu.append(cpu)
            t.sys.append(use1.ru_stime - use0.ru_stime)
            t.faults.append(use1.ru_minflt - use0.ru_minflt)
            t.peak_mb = max(t.peak_mb, peak_rss_mb())
    return out


def ratio(
    timings: dict[str, Timings], num: str, den: str, clock: str = "wall", scale: float = 1.0
) -> dict:
    """Median, min and max over rounds of `scale` × num's time / den's time in the same round."""
    a, b = getattr(timings[num], clock), getattr(timings[den], clock)
    per_round = [scale * x / y for x, y in zip(a, b, strict=True)]
    return {
        "median": statistics.median(per_round),
        "min": min(per_round),
        "max": max(per_round),
        "per_round": per_round,
    }


def _ratio_name(r: tuple) -> str:
    return f"{r[0]}/{r[1]}" + (f" × {r[2]:g}" if len(r) > 2 and r[2] != 1 else "")


@dataclass
class Row:
    """One benchmark row: what it measured, its paired timings and the ratios to print."""

    name: str
    title: str
    timings: dict[str, Timings]
    # (num, den) or (num, den, scale): e.g. scale 10 / k extrapolates k retrained models to 10
    ratios: Sequence[tuple] = ()
    labels: dict[str, str] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    load_before: str = ""
    load_after: str = ""

    def to_dict(self) -> dict:
        return {
            "row": self.name,
            "title": self.title,
            "rounds": len(next(iter(self.timings.values())).wall),
            "load_before": self.load_before,
            "load_after": self.load_after,
            "contenders": {
                k: {"label": self.labels.get(k, k), **t.summary()} for k, t in self.timings.items()
            },
            "ratios": {
                _ratio_name(r): {
                    "wall": ratio(self.timings, *r[:2], "wall", *r[2:]),
                    "cpu": ratio(self.timings, *r[:2], "cpu", *r[2:]),
                }
                for r in self.ratios
            },
            **self.extra,
        }

    def print(self) -> None:
        d = self.to_dict()
        print(f"\n[{self.name}] {self.title}")
        print(f"  {d['rounds']} paired rounds; load average {self.load_before} → {self.load_after}")
        print(
            f"  {'contender (medians; wall also [min–max])':<54s} {'wall':>26s} {'CPU':>9s} "
            f"{'of it sys':>9s} {'faults':>8s} {'peak RSS':>9s}"
        )
        for c in d["contenders"].values():
            span = f"{c['wall_median_s']:.3f} s [{c['wall_min_s']:.3f}–{c['wall_max_s']:.3f}]"
            print(
                f"  {c['label'][:54]:<54s} {span:>26s} {c['cpu_median_s']:>7.3f} s "
                f"{c['sys_median_s']:>7.3f} s {c['page_faults_median']:>8.0f} "
                f"{c['peak_rss_mb']:>6.0f} MB"
            )
        if d["ratios"]:
            print("  per-round ratios, median [min–max] (wall; CPU)")
            for key, r in d["ratios"].items():
                w, c = r["wall"], r["cpu"]
                print(
                    f"  {key:<54s} {w['median']:6.2f}× [{w['min']:.2f}–{w['max']:.2f}]; "
                    f"CPU {c['median']:.2f}× [{c['min']:.2f}–{c['max']:.2f}]"
                )
        for k, v in self.extra.items():
            print(f"  {k:<54s} {v:.4g}" if isinstance(v, float) else f"  {k:<54s} {v}")


def run_row(
    name: str,
    title: str,
    contenders: dict[str, Callable[[], object]],
    rounds: int,
    ratios: Sequence[tuple] = (),
    labels: dict[str, str] | None = None,
    warmup: bool = True,
    **extra,
) -> Row:
    before = loadavg()
    timings = paired_rounds(contenders, rounds_ok(rounds), warmup=warmup)
    row = Row(name, title, timings, ratios, labels or {}, extra, before, loadavg())
    row.print()
    return row


def write_json(rows: Sequence[Row], path: str | None, header: dict) -> None:
    if path:
        with open(path, "w") as f:
            json.dump({**header, "rows": [r.to_dict() for r in rows]}, f, indent=1)
