"""Connecting to Ray: a running cluster, the one this process already holds, or a local Ray started
now. Sweeps run their cells on it, and the validate stage its retrained seeds."""

from __future__ import annotations

import os
from typing import Any

# Keep a local Ray small and offline: no dashboard, no usage reporting, a small object store
# (cells exchange only small status dicts; their arrays go to disk).
OBJECT_STORE_BYTES = 200 * 2**20


def start_ray(
    num_cpus: float | None = None, num_gpus: float | None = None, address: str | None = None
) -> bool:
    """Connect to Ray: an existing cluster at `address`, the one this process already holds, or
    a local Ray started now. Returns True when this call started it (and should shut it down)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return False
    import logging

    # Cells log into their own run directories; Ray's own chatter stays off the console.
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.ERROR,
    }
    if address:
        ray.init(address=address, **kwargs)
        return True
    # ray.init annotates whole counts; the user's (possibly fractional) count is passed on as given
    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, object_store_memory=OBJECT_STORE_BYTES, **kwargs)  # type: ignore[arg-type]
    return True
