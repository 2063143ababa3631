"""The source registry: a source written outside the package plugs in with a few lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from rashomon.errors import RashomonError
from rashomon.sets import SourceOptions, available_sources, register_source
from rashomon.sets.base import ModelSet
from rashomon.sets.registry import (
    BuildContext,
    build_model_set,
    get_source,
    source_options,
    unregister_source,
)


class JitterOptions(SourceOptions):
    scale: float = 0.05


def build_jitter(model, task, options: JitterOptions, context: BuildContext) -> ModelSet:
    """Gaussian jitter of the last layer: head weights θ* + scale·|θ*|·z, z ~ N(0, 1)."""
    names = [f"head.{n}" for n, _ in model.head.named_parameters()]
    theta = torch.cat([p.detach().flatten() for p in model.head.parameters()])
    gen = torch.Generator().manual_seed(context.seed)
    z = torch.randn(context.models, theta.numel(), generator=gen)
    return ModelSet.from_vectors(
        model, theta + options.scale * theta.abs().mean() * z, names, source="jitter"
    )


@pytest.fixture
def jitter():
    register_source("jitter", build_jitter, JitterOptions)
    yield
    unregister_source("jitter")


def test_builtin_sources_are_listed():
    assert {"laplace", "riemannian", "retrain", "dropout"} <= set(available_sources())


def test_wrong_option_names_the_source_and_its_fields(jitter):
    with pytest.raises(RashomonError, match=r"source 'jitter': no option 'sigma'.*scale"):
        source_options("jitter", {"sigma": 1})
    with pytest.raises(RashomonError, match=r"unknown set source 'jiter'.*jitter"):
        get_source("jiter")
    with pytest.raises(RashomonError, match="already registered"):
        register_source("jitter", lambda *a: None, JitterOptions)


def test_a_plain_pydantic_options_model_is_refused_when_it_registers():
    from pydantic import BaseModel

    class Plain(BaseModel):
        scale: float = 0.05

    with pytest.raises(RashomonError) as caught:
        register_source("plain", build_jitter, Plain)
    message = str(caught.value)
    assert "\n" not in message
    assert "(Plain) is a plain pydantic model; subclass rashomon.sets.SourceOptions" in message
    with pytest.raises(RashomonError, match="is not an options model"):
        register_source("plain", build_jitter, dict)  # type: ignore[arg-type]
    assert "plain" not in available_sources()


@pytest.mark.parametrize(
    "builder",
    [lambda model, task, options: None, lambda model, task, options, context, extra: None],
)
def test_a_builder_of_the_wrong_arity_is_refused_when_it_registers(builder):
    with pytest.raises(RashomonError, match=r"a builder takes \(model, task, options, context\)"):
        register_source("wrong-arity", builder, JitterOptions)
    # keyword defaults and *args are fine
    register_source("flexible", lambda *args, **kw: None, JitterOptions)
    unregister_source("flexible")


def test_an_epsilon_aimed_source_gets_the_run_epsilon_once():
    from rashomon.sets.registry import resolve_options

    plain = resolve_options("laplace", {}, 0.05)
    assert not plain.aims_at_epsilon() and plain.target_epsilon is None
    aimed = resolve_options("laplace", {"scale": "boundary"}, 0.05)
    assert aimed.target_epsilon == 0.05
    given = resolve_options("laplace", {"scale": "epsilon", "target_epsilon": 0.1}, 0.05)
    assert given.target_epsilon == 0.1 and given.with_epsilon(0.3) is given
    # multimode picks its modes within ε whatever the scale: it always aims at ε
    assert resolve_options("multimode", {}, 0.03).target_epsilon == 0.03
    assert resolve_options("laplace", {"prior": "1e-4"}, 0.05).prior == pytest.approx(1e-4)
    with pytest.raises(RashomonError, match=r"source 'laplace': option 'prior'.*positive"):
        resolve_options("laplace", {"prior": -1}, 0.05)


def test_builder_output_is_checked(jitter, tiny_task):
    from rashomon.models import build_model

    register_source("broken", lambda *a: 42, SourceOptions)
    net = build_model("cnn", 1, 2, width=0.25)
    try:
        with pytest.raises(RashomonError, match="returned int, not a ModelSet"):
            build_model_set("broken", net, tiny_task, {}, BuildContext(models=3))
    finally:
        unregister_source("broken")


def test_registered_source_runs_end_to_end_into_a_report(jitter, tiny_root, tmp_path):
    from rashomon.cli import app

    out = tmp_path / "run"
    args = [
        "run",
        "--dataset",
        "breastmnist",
        "--data-root",
        str(tiny_root),
        "--arch",
        "cnn",
        "--width",
        "0.25",
        "--epochs",
        "2",
        "--source",
        "jitter",
        "-o",
        "scale=0.02",
        "--models",
        "30",
        "--epsilon",
        "0.5",
        "--out",
        str(out),
        "--no-progress",
    ]
    config = tmp_path / "fast.yaml"
    config.write_text(
        "evaluate: {corruptions: [], attacks: [], bootstrap: 20}\n"
        "decide: {constrained_baseline: false, lsi: false, ensemble_sizes: [1, 3]}\n"
    )
    result = CliRunner().invoke(app, [args[0], str(config), *args[1:]])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "sample" / "summary.json").read_text())
    assert summary["source"] == "jitter" and summary["options"] == {"scale": 0.02}
    mset = ModelSet.load(out / "sample" / "set.pt")
    assert len(mset) == 30 and mset.head_only and mset.source == "jitter"
    # the jitter has the size the option asked for
    scale = (mset.deviations().std() / mset.theta_map.abs().mean()).item()
    assert 0.015 < scale < 0.025
    html = (out / "report" / "report.html").read_text()
    assert "jitter" in html
    per_model = pd.read_csv(out / "sample" / "per_model.csv")
    assert (per_model["mode"] == 0).all() and len(per_model) == 30


def test_entry_point_plugin_is_found_by_the_cli(tmp_path):
    """A package registering through the `rashomon.sources` entry-point group, as pytest
    plugins do: a dist-info folder on the path and a module that registers on import."""
    site = tmp_path / "site"
    (site / "fake_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "fake_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-plugin\nVersion: 0.1\n"
    )
    (site / "fake_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[rashomon.sources]\nplugged = fake_plugin\n"
    )
    (site / "fake_plugin.py").write_text(
        "from rashomon.sets import SourceOptions, register_source\n"
        "class Opts(SourceOptions):\n    width: int = 3\n"
        "def build(model, task, options, context):\n    raise NotImplementedError\n"
        "register_source('plugged', build, Opts)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }
    code = (
        "from rashomon.sets.registry import source_names, source_options\n"
        "print(source_names())\nprint(source_options('plugged', {'width': 5}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "'plugged'" in out and "width=5" in out
    helped = subprocess.run(
        [sys.executable, "-m", "rashomon.cli", "sample", "--help"],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        check=True,
    ).stdout
    assert "plugged" in helped and "laplace" in helped


def test_a_plugin_with_a_plain_pydantic_options_model_is_one_line_in_the_cli(tiny_root, tmp_path):
    """An entry-point plugin whose options model is a plain pydantic model: refused when it
    registers, so `rashomon run --source` ends with one line and exit 2, before training."""
    from tests.test_cli import assert_one_line_error, rashomon

    site = tmp_path / "site"
    (site / "plain_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "plain_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: plain-plugin\nVersion: 0.1\n"
    )
    (site / "plain_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[rashomon.sources]\nplain = plain_plugin\n"
    )
    (site / "plain_plugin.py").write_text(
        "from pydantic import BaseModel\nfrom rashomon.sets import register_source\n"
        "class Opts(BaseModel):\n    width: int = 3\n"
        "def build(model, task, options, context):\n    raise NotImplementedError\n"
        "register_source('plain', build, Opts)\n"
    )
    pythonpath = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    out = tmp_path / "run"
    proc = rashomon(
        "run",
        "--dataset",
        "breastmnist",
        "--source",
        "plain",
        "--out",
        str(out),
        root=tiny_root,
        env_extra={"PYTHONPATH": pythonpath},
    )
    assert proc.returncode == 2
    assert_one_line_error(proc, r"source 'plain' \(Opts\) is a plain pydantic model")
    assert not (out / "train").exists()


def test_two_mode_set_predicts_as_its_parts_and_round_trips(tiny_task, tmp_path):
    import rashomon as rs

    nets = [
        rs.train(tiny_task, "cnn", epochs=1, seed=s, arch_options={"width": 0.25}, progress=False)
        for s in (0, 1)
    ]
    parts = [rs.laplace(net, tiny_task, prior=1.0).sample(5, seed=s) for s, net in enumerate(nets)]
    both = ModelSet.concat(parts)
    assert both.num_modes == 2 and len(both) == 10 and both.head_only
    np.testing.assert_array_equal(both.modes.numpy(), [0] * 5 + [1] * 5)
    x = tiny_task.test.x
    joint = both.predict(x)
    torch.testing.assert_close(joint[:5], parts[0].predict(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(joint[5:], parts[1].predict(x), rtol=0, atol=1e-6)
    # each model is the network its mode's base with its own head
    torch.testing.assert_close(
        both.model(7)(x).softmax(-1), parts[1].model(2)(x).softmax(-1), rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(
        both.distances()["l2"],
        np.concatenate([p.distances()["l2"] for p in parts]),
        rtol=1e-6,
    )
    both.save(tmp_path / "set.pt")
    again = ModelSet.load(tmp_path / "set.pt", task=tiny_task)
    assert again.num_modes == 2
    torch.testing.assert_close(again.predict(x), joint, rtol=0, atol=0)
    # a subset keeps the modes (mode 0 stays the audited model)
    sub = both.subset([6, 1])
    np.testing.assert_array_equal(sub.modes.numpy(), [1, 0])
    torch.testing.assert_close(sub.predict(x), joint[[6, 1]], rtol=0, atol=1e-6)
    # a tight memory budget gives the same predictions (the budget holds per mode)
    torch.testing.assert_close(both.predict(x, max_memory="70MB"), joint, rtol=0, atol=1e-6)


def test_concat_of_sets_around_one_network_keeps_one_mode(tiny_task):
    import rashomon as rs

    net = rs.train(tiny_task, "cnn", epochs=1, seed=0, arch_options={"width": 0.25}, progress=False)
    post = rs.laplace(net, tiny_task, prior=1.0)
    joined = ModelSet.concat([post.sample(3, seed=0), post.sample(4, seed=1)])
    assert joined.num_modes == 1 and len(joined) == 7


def test_concat_refuses_other_architectures(tiny_task):
    import rashomon as rs

    a = rs.train(tiny_task, "cnn", epochs=1, seed=0, arch_options={"width": 0.25}, progress=False)
    b = rs.train(tiny_task, "cnn", epochs=1, seed=0, arch_options={"width": 0.5}, progress=False)
    sets = [rs.laplace(n, tiny_task, prior=1.0).sample(2) for n in (a, b)]
    with pytest.raises(RashomonError, match="different architecture"):
        ModelSet.concat(sets)
