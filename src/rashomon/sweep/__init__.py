"""Sweeps: a grid of ordinary run directories, one per cell, run as Ray tasks.

- `spec`: the sweep file (`SweepSpec`, `load_sweep`), its grid of cells (`expand_grid`,
  `cell_name`) and the sweep directory's file names;
- `execution`: one cell (`run_cell`), the whole sweep (`run_sweep`: shared MAP training,
  waiting, status table, report), on Ray (`start_ray`, from `rashomon.cluster`);
- `collect`: the tidy table across cells (`cell_rows`, `collect_sweep`), the headline numbers per
  cell and their study against a grid axis (`headline_table`, `axis_study`).

The sweep report page itself is drawn by `rashomon.report.sweep_page`.
"""

from rashomon.cluster import OBJECT_STORE_BYTES, start_ray
from rashomon.errors import ERROR_CHARS, one_line
from rashomon.sweep.collect import (
    HEADLINE,
    TIDY_COLUMNS,
    axis_studies,
    axis_study,
    cell_rows,
    collect_sweep,
    grid_keys,
    headline_table,
    numeric_axes,
)
from rashomon.sweep.execution import (
    cell_is_finished,
    cell_memory_budget,
    concurrent_slots,
    run_cell,
    run_sweep,
    write_sweep_report,
)
from rashomon.sweep.spec import (
    CELL_ERROR,
    CELL_LOCK,
    CELL_LOG,
    CELLS_DIR,
    REPORT_FILE,
    STATUS_FILE,
    STATUS_ONLY,
    TABLE_FILE,
    Cell,
    Resources,
    SweepSpec,
    cell_name,
    expand_grid,
    load_sweep,
)

__all__ = [
    "CELLS_DIR",
    "CELL_ERROR",
    "CELL_LOCK",
    "CELL_LOG",
    "ERROR_CHARS",
    "HEADLINE",
    "OBJECT_STORE_BYTES",
    "REPORT_FILE",
    "STATUS_FILE",
    "STATUS_ONLY",
    "TABLE_FILE",
    "TIDY_COLUMNS",
    "Cell",
    "Resources",
    "SweepSpec",
    "axis_studies",
    "axis_study",
    "cell_is_finished",
    "cell_memory_budget",
    "cell_name",
    "cell_rows",
    "collect_sweep",
    "concurrent_slots",
    "expand_grid",
    "grid_keys",
    "headline_table",
    "load_sweep",
    "numeric_axes",
    "one_line",
    "run_cell",
    "run_sweep",
    "start_ray",
    "write_sweep_report",
]
