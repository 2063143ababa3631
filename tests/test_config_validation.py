"""Every option with a range is checked when the config loads, before any stage runs, with a
one-line error naming the field and the fix (defects a reliability probe found)."""

from __future__ import annotations

import warnings

import pytest
import torch

from rashomon.config import ConfigWarning, load_config
from rashomon.errors import RashomonError
from tests.test_cli import assert_one_line_error, rashomon


@pytest.mark.parametrize(
    "overrides,pattern",
    [
        ({"device": "bogus"}, r"unknown device 'bogus'; use cpu or cuda"),
        ({"sample.epsilon": -0.1}, r"'sample.epsilon': epsilon must be a non-negative number"),
        ({"sample.epsilons": [0.01, -1]}, r"every epsilon must be a non-negative number"),
        ({"seed": True}, r"'seed': Input should be a valid integer"),
        ({"seed": -3}, r"'seed': Input should be greater than or equal to 0"),
        ({"sample.hessian": "diagg"}, r"source 'laplace': option 'hessian'"),
        ({"sample.source": "dropout", "sample.hessian": "kron"}, r"source 'dropout': no option"),
        ({"validity.models": 2}, r"'validity.models': .*at least 4 .*use --retrain 4 or more"),
        ({"sample.models": 1}, r"'sample.models': a Rashomon set needs at least 2 .*--models 2"),
        ({"sample.max_memory": "lots"}, r"'sample.max_memory': cannot read memory size 'lots'"),
        ({"sample.max_memory": "-4GB"}, r"'sample.max_memory': cannot read memory size '-4GB'"),
        ({"evaluate.attacks": ["fgsm", "cw"]}, r"'evaluate.attacks': unknown attack.*fgsm, pgd"),
    ],
)
def test_bad_values_are_refused_when_the_config_loads(overrides, pattern):
    with pytest.raises(RashomonError, match=pattern):
        load_config(None, overrides)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(RashomonError, match="has no CUDA GPU; use --device cpu"):
        load_config(None, {"device": "cuda"})


def test_a_huge_epsilon_warns_once():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_config(None, {"sample.epsilon": 1e9})
    assert [w.category for w in caught] == [ConfigWarning]


def test_scalar_section_with_a_flag_and_broken_yaml(tmp_path):
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("train: 5\n")
    with pytest.raises(RashomonError, match=r"'train' is 5, not a section of fields"):
        load_config(scalar, {"train.epochs": 3})
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: {a: [1, 2\nb: 3\n")
    with pytest.raises(RashomonError, match=r"not valid YAML at line 2, column 2: expected"):
        load_config(broken)


def test_negative_epsilon_fails_before_training(tiny_root, tmp_path):
    out = tmp_path / "run"
    proc = rashomon(
        "run", "--dataset", "breastmnist", "--epsilon", "-1", "--out", str(out), root=tiny_root
    )
    assert_one_line_error(proc, r"'sample.epsilon': epsilon must be a non-negative number")
    assert not (out / "train").exists() and not (out / "config.yaml").exists()


def test_flat_laplace_fields_of_old_configs_load_into_the_options(tmp_path):
    """Configs and run directories written when Laplace's options were flat sample fields
    load as `sample.options`, with the same stage identity as the options spelled there."""
    old = tmp_path / "old.yaml"
    old.write_text(
        "sample: {source: laplace, subset: all, hessian: diag, prior: grid, kind: null, "
        "temperature: 2.0, linearized: null}\n"
    )
    cfg = load_config(old)
    assert cfg.sample.options == {
        "subset": "all",
        "hessian": "diag",
        "prior": "grid",
        "temperature": 2.0,
    }
    opts = cfg.sample.resolved_options
    assert (opts.subset, opts.hessian, opts.prior, opts.temperature) == ("all", "diag", "grid", 2.0)
    new = load_config(
        None,
        {
            "sample.options": {"subset": "all", "hessian": "diag", "prior": "grid"},
            "sample.options.temperature": 2.0,
        },
    )
    assert new.section_hash("sample") == cfg.section_hash("sample")
    assert "subset" not in cfg.sample.model_dump()  # saved configs hold the options only
    with pytest.raises(RashomonError, match=r"sample.hessian = 'diag' and sample.options.hessian"):
        load_config(None, {"sample.hessian": "diag", "sample.options.hessian": "kron"})


def test_set_sizes_and_memory_budgets_that_load():
    """The smallest sizes that can work pass; a budget reads as the memory module reads it."""
    cfg = load_config(None, {"validity.models": 4, "sample.models": 2, "sample.max_memory": "2GiB"})
    assert (cfg.validity.models, cfg.sample.models, cfg.sample.max_memory) == (4, 2, "2GiB")


def test_unknown_corruption_is_refused_before_anything_is_saved(tiny_root, tmp_path):
    """With robustness off, `--corruptions nosuch` once exited 0 and saved the typo."""
    from rashomon.config import check_corruptions

    with pytest.raises(RashomonError, match=r"unknown corruption\(s\) \['nosuch'\].*pixelate"):
        check_corruptions(load_config(None, {"evaluate.corruptions": ["pixelate", "nosuch"]}))
    check_corruptions(load_config(None, {"evaluate.corruptions": ["pixelate"]}))
    # `rashomon evaluate RUN --corruptions nosuch` on a run with robustness off
    from rashomon.config import dump_config

    run = tmp_path / "run"
    run.mkdir()
    saved = dump_config(
        load_config(None, {"data.dataset": "breastmnist", "evaluate.metrics": ["multiplicity"]})
    )
    (run / "config.yaml").write_text(saved)
    proc = rashomon("evaluate", str(run), "--corruptions", "nosuch", root=tiny_root)
    assert_one_line_error(proc, r"'evaluate.corruptions': unknown corruption\(s\) \['nosuch'\]")
    assert (run / "config.yaml").read_text() == saved
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]
    # a config file's list is checked too, and a refused new run leaves no folder behind
    cfg = tmp_path / "c.yaml"
    cfg.write_text("evaluate: {metrics: [multiplicity], corruptions: [nosuch]}\n")
    fresh = tmp_path / "fresh"
    proc = rashomon(
        "run", str(cfg), "--dataset", "breastmnist", "--out", str(fresh), root=tiny_root
    )
    assert_one_line_error(proc, r"'evaluate.corruptions': unknown corruption\(s\) \['nosuch'\]")
    assert not fresh.exists()
