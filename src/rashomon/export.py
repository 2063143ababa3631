"""`rashomon export`: one model of a run's set written as a normal checkpoint.

The file is what `rashomon train` writes (`rs.load_checkpoint` rebuilds it), plus where the model
came from, so the fairer or more robust model a user found in the set can leave the tool. For a
user's own network (`--model pkg.module:function` or a saved module) it also holds
`user_state_dict`: the weights under the user's own parameter names, which load into their
network with `net.load_state_dict(torch.load(path)["user_state_dict"])` without rashomon.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from rashomon import schema as S
from rashomon.errors import RashomonError

MAP_MODEL = "map"  # the audited (trained) model itself


PER_MODEL = S.TABLES["per_model"].file


def _sample_record(run_dir: Path) -> S.SampleRecord:
    if not (run_dir / "sample" / S.SET).exists() or not (run_dir / "sample" / S.SUMMARY).exists():
        raise RashomonError(
            f"{run_dir} has no finished sample stage (no sample/{S.SET}); run "
            f"`rashomon sample {run_dir}` first"
        )
    return S.sample_record(run_dir)  # ε and source as the sample stage recorded them


def parse_model_id(model: str | int) -> int | str:
    """A set member's index (as in sample/per_model.csv) or "map"."""
    if isinstance(model, int) or str(model).lstrip("-").isdigit():
        return int(model)
    if str(model).lower() == MAP_MODEL:
        return MAP_MODEL
    raise RashomonError(
        f"--model {model!r} is neither a model index of sample/{PER_MODEL} nor 'map'; give the "
        "number in its `model` column (decide/selection.csv names the selected ones)"
    )


def refuse_inside_run(run_dir: Path, out: Path) -> None:
    """Refuse an export target inside the run directory, however it is spelled (relative,
    '..', symbolic links). The run directory belongs to its stages: a file written there can
    replace a stage's output (train/model.pt) while stages.json still calls the stage up to
    date, or be swept with a stage folder that is redone."""
    root = run_dir.expanduser().resolve()
    target = out.expanduser().resolve()
    if target == root or root in target.parents:
        raise RashomonError(
            f"--out {out} is inside the run directory {run_dir}, whose files belong to its "
            f"stages; write it outside, e.g. --out {run_dir.name}-{target.name}"
        )


def export_model(
    run_dir: str | Path,
    model: str | int,
    out: str | Path,
    *,
    outside: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Write model `model` of the run's set (or the MAP model, "map") to `out`; returns what was
    recorded about it. A model outside the Rashomon set is refused unless `outside`; an existing
    `out` is never overwritten unless `force`; `out` inside the run directory is refused."""
    from rashomon.models.train import load_checkpoint, save_checkpoint
    from rashomon.sets.base import ModelSet

    run_dir = Path(run_dir)
    out = Path(out)
    sampled = _sample_record(run_dir)
    refuse_inside_run(run_dir, out)
    if out.exists() and not force:
        raise RashomonError(f"{out} exists; choose another --out or pass --force to replace it")
    model_id = parse_model_id(model)
    epsilon = sampled.epsilon
    base, meta = load_checkpoint(run_dir / "train" / S.CHECKPOINT)
    origin: dict[str, Any] = {
        "run_dir": str(run_dir.resolve()),
        "source": sampled.source,
        "epsilon": epsilon,
    }
    if model_id == MAP_MODEL:
        net = base
        origin.update(model=MAP_MODEL, in_set=True)
    else:
        per_model = pd.read_csv(S.TABLES["per_model"].path(run_dir))
        rows = per_model.index[per_model[S.MODEL] == model_id]
        if len(rows) == 0:
            raise RashomonError(
                f"model {model_id} is not in {run_dir}/sample/{PER_MODEL} (models "
                f"{int(per_model[S.MODEL].min())}..{int(per_model[S.MODEL].max())})"
            )
        row = per_model.loc[rows[0]]
        col = S.find_in_set_column(per_model.columns, epsilon, f"sample/{PER_MODEL}")
        in_set = bool(row[col])
        if not in_set and not outside:
            raise RashomonError(
                f"model {model_id} is outside the Rashomon set at ε = {epsilon:g} (validation "
                f"loss {float(row[S.VAL_LOSS]):.4f}); pick one with {col} True in "
                f"sample/{PER_MODEL}, or pass --outside to export it anyway"
            )
        mset = ModelSet.load(run_dir / "sample" / S.SET)
        if mset.kind == "glm" and not mset.head_only:
            raise RashomonError(
                "the set's models are linearised networks (kind glm), which no plain network "
                "reproduces; export from a set sampled with --kind nn"
            )
        net = mset.model(int(rows[0]))
        origin.update(
            model=model_id,
            mode=int(row.get("mode", 0)),
            in_set=in_set,
            val_loss=float(row["val_loss"]),
        )
    extra: dict[str, Any] = {"exported_from": origin}
    unwrap = getattr(net, "unwrap", None)
    if callable(unwrap):
        extra["user_state_dict"] = {k: v.detach().cpu() for k, v in unwrap().state_dict().items()}
    net.train_config = meta.get("train_config", {})
    net.task_name = meta.get("task", {}).get("name", "")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(net, out, meta.get("task") or None, **extra)
    return origin
