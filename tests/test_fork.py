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
    # reaching each share (0 before any step)
    assert [(s.fraction, s.epoch, s.step) for s in saved] == [
        (0.0, 0, 0),
        (0.5, 5, 20),
        (0.75, 8, 32),
        (0.9, 9, 36),
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
    assert nearest_state(saved, 0.8).fraction == 0.75
    with pytest.raises(RashomonError, match="saved no states"):
        nearest_state([], 0.5)
    # a network not trained here: fine-tuned from its weights for the rest of the budget
    state = initial_state(model, tiny_task, model.train_config, spawn=0.5)
    assert (state.epoch, state.step, state.losses) == (5, 20, [])
    tuned = fork(tiny_task, model, state, seed=4)
    assert tuned.train_config["epochs_run"] == 5 and not _same(tuned, model)
