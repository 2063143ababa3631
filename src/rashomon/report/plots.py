"""The report's figures: one function per plot, tables in, a matplotlib Figure out.

Figures are built with `matplotlib.figure.Figure` (Agg canvas, no pyplot state), so building a
report never opens a window and is safe in worker processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rashomon import schema as S
from rashomon.report.words import attr_label
from rashomon.schema import find_in_set_column

MAP_COLOR = "#d62728"
SET_COLOR = "#1f77b4"
ACCENT = "#ff7f0e"
GREY = "#7f7f7f"
STYLE = {
    "font.size": 9.5,
    "axes.titlesize": 10.5,
    "axes.titleweight": "bold",
    "axes.labelsize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e6e6e6",
    "grid.linewidth": 0.8,
    "axes.axisbelow": True,
    "legend.frameon": False,
    "legend.fontsize": 8.5,
    "savefig.dpi": 110,
}


def figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **kw):
    """A figure in the report's style and its [nrows, ncols] grid of axes."""
    import matplotlib

    matplotlib.rcParams.update(STYLE)  # type: ignore[arg-type]  # stub: literal keys only
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def save_png(fig: Figure, path: Path) -> Path:
    """Write `fig` as a PNG at `path`; returns the path."""
    fig.savefig(path, format="png", facecolor="white")
    return path


def training_curve(history: pd.DataFrame) -> Figure:
    """Loss per epoch (train and validation) beside validation accuracy."""
    fig, ax = figure(6.4, 3.0, 1, 2)
    ep = history[S.EPOCH]
    a = ax[0, 0]
    for col, color, label in ((S.TRAIN_LOSS, SET_COLOR, "train"), (S.VAL_LOSS, ACCENT, "val")):
        if col in history:
            a.plot(ep, history[col], marker="o", ms=3, color=color, label=label)
    if S.VAL_LOSS in history:
        # the checkpoint training kept (smoothed minimum), else the raw minimum (older runs)
        chosen = history.index[history["selected"].astype(bool)] if "selected" in history else []
        best = chosen[0] if len(chosen) else history[S.VAL_LOSS].idxmin()
        a.axvline(ep[best], color=GREY, ls=":", lw=1)
        a.annotate(
            "kept" if len(chosen) else "best val",
            (ep[best], history[S.VAL_LOSS][best]),
            xytext=(4, 8),
            textcoords="offset points",
            color=GREY,
            fontsize=8,
        )
    a.set(title="Loss per epoch", xlabel="epoch", ylabel="cross-entropy")
    a.legend()
    b = ax[0, 1]
    if S.VAL_ACC in history:
        b.plot(ep, 100 * history[S.VAL_ACC], marker="o", ms=3, color=ACCENT)
    b.set(title="Validation accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for axis in (a, b):  # epochs are whole: no tick at 1.5
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def set_survival(survival: pd.DataFrame, epsilon: float | None) -> Figure:
    """Models kept in the Rashomon set against ε, the audit's ε marked."""
    fig, ax = figure(4.2, 3.0)
    a = ax[0, 0]
    for on, df in survival.groupby(S.ON) if S.ON in survival else [("", survival)]:
        df = df.sort_values("epsilon")
        a.plot(
            df[S.EPSILON],
            df[S.MODELS_IN_SET],
            marker="o",
            color=SET_COLOR,
            label=f"filtered on val {on}" if on else None,
        )
        for e, k in zip(df[S.EPSILON], df[S.MODELS_IN_SET], strict=True):
            a.annotate(
                str(int(k)),
                (e, k),
                xytext=(0, 6),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
    total = int(survival[S.MODELS].max()) if S.MODELS in survival else None
    if total:
        a.axhline(total, color=GREY, ls="--", lw=1)
        a.annotate(
            f"sampled: {total}",
            (survival[S.EPSILON].min(), total),
            xytext=(0, -12),
            textcoords="offset points",
            color=GREY,
            fontsize=8,
        )
        a.set_ylim(0, total * 1.08)
    if epsilon is not None:
        a.axvline(epsilon, color=MAP_COLOR, ls=":", lw=1.2, label=f"audit ε = {epsilon:g}")
    a.set_xscale("log")
    eps = sorted(survival[S.EPSILON].astype(float).unique())
    a.set_xticks(eps, [f"{e:g}" for e in eps])
    a.minorticks_off()
    a.set(
        title="Models in the Rashomon set", xlabel="ε (relative, log scale)", ylabel="models kept"
    )
    a.legend(loc="lower right")
    return fig


def set_distance(per_model: pd.DataFrame, epsilon: float | None) -> Figure:
    """Each model's distance from θ* against its validation loss, the set at `epsilon` marked."""
    fig, ax = figure(4.6, 3.0)
    a = ax[0, 0]
    dist = S.DISTANCE_REL
    # The set at the audit's ε; a table without that column is an error, never another ε.
    col = (
        find_in_set_column(per_model.columns, epsilon, "per_model.csv")
        if epsilon is not None
        else None
    )
    inside = per_model[col].astype(bool).to_numpy() if col else np.ones(len(per_model), bool)
    x, y = per_model[dist], per_model[S.VAL_LOSS]
    a.scatter(x[~inside], y[~inside], s=12, color=GREY, alpha=0.6, label="outside the set")
    a.scatter(x[inside], y[inside], s=12, color=SET_COLOR, alpha=0.8, label="in the set")
    unit = "‖θ − θ*‖ / ‖θ*‖"
    a.set(
        title="Distance from θ* vs validation loss",
        xlabel=f"distance from θ* ({unit})",
        ylabel="validation loss",
    )
    a.legend()
    return fig


def multiplicity_hist(per_sample: pd.DataFrame) -> Figure:
    """Histograms of per-patient disagreement and Rashomon capacity over the test patients."""
    fig, ax = figure(6.6, 2.9, 1, 2)
    a = ax[0, 0]
    d = per_sample[S.DISAGREEMENT].to_numpy(float)
    a.hist(d, bins=np.linspace(0, 1, 21), color=SET_COLOR, edgecolor="white")
    a.set_yscale("log")
    a.set(
        title="Per-patient disagreement",
        xlabel="disagreement 4·p̂·(1−p̂)",
        ylabel="test patients (log scale)",
    )
    b = ax[0, 1]
    if "capacity" in per_sample:
        c = per_sample[S.CAPACITY].to_numpy(float)
        hi = max(2.0, float(np.nanmax(c)))
        b.hist(c, bins=np.linspace(1, hi, 21), color=ACCENT, edgecolor="white")
        b.set_yscale("log")
        b.set(
            title="Per-patient Rashomon capacity",
            xlabel="2^capacity (1 = all agree)",
            ylabel="test patients (log scale)",
        )
    else:
        b.set_axis_off()
    return fig


def convergence(conv: pd.DataFrame) -> Figure:
    """Ambiguity and mean capacity against the number of models audited."""
    fig, ax = figure(6.6, 2.9, 1, 2)
    a = ax[0, 0]
    a.plot(conv[S.MODELS], 100 * conv[S.AMBIGUITY], marker="o", color=SET_COLOR)
    a.set(
        title="Ambiguity vs models audited",
        xlabel="models in the set",
        ylabel="ambiguity (% of patients)",
    )
    a.set_ylim(bottom=0)
    b = ax[0, 1]
    if "mean_capacity" in conv:
        b.plot(conv[S.MODELS], conv[S.MEAN_CAPACITY], marker="o", color=ACCENT)
    b.set(
        title="Mean capacity vs models audited",
        xlabel="models in the set",
        ylabel="mean 2^capacity",
    )
    ticks = sorted(conv[S.MODELS].astype(int).unique())
    for x in (a, b):
        x.set_xscale("log")
        x.set_xticks(ticks, [str(t) for t in ticks])
        x.minorticks_off()
    return fig


def group_bars(per_sample: pd.DataFrame, attributes: dict[str, dict]) -> Figure:
    """Arbitrary test patients (%) per level of each attribute."""
    names = list(attributes)
    fig, ax = figure(3.0 * len(names) + 0.6, 3.0, 1, len(names), sharey=True)
    arbitrary = per_sample[S.AMBIGUOUS].to_numpy(bool)
    overall = 100 * arbitrary.mean()
    for i, name in enumerate(names):
        a = ax[0, i]
        info = attributes[name]
        levels = list(info.get("levels") or [])
        codes = per_sample[name].to_numpy()
        uniq = np.unique(codes)
        shares = [100 * arbitrary[codes == u].mean() for u in uniq]
        counts = [int((codes == u).sum()) for u in uniq]
        labels = [
            f"{levels[int(u)] if 0 <= int(u) < len(levels) else u}\n(n={n})"
            for u, n in zip(uniq, counts, strict=True)
        ]
        bars = a.bar(labels, shares, color=SET_COLOR if not info.get("derived") else "#6baed6")
        for bar, v in zip(bars, shares, strict=True):
            a.annotate(
                f"{v:.0f} %",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
        a.axhline(overall, color=MAP_COLOR, ls="--", lw=1, label="all patients")
        a.set(title=attr_label(name, info), xlabel=name)
        if i == 0:
            a.set_ylabel("arbitrary patients (%)")
            a.legend(loc="upper right")
        a.set_ylim(0, max(max(shares), overall) * 1.25 + 1)
    return fig


def desiderata_strips(per_model: pd.DataFrame, metrics: Sequence[str]) -> Figure:
    """One strip per desideratum: each model of the set on test, the MAP model marked."""
    n = len(metrics)
    ncols = min(4, n)
    nrows = int(np.ceil(n / ncols))
    fig, ax = figure(2.05 * ncols + 0.4, 2.5 * nrows, nrows, ncols)
    is_map = per_model[S.MODEL].to_numpy() == -1
    rng = np.random.default_rng(0)
    for i, metric in enumerate(metrics):
        a = ax[i // ncols, i % ncols]
        v = per_model.loc[~is_map, metric].to_numpy(float)
        jitter = rng.uniform(-0.18, 0.18, len(v))
        if len(v) > 3:
            parts = a.violinplot(v, positions=[0], widths=0.8, showextrema=False)
            for body in parts["bodies"]:
                body.set_facecolor(SET_COLOR)
                body.set_alpha(0.18)
        a.scatter(jitter, v, s=7, color=SET_COLOR, alpha=0.55, lw=0, label="Rashomon set")
        if is_map.any():
            m = float(per_model.loc[is_map, metric].iloc[0])
            a.scatter(
                [0],
                [m],
                s=70,
                marker="D",
                color=MAP_COLOR,
                zorder=3,
                edgecolor="white",
                label="MAP model",
            )
        a.set_xlim(-0.6, 0.6)
        a.set_xticks([])
        a.set_title(metric.replace(":", "\n").replace("[", "\n").rstrip("]"), fontsize=9.5)
        a.grid(axis="x", visible=False)
    for j in range(n, nrows * ncols):
        ax[j // ncols, j % ncols].set_axis_off()
    # below the strips, where it covers no model's dot
    handles, labels = ax[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
    return fig


def selection_gains(selection: pd.DataFrame, name_col: str) -> Figure:
    """Each desideratum's best-in-set model against the MAP model on test: the gain and its
    interval."""
    df = selection.iloc[::-1]
    fig, ax = figure(6.4, 0.42 * len(df) + 1.3)
    a = ax[0, 0]
    y = np.arange(len(df))
    gain = df[S.TEST_GAIN].to_numpy(float)
    colors = []
    for v in df[S.VERDICT].astype(str).str.lower():
        bad = "worse" in v or "loss" in v
        colors.append(MAP_COLOR if bad else ("#2ca02c" if "gain" in v else GREY))
    # Interval and point drawn apart: a table whose point lies outside its interval (written by
    # an older version) is drawn as it is instead of failing.
    lo, hi = df[S.GAIN_CI_LOW].to_numpy(float), df[S.GAIN_CI_HIGH].to_numpy(float)
    a.hlines(y, lo, hi, colors=colors, lw=1.5)
    a.scatter(np.r_[lo, hi], np.r_[y, y], marker="|", s=60, c=colors + colors)
    a.scatter(gain, y, color=colors, s=28, zorder=3)
    a.axvline(0, color="black", lw=0.8)
    a.set_yticks(y, df[name_col].astype(str))
    a.set(
        title="Best-in-set model vs MAP model on test",
        xlabel="test gain (positive = better), 95 % interval",
    )
    a.grid(axis="y", visible=False)
    return fig


def ensemble_curves(ens: pd.DataFrame) -> Figure:
    """Coverage and residual ambiguity against k, one line per abstention rule and threshold
    (for the first combine rule only, when the table holds several)."""
    from rashomon.report.summary import rule_label

    if S.COMBINE in ens and ens[S.COMBINE].nunique() > 1:
        ens = ens[ens[S.COMBINE] == ens[S.COMBINE].iloc[0]]
    fig, ax = figure(6.8, 3.0, 1, 2)
    cmap = __import__("matplotlib").colormaps["viridis"]
    keys = [c for c in (S.RULE, S.THRESHOLD) if c in ens]
    groups = list(ens.groupby(keys, dropna=False, sort=False)) if keys else [((), ens)]
    for i, (key, df) in enumerate(groups):
        key = key if isinstance(key, tuple) else (key,)
        rule = key[0] if S.RULE in ens else "share"
        thr = key[-1] if S.THRESHOLD in ens else None
        label = rule_label(rule, thr)
        color = GREY if label == "no abstention" else cmap(i / max(1, len(groups) - 1) * 0.9)
        ls = "--" if label == "no abstention" else "-"
        df = df.sort_values("k")
        ax[0, 0].plot(
            df[S.K], 100 * df[S.COVERAGE], marker="o", ms=3, color=color, ls=ls, label=label
        )
        ax[0, 1].plot(df[S.K], 100 * df[S.RESIDUAL_AMBIGUITY], marker="o", ms=3, color=color, ls=ls)
    ax[0, 0].set(
        title="Coverage (patients decided)", xlabel="ensemble size k", ylabel="coverage (%)"
    )
    ax[0, 1].set(
        title="Residual ambiguity",
        xlabel="ensemble size k",
        ylabel="decided patients that differ (%)",
    )
    ax[0, 0].legend(fontsize=7.5, loc="lower left")
    ks = sorted(ens[S.K].unique())
    for a in ax[0]:
        a.set_xscale("log")
        a.set_xticks(ks, [str(int(k)) for k in ks])
        a.minorticks_off()
    return fig


def lsi_scatter(lsi: pd.DataFrame) -> Figure:
    """Laplace Sample Information against disagreement on the training samples."""
    fig, ax = figure(4.6, 3.1)
    a = ax[0, 0]
    x = lsi[S.LSI].to_numpy(float)
    y = lsi[S.DISAGREEMENT].to_numpy(float)
    a.scatter(x, y, s=5, alpha=0.35, color=SET_COLOR, lw=0)
    if (x > 0).all() and x.max() / max(x.min(), 1e-12) > 100:
        a.set_xscale("log")
    from scipy.stats import spearmanr

    # Undefined when either side is constant (a set that never disagrees on a training image).
    defined = len(x) > 2 and np.ptp(x) > 0 and np.ptp(y) > 0
    rho = spearmanr(x, y).statistic if defined else float("nan")
    a.set(
        title=f"LSI vs disagreement (Spearman ρ = {rho:.2f})",
        xlabel="Laplace Sample Information",
        ylabel="disagreement on the sample",
    )
    return fig


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str], ncols: int = 8) -> Figure:
    """Images in a grid of `ncols` columns, each with its title."""
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, ax = figure(1.15 * ncols, 1.55 * nrows, nrows, ncols)
    for i in range(nrows * ncols):
        a = ax[i // ncols, i % ncols]
        a.set_axis_off()
        if i < n:
            a.imshow(
                images[i], cmap="gray" if images[i].ndim == 2 else None, interpolation="nearest"
            )
            a.set_title(titles[i], fontsize=7.5, fontweight="normal", linespacing=1.1)
    return fig


def patient_ranges(
    rows: pd.DataFrame,
    images: Sequence[np.ndarray] | None,
    positive: str,
    threshold: float = 0.5,
    low: str = S.VPR_LOW,
    high: str = S.VPR_HIGH,
) -> Figure:
    """One row per patient: its image, the range of P(positive) over the Rashomon set (columns
    `low`, `high`: a bar) with the MAP model's probability (`map_prob`: a diamond, binary
    tasks), and a caption (`rows["caption"]`)."""
    import matplotlib

    matplotlib.rcParams.update(STYLE)  # type: ignore[arg-type]  # stub: literal keys only
    n = len(rows)
    has_img = images is not None
    fig = Figure(figsize=(8.2, 0.56 * n + 0.9), layout="constrained")
    ratios = ([0.8] if has_img else []) + [7, 2.6]
    gs = fig.add_gridspec(n, len(ratios), width_ratios=ratios)
    bar_axes: list[Axes] = []
    for i, (_, r) in enumerate(rows.iterrows()):
        if images is not None:
            ia = fig.add_subplot(gs[i, 0])
            ia.imshow(images[i], cmap="gray", interpolation="nearest")
            ia.set_axis_off()
        a = fig.add_subplot(gs[i, -2], sharex=bar_axes[0] if bar_axes else None)
        bar_axes.append(a)
        lo, hi = float(r[low]), float(r[high])
        a.barh([0], [hi - lo], left=[lo], height=0.55, color=SET_COLOR, alpha=0.35)
        a.plot([lo, hi], [0, 0], "|", color=SET_COLOR, ms=12, mew=2)
        if S.MAP_PROB in r and pd.notna(r[S.MAP_PROB]):
            a.plot([r[S.MAP_PROB]], [0], "D", color=MAP_COLOR, ms=6)
        a.axvline(threshold, color="black", lw=0.8, ls="--")
        a.set_yticks([])
        a.set_xlim(0, 1)
        a.set_ylim(-0.6, 0.6)
        a.grid(axis="y", visible=False)
        if i < n - 1:
            a.tick_params(labelbottom=False)
        ta = fig.add_subplot(gs[i, -1])
        ta.set_axis_off()
        ta.text(
            0.0, 0.5, r["caption"], va="center", ha="left", fontsize=8.5, transform=ta.transAxes
        )
    bar_axes[0].set_title(
        f"Viable range of P({positive}) across the Rashomon set", fontsize=10, loc="left"
    )
    bar_axes[-1].set_xlabel(f"predicted probability of {positive}")
    return fig


def robustness_corruptions(rob: pd.DataFrame, metric: str) -> Figure:
    """`metric` against corruption severity, one panel per corruption: the set's band and the MAP
    model."""
    corrs = list(dict.fromkeys(rob[S.CORRUPTION]))
    ncols = min(4, len(corrs))
    nrows = int(np.ceil(len(corrs) / ncols))
    fig, ax = figure(2.3 * ncols + 0.4, 2.4 * nrows, nrows, ncols, sharey=True)
    for i, c in enumerate(corrs):
        a = ax[i // ncols, i % ncols]
        _band(a, rob[rob[S.CORRUPTION] == c], scale=100)
        a.set_title(c.replace("_", " "))
        a.set_xlabel("severity")
        if i % ncols == 0:
            a.set_ylabel(f"{metric} (%)")
        if i == 0:
            a.legend(fontsize=7.5)
    for j in range(len(corrs), nrows * ncols):
        ax[j // ncols, j % ncols].set_axis_off()
    return fig


def robustness_attacks(rob: pd.DataFrame, metric: str) -> Figure:
    """`metric` against the attack budget ε, one panel per attack: the set's band and the MAP
    model."""
    attacks = list(dict.fromkeys(rob[S.CORRUPTION]))
    fig, ax = figure(3.2 * len(attacks) + 0.4, 2.8, 1, len(attacks), sharey=True)
    for i, c in enumerate(attacks):
        a = ax[0, i]
        df = rob[rob[S.CORRUPTION] == c].copy()
        df[S.SEVERITY] = df[S.SEVERITY].astype(float) * 255
        _band(a, df, scale=100)
        a.set_title(c.upper())
        a.set_xlabel("ε (× 1/255, L∞)")
        if i == 0:
            a.set_ylabel(f"{metric} (%)")
            a.legend(fontsize=7.5)
    return fig


def _band(a, df: pd.DataFrame, scale: float) -> None:
    is_map = df[S.MODEL] == -1
    df = df.assign(severity=df[S.SEVERITY].astype(float))
    s = df[~is_map].groupby(S.SEVERITY)[S.VALUE]
    x = s.min().index.to_numpy(float)
    if len(x):
        a.fill_between(
            x, scale * s.min(), scale * s.max(), color=SET_COLOR, alpha=0.2, label="set (min–max)"
        )
        a.plot(x, scale * s.median(), color=SET_COLOR, lw=1, label="set median")
    m = df[is_map].sort_values("severity")
    if len(m):
        a.plot(
            m[S.SEVERITY].astype(float),
            scale * m[S.VALUE],
            marker="o",
            ms=3,
            color=MAP_COLOR,
            label="MAP model",
        )


def axis_study(study: pd.DataFrame, axis: str) -> Figure:
    """Sweep page: every headline metric against one grid axis (mean ± std over the other
    cells), one small panel each."""
    metrics = list(dict.fromkeys(study[S.METRIC]))
    ncols = min(4, len(metrics))
    nrows = int(np.ceil(len(metrics) / ncols))
    fig, ax = figure(3.2 * ncols, 2.6 * nrows, nrows, ncols)
    for i, metric in enumerate(metrics):
        a = ax[i // ncols, i % ncols]
        s = study[study[S.METRIC] == metric]
        x = pd.to_numeric(s[axis])
        a.errorbar(
            x, s["mean"], yerr=s["std"].fillna(0), marker="o", capsize=3, color=SET_COLOR, ms=4
        )
        a.set_title(metric)
        a.set_xlabel(axis)
    for j in range(len(metrics), nrows * ncols):
        ax[j // ncols, j % ncols].set_axis_off()
    return fig


def disagreement_vs_truth(patients: pd.DataFrame, truth_col: str, others: Sequence[str]) -> Figure:
    """Compare page: per-patient disagreement of each set against the ground truth's (jittered
    so that tied patients stay visible), one panel per set."""
    ncols = min(3, len(others))
    nrows = int(np.ceil(len(others) / ncols))
    fig, ax = figure(3.3 * ncols, 3.0 * nrows, nrows, ncols)
    rng = np.random.default_rng(0)
    for i, col in enumerate(others):
        a = ax[i // ncols, i % ncols]
        jitter = rng.uniform(-0.01, 0.01, (2, len(patients)))
        a.scatter(
            patients[truth_col] + jitter[0],
            patients[col] + jitter[1],
            s=6,
            alpha=0.5,
            color=SET_COLOR,
        )
        a.plot([0, 1], [0, 1], color=GREY, lw=0.8)
        a.set_xlabel("retrained set (ground truth)")
        a.set_ylabel("this set")
        a.set_title(col.removeprefix("disagreement:"), fontsize=8.5)
    for j in range(len(others), nrows * ncols):
        ax[j // ncols, j % ncols].set_axis_off()
    fig.suptitle("Per-patient disagreement: set vs ground truth", fontsize=10)
    return fig


def fairness_front(
    values: pd.DataFrame,
    post: pd.DataFrame | None,
    gap: str,
    map_point: tuple[float, float],
    split: str = "val",
) -> Figure:
    """Accuracy against one fairness desideratum for every model of the set (selection_values),
    the trained model, and fairlearn's ThresholdOptimizer on the trained model and on set members
    (postprocess.csv), on `split`."""
    col = S.VAL if split == "val" else S.TEST
    wide = values.pivot_table(index=S.MODEL, columns=S.DESIDERATUM, values=col)
    fig, ax = figure(6.0, 4.2)
    a = ax[0, 0]
    a.scatter(wide[gap], wide["accuracy"], s=10, color=GREY, alpha=0.6, label="models of the set")
    if post is not None and len(post):
        p = post[post[S.SPLIT] == split].pivot_table(
            index=S.MODEL, columns=S.DESIDERATUM, values=S.VALUE
        )
        if gap in p and "accuracy" in p:
            members = p.drop(index=-1, errors="ignore")
            a.scatter(
                members[gap], members["accuracy"], s=14, marker="s", color="#9467bd", alpha=0.7,
                label="set member + ThresholdOptimizer",
            )  # fmt: skip
            if -1 in p.index:
                a.scatter(
                    p.loc[-1, gap], p.loc[-1, "accuracy"], s=70, marker="D", color="#9467bd",
                    edgecolor="black", label="trained model + ThresholdOptimizer", zorder=4,
                )  # fmt: skip
    a.scatter(*map_point, s=80, marker="*", color=MAP_COLOR, label="trained model", zorder=5)
    a.set(xlabel=gap, ylabel="accuracy", title=f"Accuracy against {gap} ({split})")
    a.legend(fontsize=7, loc="best")
    return fig


def ambiguity_growth(growth: pd.DataFrame, truth: str, sets: Sequence[str]) -> Figure:
    """Validity: ambiguity against the number of models, one panel per set. Each panel draws
    the retrained set's curve (k = 1 … its size) and the set's (k = 1 … its size), the expected
    share of patients flagged by k models with its 5–95 % band over random draws of k models
    (growth.csv of `rashomon compare` / `rashomon validate`); the dotted line is the set's
    ambiguity at full size, the mark where the retrained curve first reaches it."""
    from matplotlib.ticker import FuncFormatter

    ncols = min(3, len(sets))
    nrows = int(np.ceil(len(sets) / ncols))
    fig, ax = figure(3.6 * ncols, 3.0 * nrows, nrows, ncols)
    ref = growth[growth["set"] == truth].sort_values("k")
    for i, name in enumerate(sets):
        a = ax[i // ncols, i % ncols]
        cur = growth[growth["set"] == name].sort_values("k")
        for curve, color, label in ((ref, GREY, "retrained"), (cur, SET_COLOR, "this set")):
            a.plot(curve["k"], curve["ambiguity"], color=color, lw=1.6, label=label)
            if curve["ambiguity_p05"].notna().any():
                a.fill_between(
                    curve["k"],
                    curve["ambiguity_p05"],
                    curve["ambiguity_p95"],
                    color=color,
                    alpha=0.2,
                    lw=0,
                )
        full = float(cur["ambiguity"].iloc[-1])
        a.axhline(full, color=SET_COLOR, lw=0.8, ls=":")
        reached = ref[ref["ambiguity"] >= full - 1e-12]
        if len(reached) and full > 0:
            k = float(reached["k"].iloc[0])
            a.plot([k], [full], "o", color=ACCENT, ms=5, label=f"retrained k = {k:g}")
        a.set_xscale("log")
        a.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        # within a decade the log axis has no major tick past 1: label the minor ones then
        few = max(cur["k"].max(), ref["k"].max()) < 20
        a.xaxis.set_minor_formatter(FuncFormatter(lambda x, _, few=few: f"{x:g}" if few else ""))
        a.set_xlabel("models drawn (k)")
        a.set_ylabel("ambiguity (share flagged)")
        a.set_title(name, fontsize=8.5)
        a.legend(loc="lower right")
    for j in range(len(sets), nrows * ncols):
        ax[j // ncols, j % ncols].set_axis_off()
    fig.suptitle("Ambiguity against the number of models", fontsize=10)
    return fig


def cost_validity_frontier(frontier: pd.DataFrame) -> Figure:
    """Validity study: each set's seconds (log x) against its size-matched flag recall over the
    ceiling (y), coloured by its precision over the ceiling; sets on the frontier ringed; the
    ground truth's cost as a dashed line (frontier.csv of `rashomon compare`)."""
    fig, ax = figure(6.4, 4.0)
    a = ax[0, 0]
    sets = frontier[~frontier["ground_truth"].astype(bool)].dropna(subset=["flag_recall_ratio"])
    points = a.scatter(
        sets["seconds"],
        sets["flag_recall_ratio"],
        c=sets["flag_precision_ratio"],
        cmap="viridis",
        vmin=0,
        vmax=max(1.2, float(sets["flag_precision_ratio"].max())),
        s=36,
        zorder=3,
    )
    best = sets[sets["on_frontier"].astype(bool)] if "on_frontier" in sets else sets.iloc[:0]
    a.scatter(
        best["seconds"],
        best["flag_recall_ratio"],
        s=110,
        facecolors="none",
        edgecolors=ACCENT,
        lw=1.2,
        zorder=4,
    )
    for _, r in sets.iterrows():
        a.annotate(
            str(r["set"]),
            (r["seconds"], r["flag_recall_ratio"]),
            fontsize=6.5,
            xytext=(3, 3),
            textcoords="offset points",
        )
    truth = frontier[frontier["ground_truth"].astype(bool)]["seconds"].dropna()
    if len(truth):
        a.axvline(float(truth.iloc[0]), color=GREY, ls="--", lw=1)
    a.axhline(1.0, color=GREY, ls=":", lw=1)
    a.set_xscale("log")
    a.set(xlabel="seconds (log)", ylabel="flag recall / ceiling (size-matched)")
    fig.colorbar(points, ax=a, label="flag precision / ceiling")
    return fig
