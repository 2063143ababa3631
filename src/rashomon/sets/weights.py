"""What a model set holds: M models of one architecture, as K base networks (modes) plus weight
samples. `ModelSet` (sets/base.py) adds what a set does with them (predict, select, save); the
prediction (sets/predict.py) reads only this.

Only the parameters that vary are stored: `samples[m]` is model m's flat vector over
`param_names` (in `base.named_parameters()` order, each tensor flattened row-major, the layout of
`torch.nn.utils.parameters_to_vector`). Every other parameter keeps the value it has in model m's
base network, `bases[modes[m]]`. The samples are drawn once and stored, so model m is the same
function on every input and every split.

Modes: a set may hold several bases of one architecture and task, e.g. several trained networks
with a Laplace set around each (a mixture of Laplace approximations). Mode 0 is the audited
model; a set built around one network has one mode.

Two kinds of model:
- ``"nn"``: the sampled weights are plugged into the network, f(x; θ_m).
- ``"glm"``: the network linearised at its mode's θ*, f(x; θ*) + J(x)(θ_m − θ*).
When only the head varies the two coincide (the network is linear in its last layer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import torch

from rashomon.errors import RashomonError
from rashomon.models.registry import Classifier

KINDS = ("nn", "glm")


def flat_parameters(model: torch.nn.Module, names: Sequence[str]) -> torch.Tensor:
    """The model's current values of `names` as one flat float32 vector (detached)."""
    state: dict[str, torch.Tensor] = dict(model.named_parameters())
    state.update(dict(model.named_buffers()))
    return torch.cat([state[n].detach().reshape(-1).float() for n in names])


def ordered_names(model: torch.nn.Module, names: Sequence[str]) -> list[str]:
    """`names` put in `model.named_parameters()` order; unknown names raise RashomonError."""
    known = [n for n, _ in model.named_parameters()]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise RashomonError(
            f"parameters {unknown} are not in the model; choose among {known[:6]}..."
        )
    wanted = set(names)
    return [n for n in known if n in wanted]


class SetWeights:
    """The weights of M models sharing one architecture; see the module docstring.

    `base` is one network, or a sequence of networks (the modes, mode 0 first); `modes` [M]
    gives each model's mode (default: all mode 0). `task` describes what the models predict:
    ``{"name", "kind", "num_classes"}``; its `kind` decides softmax or sigmoid.
    `buffer_names`/`buffer_samples` hold per-model buffers (BatchNorm statistics of retrained
    networks); empty for posterior samples.
    """

    def __init__(
        self,
        base: Classifier | Sequence[Classifier],
        samples: torch.Tensor,
        param_names: Sequence[str],
        *,
        kind: str = "nn",
        source: str = "laplace",
        task: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
        buffer_names: Sequence[str] = (),
        buffer_samples: torch.Tensor | None = None,
        modes: torch.Tensor | Sequence[int] | None = None,
    ):
        if kind not in KINDS:
            raise RashomonError(f"unknown set kind {kind!r}; choose one of {list(KINDS)}")
        if not isinstance(source, str) or not source:
            raise RashomonError("a model set needs the name of its source, e.g. 'laplace'")
        bases = list(base) if isinstance(base, Sequence) else [base]
        if not bases:
            raise RashomonError("a model set needs at least one base network")
        for net in bases:
            if not hasattr(net, "spec"):
                raise RashomonError(
                    "the base model has no `spec`; build it with rashomon.models.build_model, "
                    "wrap it with rashomon.models.as_classifier or load it with "
                    "rashomon.load_checkpoint"
                )
            if net.spec != bases[0].spec:
                raise RashomonError(
                    "the modes of a model set must share one architecture; got "
                    f"{bases[0].spec} and {net.spec}"
                )
        names = list(param_names)
        if ordered_names(bases[0], names) != names:
            raise RashomonError("param_names must follow the order of base.named_parameters()")
        samples = torch.as_tensor(samples).detach().float().cpu()
        if samples.ndim != 2 or samples.shape[0] < 1:
            raise RashomonError(f"samples must be [M, P] with M ≥ 1, got {tuple(samples.shape)}")
        params = dict(bases[0].named_parameters())
        size = sum(params[n].numel() for n in names)
        if samples.shape[1] != size:
            raise RashomonError(
                f"samples have {samples.shape[1]} entries per model but {names} hold {size}"
            )
        M = samples.shape[0]
        mode = (
            torch.zeros(M, dtype=torch.long)
            if modes is None
            else torch.as_tensor(np.asarray(modes)).long().flatten().cpu()
        )
        if mode.shape != (M,) or (M and (mode.min() < 0 or mode.max() >= len(bases))):
            raise RashomonError(
                f"modes must be [M] = [{M}] integers in [0, {len(bases)}), one per model"
            )
        self.bases: list[Classifier] = [net.eval() for net in bases]
        self.modes: torch.Tensor = mode
        self.samples = samples.contiguous()
        self.param_names = names
        self.kind = kind
        self.source = source
        # Without `task` the kind is unknown ("") until a builder's caller fills it in.
        self.task = dict(
            task
            or {
                "name": getattr(bases[0], "task_name", ""),
                "kind": "",
                "num_classes": bases[0].spec["num_classes"],
            }
        )
        self.meta = dict(meta or {})
        self.buffer_names = list(buffer_names)
        if self.buffer_names:
            if buffer_samples is None or buffer_samples.shape[0] != samples.shape[0]:
                raise RashomonError("buffer_samples must be [M, B] with the same M as samples")
            self.buffer_samples: torch.Tensor | None = (
                torch.as_tensor(buffer_samples).detach().float().cpu()
            )
        else:
            self.buffer_samples = None
        # θ* of every mode over `param_names`, [K, P]
        self.theta_maps: torch.Tensor = torch.stack([flat_parameters(b, names) for b in bases])
        # Prediction state: bytes of activations one image produces, per (input shape, device);
        # measured once by rashomon.sets.predict and shared by the per-mode views of this set.
        self.activation_bytes: dict[tuple, int] = {}

    # -- what it is ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.samples.shape[0])

    @property
    def base(self) -> Classifier:
        """Mode 0's network: the audited (MAP) model."""
        return self.bases[0]

    @property
    def num_modes(self) -> int:
        """Number of modes (base networks) of the set."""
        return len(self.bases)

    @property
    def theta_map(self) -> torch.Tensor:
        """θ* of mode 0 over `param_names`, [P]."""
        return self.theta_maps[0]

    @property
    def num_varied(self) -> int:
        """Number of varied parameters P."""
        return int(self.samples.shape[1])

    @property
    def spec(self) -> dict[str, Any]:
        """The base network's architecture spec."""
        return self.base.spec

    @property
    def head_only(self) -> bool:
        """True when only the last nn.Linear varies: the body runs once for all M models."""
        head = {f"head.{n}" for n, _ in self.base.head.named_parameters()}
        return bool(self.param_names) and set(self.param_names) <= head and not self.buffer_names

    @property
    def multilabel(self) -> bool:
        """Whether the set's task is multilabel."""
        return self.task.get("kind") == "multilabel"

    def deviations(self) -> torch.Tensor:
        """θ_m − θ* of model m's own mode, [M, P]."""
        return self.samples - self.theta_maps[self.modes]

    def distances(self) -> dict[str, np.ndarray]:
        """How far each model moved from its mode's θ*: L2 norm of θ_m − θ* over the varied
        parameters and the same divided by ‖θ*‖ (relative)."""
        l2 = self.deviations().norm(dim=1).numpy().astype(np.float64)
        ref = self.theta_maps.norm(dim=1)[self.modes].numpy().astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(ref > 0, l2 / ref, np.nan)
        return {"l2": l2, "relative": rel}

    def mode_parts(self) -> list[tuple[torch.Tensor, Self]]:
        """(indices of the models of mode k, a one-mode set of them) for every non-empty mode;
        one part, the set itself, when the set has one mode."""
        if self.num_modes == 1:
            return [(torch.arange(len(self)), self)]
        parts = []
        for k, net in enumerate(self.bases):
            idx = (self.modes == k).nonzero().flatten()
            if len(idx) == 0:
                continue
            part = type(self)(
                net,
                self.samples[idx],
                self.param_names,
                kind=self.kind,
                source=self.source,
                task=self.task,
                meta=self.meta,
                buffer_names=self.buffer_names,
                buffer_samples=None if self.buffer_samples is None else self.buffer_samples[idx],
            )
            part.activation_bytes = self.activation_bytes
            parts.append((idx, part))
        return parts

    def unflatten(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat vector over `param_names` → {name: tensor view shaped like the parameter}."""
        params = dict(self.base.named_parameters())
        out, i = {}, 0
        for n in self.param_names:
            k = params[n].numel()
            out[n] = vector[..., i : i + k].reshape(*vector.shape[:-1], *params[n].shape)
            i += k
        return out

    def unflatten_buffers(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """A per-model buffer vector as the base network's buffers by name."""
        bufs = dict(self.base.named_buffers())
        out, i = {}, 0
        for n in self.buffer_names:
            k = bufs[n].numel()
            out[n] = vector[..., i : i + k].reshape(*vector.shape[:-1], *bufs[n].shape)
            out[n] = out[n].to(bufs[n].dtype)
            i += k
        return out
