"""ModelSet: M models of one architecture, held as K base networks (modes) plus weight samples
(`SetWeights`, sets/weights.py, says how they are stored), and what a set does: predict every
model on inputs (sets/predict.py), give one model as a network, select, join, save and load.

`ModelSet.concat` joins sets of one architecture and task; bases with equal weights become one
mode, and mode 0 stays the audited model.

Probabilities are softmax over classes, ``[M, N, C]`` (binary tasks: C = 2). Multilabel sets
give ``[M, N, L]`` sigmoid probabilities of each label's positive class.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rashomon.data.task import Task
from rashomon.errors import RashomonError
from rashomon.models.registry import Classifier
from rashomon.sets.predict import predict_logits, predict_probs
from rashomon.sets.weights import KINDS, SetWeights, flat_parameters, ordered_names
from rashomon.torchio import load_payload, save_atomic

# flat_parameters, ordered_names and KINDS are imported from here by the sources.
__all__ = [
    "KINDS",
    "SET_VERSION",
    "ModelSet",
    "flat_parameters",
    "ordered_names",
    "task_description",
]

SET_VERSION = 2


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    if a is b:
        return True
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


class ModelSet(SetWeights):
    """M models sharing one architecture; built like `SetWeights` (see sets/weights.py for the
    arguments), with prediction, selection and persistence."""

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
        models: Sequence[Classifier],
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
    def __repr__(self) -> str:
        return (
            f"ModelSet(M={len(self)}, modes={self.num_modes}, source={self.source!r}, "
            f"kind={self.kind!r}, arch={self.spec['arch']!r}, varied={self.num_varied} "
            "parameters)"
        )

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
            if self.buffer_names and self.buffer_samples is not None:
                for n, v in self.unflatten_buffers(self.buffer_samples[m]).items():
                    net.get_buffer(n).copy_(v)
        return net.eval()

    # -- evaluation ---------------------------------------------------------------------------
    def logits(
        self, x: torch.Tensor, device: str | None = None, max_memory: str | int | None = None
    ) -> torch.Tensor:
        """Logits of every model, float32 [M, N, C] on the CPU."""
        return predict_logits(self, x, device=device, max_memory=max_memory)

    def predict(
        self, x: torch.Tensor, device: str | None = None, max_memory: str | int | None = None
    ) -> torch.Tensor:
        """Probabilities of every model, float32 [M, N, C] (softmax) or [M, N, L] (sigmoid,
        multilabel), on the CPU."""
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

    def validate(
        self, task: Task | dict[str, Any] | None = None, model: torch.nn.Module | None = None
    ) -> None:
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
            d: dict[str, Any] = (
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
        cls,
        path: str | Path,
        task: Task | dict[str, Any] | None = None,
        model: torch.nn.Module | None = None,
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


def task_description(task: Task) -> dict[str, Any]:
    """The part of a Task a set records: name, kind, num_classes."""
    return {"name": task.name, "kind": task.kind, "num_classes": int(task.num_classes)}
