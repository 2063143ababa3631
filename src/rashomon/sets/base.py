"""ModelSet: M models of one architecture, held as the MAP network plus weight samples.

Only the parameters that vary are stored: `samples[m]` is model m's flat vector over
`param_names` (in `base.named_parameters()` order, each tensor flattened row-major, the layout of
`torch.nn.utils.parameters_to_vector`). Every other parameter keeps its MAP value. The samples are
drawn once and stored, so model m is the same function on every input and every split.

Two kinds of model:
- ``"nn"``: the sampled weights are plugged into the network, f(x; θ_m).
- ``"glm"``: the network linearised at θ*, f(x; θ*) + J(x)(θ_m − θ*).
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
from rashomon.models.registry import Classifier, build_from_spec
from rashomon.torchio import load_payload, save_atomic

SET_VERSION = 1
KINDS = ("nn", "glm")
SOURCES = ("laplace", "riemannian", "retrain", "dropout")


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


class ModelSet:
    """M models sharing the base network's architecture; see the module docstring.

    `task` describes what the models predict: ``{"name", "kind", "num_classes"}``; `kind` of the
    task decides softmax or sigmoid. `buffer_names`/`buffer_samples` hold per-model buffers
    (BatchNorm statistics of retrained networks); empty for posterior samples.
    """

    def __init__(
        self,
        base: Classifier,
        samples: torch.Tensor,
        param_names: Sequence[str],
        *,
        kind: str = "nn",
        source: str = "laplace",
        task: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
        buffer_names: Sequence[str] = (),
        buffer_samples: torch.Tensor | None = None,
    ):
        if kind not in KINDS:
            raise RashomonError(f"unknown set kind {kind!r}; choose one of {list(KINDS)}")
        if source not in SOURCES:
            raise RashomonError(f"unknown set source {source!r}; choose one of {list(SOURCES)}")
        if not hasattr(base, "spec"):
            raise RashomonError(
                "the base model has no `spec`; build it with rashomon.models.build_model "
                "or load it with rashomon.load_checkpoint"
            )
        names = list(param_names)
        if ordered_names(base, names) != names:
            raise RashomonError("param_names must follow the order of base.named_parameters()")
        samples = torch.as_tensor(samples).detach().float().cpu()
        if samples.ndim != 2 or samples.shape[0] < 1:
            raise RashomonError(f"samples must be [M, P] with M ≥ 1, got {tuple(samples.shape)}")
        params = dict(base.named_parameters())
        size = sum(params[n].numel() for n in names)
        if samples.shape[1] != size:
            raise RashomonError(
                f"samples have {samples.shape[1]} entries per model but {names} hold {size}"
            )
        self.base = base.eval()
        self.samples = samples.contiguous()
        self.param_names = names
        self.kind = kind
        self.source = source
        self.task = dict(
            task
            or {
                "name": getattr(base, "task_name", ""),
                "kind": "multiclass",
                "num_classes": base.spec["num_classes"],
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
        self.theta_map = flat_parameters(base, names)

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

    # -- what it is ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.samples.shape[0])

    def __repr__(self) -> str:
        return (
            f"ModelSet(M={len(self)}, source={self.source!r}, kind={self.kind!r}, "
            f"arch={self.base.spec['arch']!r}, varied={self.num_varied} parameters)"
        )

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
        """θ_m − θ* for every model, [M, P]."""
        return self.samples - self.theta_map[None, :]

    def distances(self) -> dict[str, np.ndarray]:
        """How far each model moved from θ*: L2 norm of θ_m − θ* over the varied parameters and
        the same divided by ‖θ*‖ (relative)."""
        l2 = self.deviations().norm(dim=1).numpy().astype(np.float64)
        ref = float(self.theta_map.norm())
        return {"l2": l2, "relative": l2 / ref if ref > 0 else np.full_like(l2, np.nan)}

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
        """Model m as a standalone network (a copy of the base with its weights)."""
        import copy

        if self.kind == "glm" and not self.head_only:
            raise RashomonError(
                "a linearised (glm) model is not a plain network; use ModelSet.predict"
            )
        net = copy.deepcopy(self.base)
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
        """The models selected by a boolean mask [M] or a list of indices, in that order."""
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
        return ModelSet(
            self.base,
            self.samples[idx],
            self.param_names,
            kind=self.kind,
            source=self.source,
            task=self.task,
            meta=meta,
            buffer_names=self.buffer_names,
            buffer_samples=None if self.buffer_samples is None else self.buffer_samples[idx],
        )

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
        """One .pt file with the base spec and weights, the samples and the metadata."""
        payload = {
            "version": SET_VERSION,
            "spec": self.spec,
            "state_dict": {k: v.detach().cpu() for k, v in self.base.state_dict().items()},
            "param_names": self.param_names,
            "samples": self.samples,
            "buffer_names": self.buffer_names,
            "buffer_samples": self.buffer_samples,
            "kind": self.kind,
            "source": self.source,
            "task": self.task,
            "meta": self.meta,
        }
        path = Path(path)
        save_atomic(payload, path)

    @classmethod
    def load(
        cls, path: str | Path, task: Any = None, model: torch.nn.Module | None = None
    ) -> ModelSet:
        """Load a saved set; with `task`/`model`, check that it belongs to them."""
        payload = load_payload(path, "model set", "run `rashomon sample`")
        if not isinstance(payload, dict) or "samples" not in payload:
            raise RashomonError(f"{path} is not a rashomon model set; sample again")
        base = build_from_spec(payload["spec"])
        base.load_state_dict(payload["state_dict"])
        base.task_name = payload["task"].get("name", "")
        mset = cls(
            base,
            payload["samples"],
            payload["param_names"],
            kind=payload["kind"],
            source=payload["source"],
            task=payload["task"],
            meta=payload["meta"],
            buffer_names=payload.get("buffer_names", ()),
            buffer_samples=payload.get("buffer_samples"),
        )
        mset.validate(task=task, model=model)
        return mset


def task_description(task: Any) -> dict[str, Any]:
    """The part of a Task a set records: name, kind, num_classes."""
    return {"name": task.name, "kind": task.kind, "num_classes": int(task.num_classes)}
