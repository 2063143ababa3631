"""Memory budgets: parse "4GB"-style strings and pick a safe default share of RAM or VRAM."""

from __future__ import annotations

import os
import re

import torch

from rashomon.errors import RashomonError

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "TB": 1e12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
# Share of what is free that evaluation may take by default: the rest stays for the caller's
# arrays, the OS and (on a GPU) the allocator's fragmentation.
DEFAULT_RAM_SHARE = 0.25
DEFAULT_VRAM_SHARE = 0.5
MIN_BUDGET = 64 * 2**20


def parse_bytes(value: str | int | float) -> int:
    """ "4GB", "512MiB", "1.5 GB", 2e9 → bytes. Decimal units are powers of 1000, *iB of 1024."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        n = float(value)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(value))
        if m is None or m.group(2).upper() not in _UNITS:
            raise RashomonError(
                f"cannot read memory size {value!r}; write it like '4GB', '512MB' or '2GiB'"
            )
        n = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if n <= 0:
        raise RashomonError(f"memory budget must be positive, got {value!r}")
    return int(n)


def available_ram() -> int:
    """Bytes of RAM available to new allocations (MemAvailable), or total RAM as a fallback."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 * 2**30


def memory_budget(max_memory: str | int | float | None, device: str | torch.device) -> int:
    """The budget in bytes for evaluation working memory on `device`."""
    if max_memory is not None:
        return parse_bytes(max_memory)
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return max(MIN_BUDGET, int(free * DEFAULT_VRAM_SHARE))
    return max(MIN_BUDGET, int(available_ram() * DEFAULT_RAM_SHARE))


def format_bytes(n: float) -> str:
    """`n` bytes in words with decimal units, e.g. '1.5 GB'."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"
