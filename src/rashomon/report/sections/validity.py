"""How close is the set to retraining: `rashomon validate`'s size-matched figures on this task
(validate/summary.json), the ambiguity growth curves (validate/growth.csv) and best-in-set
selection on the set and on the retrained truth side by side (validate/selection_vs_set.csv),
or the validity study's figure for this kind of set and a pointer to the command."""

from __future__ import annotations

from typing import Any

import pandas as pd

from rashomon import schema as S
from rashomon.report import plots
from rashomon.report.fairness import SELECTION_VS_SET_FILE, truth_answer
from rashomon.report.kit import esc, note, table_html
from rashomon.report.sections.base import Builder, SectionSpec
from rashomon.report.sections.frames import selection_vs_set_table, with_label_names
from rashomon.report.study import dataset_key, validity_line
from rashomon.report.summary import (
    figure,
    kept_models,
    matched_figures,
    pct,
    set_name,
    validate_sentences,
)

GROWTH_FILE = S.GROWTH_FILE
UNDEFINED = "undefined"


def _value(v: dict[str, Any], key: str, digits: int = 2) -> str:
    x = figure(v, key)
    return f"{x:.{digits}f}" if x is not None else UNDEFINED


def _share(x: float | None) -> str:
    return pct(x, 1) if x is not None else UNDEFINED


def _mean_sd(mean: float | None, sd: float | None) -> str:
    if mean is None:
        return UNDEFINED
    return f"{mean:.2f} ± {sd:.2f}" if sd is not None else f"{mean:.2f}"


def flag_rows(v: dict[str, Any], set_models: int | None) -> pd.DataFrame:
    """The flag figures of validate/summary.json: the set's h models and the ceiling (mean ± sd
    over the rounds), their ratio, and the full-size figures in a row of their own."""
    h, t = int(v["matched_models"]), int(v["retrained_in_set"])
    rounds = v.get("matched_rounds")
    drawn = ", drawn with replacement" if v.get("matched_with_replacement") else ""
    ceiling = v.get("ceiling") or {}  # the split-half record: the same halves, with their sd
    whole = f"all {set_models} models" if set_models else "the whole set"
    rows = [
        (
            f"this set: {h} models against {h} retrained (mean ± sd over {rounds} rounds{drawn})",
            *(
                _mean_sd(figure(v, f"{name}_matched"), figure(v, f"{name}_matched_sd"))
                for name in ("flag_recall", "flag_precision")
            ),
        ),
        (
            f"ceiling: two disjoint halves of {h} retrained networks",
            *(
                _mean_sd(figure(v, f"{name}_ceiling"), figure(ceiling, f"{name}_sd"))
                for name in ("flag_recall", "flag_precision")
            ),
        ),
        (
            "ratio: this set / ceiling",
            _value(v, "flag_recall_ratio"),
            _value(v, "flag_precision_ratio"),
        ),
        (
            f"full size (not comparable across set sizes): {whole} against all {t} retrained",
            _value(v, "flag_recall_full"),
            _value(v, "flag_precision_full"),
        ),
    ]
    return pd.DataFrame(rows, columns=["", "flag recall", "flag precision"])


def other_rows(v: dict[str, Any]) -> pd.DataFrame:
    """The rest of validate/summary.json as (what, value) rows: the retrained set, per-patient
    flip rates and ambiguity."""
    t = int(v["retrained_in_set"])
    k = figure(v, "retrained_models_for_ambiguity")
    reach = f"{k:g}" if k is not None else f"more than all {t}"
    rows = [
        ("retrained networks (within ε)", f"{v.get('retrained')} ({t})"),
        ("patients the retrained networks flag (any of them)", str(v.get("retrained_flags"))),
        (
            "flip rates: Spearman ρ of the set's and the retrained set's",
            _value(v, "flip_rate_spearman"),
        ),
        (
            "flip rates: average precision of the set's for the retrained flags",
            f"{_value(v, 'flip_rate_ap')} (base rate {_value(v, 'flip_rate_ap_base_rate')})",
        ),
        (
            "ambiguity: the whole set / all retrained networks",
            f"{_value(v, 'ambiguity_set', 3)} / {_value(v, 'ambiguity_retrained', 3)}",
        ),
        (
            f"ambiguity of {t} models drawn from the set (expected)",
            _value(v, "ambiguity_matched", 3),
        ),
        ("retrained networks that show the whole set's ambiguity", reach),
    ]
    return pd.DataFrame(rows, columns=["", "value"])


def growth_caption(v: dict[str, Any], set_models: int | None) -> str:
    """The growth plot's caption: how many retrained networks show this much arbitrariness."""
    t = int(v["retrained_in_set"])
    k = figure(v, "retrained_models_for_ambiguity")
    mine, theirs = _share(figure(v, "ambiguity_set")), _share(figure(v, "ambiguity_retrained"))
    whole = f"the {set_models} models of this set" if set_models else "this set"
    if k is None:
        answer = f"More than the {t} retrained here: all of them flag {theirs}, {whole} {mine}"
    elif k == 0:
        answer = "None: this set flags no test patient"
    else:
        answer = (
            f"{k:g}: the retrained curve reaches the dotted line, {whole}'s ambiguity "
            f"({mine}), at k = {k:g} (the dot)"
        )
    return (
        "How many retrained networks would you need to see this much arbitrariness? "
        f"{esc(answer)}. Each curve is the expected share of test patients flagged by k models "
        "drawn at random from a set, with its 5–95 % band over random draws: grey the "
        "retrained networks, blue this set. Read the set at the retrained set's size, not at its "
        "own: a larger set flags more patients whatever its quality."
    )


def _growth_figure(b: Builder, v: dict[str, Any], set_models: int | None) -> str:
    d = b.data
    path = d.run_dir / "validate" / GROWTH_FILE
    if not path.exists():
        return note(
            f"<code>validate/{GROWTH_FILE}</code> is missing: re-run <code>rashomon validate "
            f"{esc(str(d.run_dir))} --force</code> for the ambiguity growth curves."
        )
    growth = pd.read_csv(path)
    truth = growth.loc[growth["ground_truth"].astype(bool), "set"].unique()
    sets = growth.loc[~growth["ground_truth"].astype(bool), "set"].unique()
    if len(truth) != 1 or len(sets) != 1:
        return note(f"<code>validate/{GROWTH_FILE}</code> holds no curve of this set to draw.")
    name = set_name(d.sample)  # the panel's title: the set as the headline names it
    growth["set"] = growth["set"].replace({sets[0]: name})
    fig = plots.ambiguity_growth(growth, truth[0], [name])
    return b.figure(
        fig,
        "validity_growth",
        growth_caption(v, set_models),
        alt="ambiguity against the number of models, this set and the retrained networks",
    )


INTRO = (
    "<p>The set against networks retrained like the trained one (seeds differ). A patient is "
    "flagged when some model of a set changes the trained model's label, so a larger set flags "
    "more patients whatever its quality: the set is read at the same number of models, h, half "
    "the retrained networks within ε. In each round, h of the set's models are drawn at random "
    "and a random half of the retrained networks is the reference: recall is the share of the "
    "half's flagged patients the set's h models flag too, precision the share of the set's "
    "flags the half shares. Two disjoint retrained halves against each other give the ceiling, "
    "what retraining again would agree on; the ratio is the set's figure over the ceiling's "
    "(1: as good as retraining). The flip rate of a patient is the share of a set's models that "
    "change its label.</p>"
)


def stale_note(run_dir: Any, why: str) -> str:
    """The section in place of figures that are not the current set's."""
    run = esc(str(run_dir))
    return (
        f"<p><b>Out of date.</b> The validate stage's figures are not this set's: {esc(why)}. "
        f"They are not shown; re-run <code>rashomon validate {run}</code>, then "
        f"<code>rashomon report {run}</code>.</p>"
    )


def build(b: Builder) -> str:
    """The validity section (HTML): the set against the retrained truth (`rashomon validate`)."""
    d = b.data
    if "validate" in d.stale:
        return stale_note(d.run_dir, d.stale["validate"])
    v = d.summaries.get("validate")
    if not v:
        cfg_d, cfg_t = d.config.get("data") or {}, d.config.get("train") or {}
        line = validity_line(
            dataset_key(cfg_d),
            str(cfg_t.get("arch", "")),
            d.sample.summary or {},
            cfg_t,
        )
        text = (esc(line) + " " if line else "") + (
            f"Check it on this task: <code>rashomon validate {esc(str(d.run_dir))} --retrain "
            "30</code> retrains networks like the trained one and measures how many of their "
            "arbitrary patients this set finds at the same number of models."
        )
        return f"<p>{text}</p>"
    if not v.get("retrained_in_set") or not v.get("retrained_flags") or not matched_figures(v):
        return "".join(f"<p>{esc(s)}</p>" for s in validate_sentences(v))
    set_models = kept_models(d)[0]
    return (
        INTRO
        + table_html(flag_rows(v, set_models), 2)
        + table_html(other_rows(v), 3)
        + _growth_figure(b, v, set_models)
        + selection_on_truth(b, v)
    )


def selection_on_truth(b: Builder, v: dict[str, Any]) -> str:
    """Best-in-set selection on the set and on the retrained truth side by side
    (validate/selection_vs_set.csv), and the fairness hypothesis answered on the truth."""
    d = b.data
    side = d.validate_table(SELECTION_VS_SET_FILE)
    if side is None or not len(side):
        return note(
            f"<code>validate/{SELECTION_VS_SET_FILE}</code> is missing: re-run <code>rashomon "
            f"validate {esc(str(d.run_dir))} --force</code> after <code>rashomon decide</code> "
            "to select among the retrained networks as among the set's models."
        )
    retrained = v.get("retrained_in_set")
    answer = truth_answer(d, side, int(retrained) if retrained else None)
    parts = [
        "<h3>Selection on the set and on the retrained truth</h3>",
        "<p>The same best-in-set selection (chosen on validation, its gain over the trained "
        "model on test, Holm-adjusted, against the random control) among the set's models and "
        "among the retrained networks within ε, which are equally valid by construction. A gain "
        "the truth shows and the set does not means the set understates the choice; the "
        "reverse, that the set's gain is an artefact of how it was drawn.</p>",
    ]
    if answer is not None:
        parts.append(f"<p><b>{esc(answer.sentence)}</b></p>")
    parts.append(table_html(selection_vs_set_table(with_label_names(side, d.labels)), 3))
    return "".join(parts)


VALIDITY = SectionSpec("validity", "How close is the set to retraining?", build)
