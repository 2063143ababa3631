"""Forks from training: saving states changes nothing, resuming with the saved random streams
is exact, and a fork with its own seed is another network of the same recipe."""

from __future__ import annotations

import pytest
import torch

from rashomon.errors import RashomonError
from rashomon.models.fork import fork, initial_state, nearest_state
from rashomon.models.train import train

RECIPE = dict(
    arch="cnn",
    arch_options={"width": 0.25, "dropout": 0.2},
    steps=40,
    batch_size=32,
    select_window=1,
    patience=100,
    progress=False,
)
SHARES = (0.0, 0.5, 0.75, 0.9)


@pytest.fixture(scope="module")
def trained(tiny_task):
    saved = []
    model = train(tiny_task, seed=3, snapshots=SHARES, saved_states=saved, **RECIPE)
    return model, saved


def _same(a, b) -> bool:
    return all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_saving_states_changes_nothing(trained, tiny_task):
    model, saved = trained
    plain = train(tiny_task, seed=3, **RECIPE)
    assert _same(model, plain)
    # 120 images in batches of 32: 4 steps an epoch, 10 epochs; a state at the first epoch end
    # reaching each share (0 before any step): 0.75 is reached at step 32 of 40
    assert [(s.requested, s.fraction, s.epoch, s.step) for s in saved] == [
        (0.0, 0.0, 0, 0),
        (0.5, 0.5, 5, 20),
        (0.75, 0.8, 8, 32),
        (0.9, 0.9, 9, 36),
    ]
    assert all(s.total_steps == 40 for s in saved)


@pytest.mark.parametrize("share", SHARES)
def test_resuming_with_the_saved_streams_reproduces_the_map_model(trained, tiny_task, share):
    model, saved = trained
    state = nearest_state(saved, share)
    again = fork(tiny_task, model, state, seed=None)
    assert _same(again, model)
    assert again.train_config["selected_epoch"] == model.train_config["selected_epoch"]


def test_a_fork_with_its_own_seed_is_another_network(trained, tiny_task):
    model, saved = trained
    before = {k: v.clone() for k, v in nearest_state(saved, 0.5).optimizer["state"][0].items()}
    a = fork(tiny_task, model, nearest_state(saved, 0.5), seed=1)
    after = nearest_state(saved, 0.5).optimizer["state"][0]
    assert all(torch.equal(before[k], after[k]) for k in before)  # the state is not consumed
    b = fork(tiny_task, model, nearest_state(saved, 0.5), seed=1)
    c = fork(tiny_task, model, nearest_state(saved, 0.5), seed=2)
    assert _same(a, b) and not _same(a, c) and not _same(a, model)
    assert a.train_config["fork"] == {
        "spawn": 0.5,
        "spawn_step": 20,
        "seed": 1,
        "perturb": 0.0,
        "lr_restart": False,
    }

    # the later the spawn, the closer the fork stays to the MAP model
    def gap(net):
        return (
            sum((net.state_dict()[k] - model.state_dict()[k]).norm() ** 2 for k in net.state_dict())
            ** 0.5
        )

    late = fork(tiny_task, model, nearest_state(saved, 0.9), seed=1)
    early = fork(tiny_task, model, nearest_state(saved, 0.0), seed=1)
    assert gap(late) < gap(early)
    perturbed = fork(tiny_task, model, nearest_state(saved, 0.9), seed=1, perturb=0.1)
    assert not _same(perturbed, late)


def test_nearest_state_and_a_given_network(trained, tiny_task):
    model, saved = trained
    assert nearest_state(saved, 0.75).fraction == 0.8  # the state kept for 0.75
    assert nearest_state(saved, 0.85).fraction == 0.8  # else the latest one before
    with pytest.raises(RashomonError, match="saved no states"):
        nearest_state([], 0.5)
    # a network not trained here: fine-tuned from its weights for the rest of the budget
    state = initial_state(model, tiny_task, model.train_config, spawn=0.5)
    assert (state.epoch, state.step, state.losses) == (5, 20, [])
    tuned = fork(tiny_task, model, state, seed=4)
    assert tuned.train_config["epochs_run"] == 5 and not _same(tuned, model)


def test_fork_source_through_the_run_directory(tiny_root, tmp_path):
    """`rashomon run --source fork`: the train stage keeps its states, the sample stage forks
    from them (cached), and fork k at spawn 0 with reinit is retrained seed seed + k."""
    import json

    from test_cli import rashomon

    from rashomon.sets.base import ModelSet
    from rashomon.sets.registry import BuildContext, build_model_set

    cache = {"RASHOMON_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "run"
    base = ("--dataset", "breastmnist", "--arch", "mlp", "--epochs", "6", "--no-progress")
    proc = rashomon(
        "run",
        *base,
        "--source",
        "fork",
        "-o",
        "spawn=0.5",
        "--models",
        "3",
        "--epsilon",
        "0.5",
        "--stages",
        "train,sample",
        "--out",
        str(out),
        root=tiny_root,
        env_extra=cache,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "sample" / "summary.json").read_text())
    assert summary["source"] == "fork" and summary["models"] == 3
    assert summary["spawn"] == 0.5 and summary["from_saved_state"] is True
    # 120 images, batch 64: 2 steps an epoch, 6 epochs: 0.25, 0.75 and 0.9 are reached at steps
    # 4, 10 and 12 of 12
    states = json.loads((out / "train" / "summary.json").read_text())["training_states"]
    assert states == [0.0, 0.3333, 0.5, 0.8333, 1.0]
    mset = ModelSet.load(out / "sample" / "set.pt")
    assert mset.meta["seeds"] == [1, 2, 3] and mset.meta["reused"] == 0

    import rashomon as rs
    from rashomon.config import load_config

    cfg = load_config(out / "config.yaml")
    task = rs.load_task("breastmnist", root=tiny_root)
    model, _ = rs.load_checkpoint(out / "train" / "model.pt")
    t = cfg.train
    ctx = BuildContext(
        seed=0,
        models=2,
        train={"arch": t.arch, "epochs": t.epochs, "fit_options": t.fit_options()},
        run_dir=out,
    )
    forks = build_model_set(
        "fork", model, task, {"spawn": 0, "reinit": True, "cache_dir": str(tmp_path / "c2")}, ctx
    )
    seeds = build_model_set("retrain", model, task, {"cache_dir": str(tmp_path / "c2")}, ctx)
    assert forks.meta["reused"] == 0 and seeds.meta["reused"] == 2  # the same networks
    assert torch.equal(forks.samples, seeds.samples) and seeds.meta["seeds"] == [1, 2]


def test_forks_that_all_keep_the_map_checkpoint_are_refused(
    trained, tiny_task, tmp_path, monkeypatch
):
    """A MAP training that stopped early (patience) before the spawn share leaves the forks
    nothing to train: each keeps the checkpoint already chosen, and the 'set' is K copies of
    the MAP model (seen on RSNA at spawn 0.5 and 0.9). That is refused with the fix, not
    audited as a set with no multiplicity."""
    import copy

    import rashomon.sets.fork as sets_fork

    model, saved = trained
    monkeypatch.setattr(sets_fork, "fork", lambda task, net, *a, **k: copy.deepcopy(net))
    recipe = {"arch": "cnn", "epochs": None, "fit_options": {}}
    with pytest.raises(RashomonError, match=r"all 3 forks .* ended on the trained model's own"):
        sets_fork.fork_networks(
            model, tiny_task, saved, 3, spawn=0.9, train=recipe, cache_dir=tmp_path
        )
