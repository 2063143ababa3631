"""ModelSet: M models of one architecture, held as K base networks (modes) plus weight samples.

Only the parameters that vary are stored: `samples[m]` is model m's flat vector over
`param_names` (in `base.named_parameters()` order, each tensor flattened row-major, the layout of
`torch.nn.utils.parameters_to_vector`). Every other parameter keeps the value it has in model m's
base network, `bases[modes[m]]`. The samples are drawn once and stored, so model m is the same
function on every input and every split.

Modes: a set may hold several bases of one architecture and task, e.g. several trained networks
with a Laplace set around each (a mixture of Laplace approximations). Mode 0 is the audited
model; a set built around one network has one mode. `ModelSet.concat` joins sets.

Two kinds of model:
- ``"nn"``: the sampled weights are plugged into the network, f(x; θ_m).
- ``"glm"``: the network linearised at its mode's θ*, f(x; θ*) + J(x)(θ_m − θ*).
When only the head varies the two coincide (the network is linear in its last layer).

Probabilities are softmax over classes, ``[M, N, C]`` (binary tasks: C = 2). Multilabel sets
give ``[M, N, L]`` sigmoid probabilities of each label's positive class.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rashomon.errors import RashomonError
from rashomon.models.registry import Classifier
from rashomon.torchio import load_payload, save_atomic

SET_VERSION = 2
KINDS = ("nn", "glm")


def flat_parameters(model: torch.nn.Module, names: Sequence[str]) -> torch.Tensor:
    """The model's current values of `names` as one flat float32 vector (detached)."""
    state = dict(model.named_parameters())
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


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    if a is b:
        return True
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


class ModelSet:
    """M models sharing one architecture; see the module docstring.

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
            self.buffer_samples = torch.as_tensor(buffer_samples).detach().float().cpu()
        else:
            self.buffer_samples = None
        # θ* of every mode over `param_names`, [K, P]
        self.theta_maps: torch.Tensor = torch.stack([flat_parameters(b, names) for b in bases])
        # Prediction state: bytes of activations one image produces, per (input shape, device);
        # measured once by rashomon.predict and shared by the per-mode views of this set.
        self.activation_bytes: dict[tuple, int] = {}

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_vectors(
        cls,
        base: Classifier,
        vectors: torch.Tensor,
        param_names: Sequence[str],
        **kwargs: Any,
    ) -> ModelSet:
        """A set from given weight vectors [M, P] over `param_names` (e.g. Riemannian samples:
        θ* + Exp-map displacements). Names are put in the model's parameter order first."""
        names = list(param_names)
        ordered = ordered_names(base, names)
        if ordered != names:
            raise RashomonError(f"param_names must follow base.named_parameters() order: {ordered}")
        return cls(base, vectors, names, **kwargs)

    @classmethod
    def from_models(
        cls,
        models: Sequence[torch.nn.Module],
        *,
        base: Classifier | None = None,
        source: str = "retrain",
        **kwargs: Any,
    ) -> ModelSet:
        """A set holding every parameter (and float buffer) of several trained networks of one
        architecture. `base` (default: the first model) is θ*, the reference of distances."""
        if not models:
            raise RashomonError("from_models needs at least one model")
        base = base if base is not None else models[0]
        spec = base.spec
        for m in models:
            if getattr(m, "spec", None) != spec:
                raise RashomonError("all models of a set must share one architecture spec")
        names = [n for n, _ in base.named_parameters()]
        bufs = [n for n, b in base.named_buffers() if b.is_floating_point()]
        samples = torch.stack([flat_parameters(m, names) for m in models])
        buf_samples = torch.stack([flat_parameters(m, bufs) for m in models]) if bufs else None
        return cls(
            base,
            samples,
            names,
            source=source,
            buffer_names=bufs,
            buffer_samples=buf_samples,
            **kwargs,
        )

    @classmethod
    def concat(cls, sets: Sequence[ModelSet], source: str | None = None) -> ModelSet:
        """One set holding every model of `sets` in order (sets of one architecture, task, kind
        and varied parameters). Bases with equal weights become one mode; the first set's first
        mode stays mode 0 (the audited model)."""
        sets = list(sets)
        if not sets:
            raise RashomonError("concat needs at least one model set")
        first = sets[0]
        for other in sets[1:]:
            for what, a, b in (
                ("architecture", first.spec, other.spec),
                ("task", first.task, other.task),
                ("kind", first.kind, other.kind),
                ("varied parameters", first.param_names, other.param_names),
                ("per-model buffers", first.buffer_names, other.buffer_names),
            ):
                if a != b:
                    raise RashomonError(
                        f"cannot concat model sets with different {what} ({a} vs {b}); build "
                        "them for one architecture and task with the same varied parameters"
                    )
        bases: list[Classifier] = []
        modes = []
        for mset in sets:
            remap = []
            for net in mset.bases:
                found = next((i for i, b in enumerate(bases) if _same_weights(b, net)), None)
                if found is None:
                    bases.append(net)
                    found = len(bases) - 1
                remap.append(found)
            modes.append(torch.as_tensor(remap, dtype=torch.long)[mset.modes])
        sources = list(dict.fromkeys(m.source for m in sets))
        meta = {
            "parts": [
                {"source": m.source, "models": len(m), "modes": m.num_modes, "meta": m.meta}
                for m in sets
            ]
        }
        buffers = None
        if first.buffer_names:
            buffers = torch.cat([m.buffer_samples for m in sets])  # type: ignore[misc]
        return cls(
            bases,
            torch.cat([m.samples for m in sets]),
            first.param_names,
            kind=first.kind,
            source=source or "+".join(sources),
            task=first.task,
            meta=meta,
            buffer_names=first.buffer_names,
            buffer_samples=buffers,
            modes=torch.cat(modes),
        )

    # -- what it is ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.samples.shape[0])

    def __repr__(self) -> str:
        return (
            f"ModelSet(M={len(self)}, modes={self.num_modes}, source={self.source!r}, "
            f"kind={self.kind!r}, arch={self.spec['arch']!r}, varied={self.num_varied} "
            "parameters)"
        )

    @property
    def base(self) -> Classifier:
        """Mode 0's network: the audited (MAP) model."""
        return self.bases[0]

    @property
    def num_modes(self) -> int:
        return len(self.bases)

    @property
    def theta_map(self) -> torch.Tensor:
        """θ* of mode 0 over `param_names`, [P]."""
        return self.theta_maps[0]

    @property
    def num_varied(self) -> int:
        return int(self.samples.shape[1])

    @property
    def spec(self) -> dict[str, Any]:
        return self.base.spec

    @property
    def head_only(self) -> bool:
        """True when only the last nn.Linear varies: the body runs once for all M models."""
        head = {f"head.{n}" for n, _ in self.base.head.named_parameters()}
        return bool(self.param_names) and set(self.param_names) <= head and not self.buffer_names

    @property
    def multilabel(self) -> bool:
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

    def mode_parts(self) -> list[tuple[torch.Tensor, ModelSet]]:
        """(indices of the models of mode k, a one-mode set of them) for every non-empty mode;
        one part, the set itself, when the set has one mode."""
        if self.num_modes == 1:
            return [(torch.arange(len(self)), self)]
        parts = []
        for k, net in enumerate(self.bases):
            idx = (self.modes == k).nonzero().flatten()
            if len(idx) == 0:
                continue
            part = ModelSet(
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
        bufs = dict(self.base.named_buffers())
        out, i = {}, 0
        for n in self.buffer_names:
            k = bufs[n].numel()
            out[n] = vector[..., i : i + k].reshape(*vector.shape[:-1], *bufs[n].shape)
            out[n] = out[n].to(bufs[n].dtype)
            i += k
        return out

    def model(self, m: int) -> Classifier:
        """Model m as a standalone network (a copy of its mode's base with its weights)."""
        import copy

        if self.kind == "glm" and not self.head_only:
            raise RashomonError(
                "a linearised (glm) model is not a plain network; use ModelSet.predict"
            )
        if not -len(self) <= m < len(self):
            raise RashomonError(
                f"model {m} does not exist; the set holds models 0..{len(self) - 1}"
            )
        net = copy.deepcopy(self.bases[int(self.modes[m])])
        with torch.no_grad():
            for n, v in self.unflatten(self.samples[m]).items():
                net.get_parameter(n).copy_(v)
            if self.buffer_names:
                for n, v in self.unflatten_buffers(self.buffer_samples[m]).items():
                    net.get_buffer(n).copy_(v)
        return net.eval()

    # -- evaluation ---------------------------------------------------------------------------
    def logits(
        self, x: torch.Tensor, device: str | None = None, max_memory: str | int | None = None
    ) -> torch.Tensor:
        """Logits of every model, float32 [M, N, C] on the CPU."""
        from rashomon.predict import predict_logits

        return predict_logits(self, x, device=device, max_memory=max_memory)

    def predict(
        self, x: torch.Tensor, device: str | None = None, max_memory: str | int | None = None
    ) -> torch.Tensor:
        """Probabilities of every model, float32 [M, N, C] (softmax) or [M, N, L] (sigmoid,
        multilabel), on the CPU."""
        from rashomon.predict import predict_probs

        return predict_probs(self, x, device=device, max_memory=max_memory)

    # -- selection, validation, persistence ----------------------------------------------------
    def subset(self, mask_or_indices: Any) -> ModelSet:
        """The models selected by a boolean mask [M] or a list of indices, in that order (every
        mode is kept, so mode 0 stays the audited model)."""
        sel = torch.as_tensor(np.asarray(mask_or_indices))
        if sel.dtype == torch.bool:
            if sel.shape != (len(self),):
                raise RashomonError(f"mask has shape {tuple(sel.shape)}; expected ({len(self)},)")
            idx = sel.nonzero().flatten()
        else:
            idx = sel.long().flatten()
            if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
                raise RashomonError(f"model indices must lie in [0, {len(self)})")
        if len(idx) == 0:
            raise RashomonError("the selection keeps no model; use a larger epsilon or more models")
        meta = dict(self.meta)
        meta["selected_from"] = meta.get("selected_from", len(self))
        out = ModelSet(
            self.bases,
            self.samples[idx],
            self.param_names,
            kind=self.kind,
            source=self.source,
            task=self.task,
            meta=meta,
            buffer_names=self.buffer_names,
            buffer_samples=None if self.buffer_samples is None else self.buffer_samples[idx],
            modes=self.modes[idx],
        )
        out.activation_bytes = self.activation_bytes
        return out

    def validate(self, task: Any = None, model: torch.nn.Module | None = None) -> None:
        """Raise RashomonError unless the set belongs to `task` (a Task or its describe() dict)
        and `model`'s architecture."""
        if model is not None:
            spec = getattr(model, "spec", None)
            if spec != self.spec:
                raise RashomonError(
                    f"the model set was built for architecture {self.spec} but the model is "
                    f"{spec}; rebuild the set from this model"
                )
        if task is not None:
            d = (
                task
                if isinstance(task, dict)
                else {"name": task.name, "kind": task.kind, "num_classes": task.num_classes}
            )
            if int(d["num_classes"]) != int(self.spec["num_classes"]):
                raise RashomonError(
                    f"the model set predicts {self.spec['num_classes']} classes but task "
                    f"{d['name']!r} has {d['num_classes']}; build the set for this task"
                )
            mine = self.task.get("name")
            if mine and d.get("name") and mine != d["name"]:
                raise RashomonError(
                    f"the model set was built for task {mine!r}, not {d['name']!r}; "
                    "build the set for this task"
                )
            if self.task.get("kind") and d.get("kind") and self.task["kind"] != d["kind"]:
                raise RashomonError(
                    f"the model set is for a {self.task['kind']} task, not {d['kind']}"
                )

    def save(self, path: str | Path) -> None:
        """One .pt file with the architecture spec, every mode's weights, the samples and the
        metadata."""
        from rashomon.models.external import template_of

        payload = {
            "version": SET_VERSION,
            "spec": self.spec,
            "template": template_of(self.base),
            "bases": [
                {k: v.detach().cpu() for k, v in net.state_dict().items()} for net in self.bases
            ],
            "modes": self.modes,
            "param_names": self.param_names,
            "samples": self.samples,
            "buffer_names": self.buffer_names,
            "buffer_samples": self.buffer_samples,
            "kind": self.kind,
            "source": self.source,
            "task": self.task,
            "meta": self.meta,
        }
        save_atomic(payload, Path(path))

    @classmethod
    def load(
        cls, path: str | Path, task: Any = None, model: torch.nn.Module | None = None
    ) -> ModelSet:
        """Load a saved set; with `task`/`model`, check that it belongs to them."""
        payload = load_payload(path, "model set", "run `rashomon sample`")
        if not isinstance(payload, dict) or "samples" not in payload:
            raise RashomonError(f"{path} is not a rashomon model set; sample again")
        states = payload["bases"] if "bases" in payload else [payload["state_dict"]]
        bases = []
        from rashomon.models.external import model_from_spec

        for state in states:
            net = model_from_spec(payload["spec"], payload.get("template"))
            net.load_state_dict(state)
            net.task_name = payload["task"].get("name", "")
            bases.append(net)
        mset = cls(
            bases,
            payload["samples"],
            payload["param_names"],
            kind=payload["kind"],
            source=payload["source"],
            task=payload["task"],
            meta=payload["meta"],
            buffer_names=payload.get("buffer_names", ()),
            buffer_samples=payload.get("buffer_samples"),
            modes=payload.get("modes"),
        )
        mset.validate(task=task, model=model)
        return mset


def task_description(task: Any) -> dict[str, Any]:
    """The part of a Task a set records: name, kind, num_classes."""
    return {"name": task.name, "kind": task.kind, "num_classes": int(task.num_classes)}
