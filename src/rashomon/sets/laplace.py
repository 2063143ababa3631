"""Laplace posteriors over a trained classifier (laplace-torch 0.3) and ModelSets drawn from them.

`laplace(model, task, ...)` fits the Gaussian N(θ*, Σ) over the chosen parameters and returns a
`LaplacePosterior`; `post.sample(M, seed, kind)` draws M weight vectors ONCE (laplace-torch's
`sample` with a seeded generator) and stores them in a ModelSet. laplace-torch's
`predictive_samples` draws fresh weights on every call and is never used to build a set.

For other samplers built on top (the Riemannian exp map): `post.mean` is θ* over
`post.param_names` (flat, float32), `post.sample_deviations(M, seed)` gives v ~ N(0, Σ) as
[M, P], and `post.to_set(vectors, kind)` wraps given weight vectors into a ModelSet.

Multilabel tasks: laplace-torch has no Bernoulli likelihood; their last-layer posterior is
`rashomon.sets.bernoulli` (curvlinops' GGN of the summed BCE), with the same `sample` API.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rashomon.errors import RashomonError
from rashomon.memory import format_bytes, memory_budget
from rashomon.models.external import as_classifier
from rashomon.models.registry import Classifier
from rashomon.sets.base import KINDS, ModelSet, ordered_names, task_description
from rashomon.sets.curvature import PerSampleGGN
from rashomon.sets.prior import GRID, parse_prior, prior_by_grid

SUBSETS = ("last_layer", "all", "subnetwork")
HESSIANS = ("diag", "kron", "full", "lowrank")
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
# Bytes of one chunk of draws: bounds the [chunk, P] buffers while keeping calls few (each
# laplace-torch `sample` call has a fixed cost of ~0.1 s on this CPU).
SAMPLE_CHUNK_BYTES = 256 * 2**20
# Copies of one sample's Jacobian [C, P] alive at once while fitting a diagonal GGN (per-parameter
# grads, their concatenation, the einsum product), plus one for slack.
JACOBIAN_COPIES = 4


def _check_choice(value: Any, valid: Sequence[str], what: str) -> None:
    if value not in valid:
        raise RashomonError(f"unknown {what} {value!r}; choose one of: {', '.join(valid)}")


def _loader(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> DataLoader:
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


def _param_slices(model: nn.Module, names: Sequence[str]) -> dict[str, slice]:
    """Positions of each named parameter in the flat vector of `names` (model order)."""
    params = dict(model.named_parameters())
    out, i = {}, 0
    for n in names:
        k = params[n].numel()
        out[n] = slice(i, i + k)
        i += k
    return out


class LaplacePosterior:
    """A fitted Gaussian N(mean, Σ) over `param_names` of `model` (the MAP network).

    `la` is the laplace-torch object; `meta` records subset, hessian, prior precision, temperature
    and timings. `columns` maps the laplace-torch vector to `param_names` (subnetworks by index).
    """

    def __init__(
        self,
        model: Classifier,
        la: Any,
        param_names: list[str],
        *,
        subset: str,
        hessian: str,
        task: dict[str, Any],
        columns: torch.Tensor | None = None,
        meta: dict[str, Any] | None = None,
    ):
        self.model = model
        self.la = la
        self.param_names = param_names
        self.subset = subset
        self.hessian = hessian
        self.task = task
        self.columns = columns  # la-vector positions of our P entries (None: identity)
        self.meta = dict(meta or {})
        mean = la.mean.detach().float().cpu()
        self.mean = mean if columns is None else mean[columns]

    @property
    def num_params(self) -> int:
        """Number of parameters the posterior covers."""
        return int(self.mean.numel())

    @property
    def prior_precision(self) -> float | list[float]:
        """laplace-torch's prior precision: a scalar, or one per parameter."""
        p = self.la.prior_precision.detach().cpu().flatten()
        return float(p[0]) if p.numel() == 1 else p.tolist()

    def set_prior(self, precision: float) -> None:
        """Set the (scalar) prior precision; Σ follows."""
        self.la.prior_precision = float(precision)

    def sample_deviations(self, models: int, seed: int = 0) -> torch.Tensor:
        """`models` draws of v ~ N(0, Σ) over `param_names`, float32 [models, P] on the CPU."""
        if not isinstance(models, (int, np.integer)) or models <= 0:
            raise RashomonError(f"the number of models must be a positive integer, got {models!r}")
        n = int(models)
        gen = torch.Generator(device=self.la._device).manual_seed(int(seed))
        full_mean = self.la.mean.detach()
        out = []
        n_all = max(1, int(self.la.n_params))
        chunk = max(16, SAMPLE_CHUNK_BYTES // (4 * n_all))
        for i in range(0, n, chunk):
            k = min(chunk, n - i)
            with torch.no_grad():
                draw = self.la.sample(k, generator=gen) - full_mean[None]
            draw = draw.float().cpu()
            out.append(draw if self.columns is None else draw[:, self.columns])
        return torch.cat(out)

    def covariance(self) -> torch.Tensor:
        """Dense Σ over `param_names` (small posteriors only: tests, diagnostics)."""
        if self.num_params > 20_000:
            raise RashomonError(
                f"a dense covariance of {self.num_params} parameters is too large; "
                "use sample_deviations"
            )
        la = self.la
        if self.hessian == "kron":
            cov = la.posterior_precision.to_matrix(exponent=-1)
        elif self.hessian == "diag":
            cov = torch.diag(la.posterior_variance)
        elif self.hessian == "full":
            cov = la.posterior_covariance
        else:
            raise RashomonError(f"covariance() is not available for hessian {self.hessian!r}")
        cov = cov.detach().float().cpu()
        return cov if self.columns is None else cov[self.columns][:, self.columns]

    def to_set(
        self, vectors: torch.Tensor, kind: str = "nn", source: str = "laplace", **meta: Any
    ) -> ModelSet:
        """Wrap weight vectors [M, P] over `param_names` into a ModelSet on a copy of the MAP
        network (other samplers, e.g. the Riemannian exp map, use this)."""
        _check_choice(kind, KINDS, "kind")
        base = copy.deepcopy(self.model).eval()
        info = {**self.meta, **meta, "subset": self.subset, "hessian": self.hessian}
        return ModelSet.from_vectors(
            base, vectors, self.param_names, kind=kind, source=source, task=self.task, meta=info
        )

    def sample(self, models: int, seed: int = 0, kind: str = "nn") -> ModelSet:
        """A ModelSet of `models` weight vectors θ* + v, v ~ N(0, Σ), drawn once with `seed`."""
        _check_choice(kind, KINDS, "kind")
        start = time.perf_counter()
        dev = self.sample_deviations(models, seed)
        seconds = time.perf_counter() - start
        return self.to_set(self.mean[None] + dev, kind, seed=seed, sample_seconds=seconds)


def _refuse_norm_layers(model: nn.Module, names: Sequence[str]) -> None:
    varied = set(names)
    for mod_name, mod in model.named_modules():
        if isinstance(mod, NORM_LAYERS):
            own = {f"{mod_name}.{p}" for p, _ in mod.named_parameters(recurse=False)}
            if own & varied:
                raise RashomonError(
                    f"hessian 'kron' over all weights does not support normalisation layer "
                    f"{mod_name!r} ({type(mod).__name__}); use subset='last_layer', or "
                    "subset='subnetwork' with the conv/linear modules to vary"
                )


def _subnetwork_modules(model: nn.Module, modules: Sequence[str]) -> list[str]:
    """Parameter names of the named modules (conv/linear/any), in model order."""
    mods = dict(model.named_modules())
    unknown = [m for m in modules if m not in mods]
    if unknown:
        names = [n for n, m in model.named_modules() if any(True for _ in m.parameters(False))]
        raise RashomonError(
            f"unknown modules {unknown} for the subnetwork; modules with parameters: {names}"
        )
    names = []
    for m in modules:
        prefix = f"{m}." if m else ""
        names += [prefix + p for p, _ in mods[m].named_parameters()]
    return ordered_names(model, names)


def _fit_batch_size(
    jacobian_params: int, num_classes: int, batch_size: int, max_memory, dev
) -> int:
    """The fit batch: `batch_size`, shrunk so that the per-sample Jacobians [batch, C, P] of a
    fit that materialises them (diagonal GGN, index subnetworks) stay within the memory budget.
    `jacobian_params` 0: the fit holds no such Jacobian (kron and full go through curvlinops)."""
    if jacobian_params <= 0:
        return batch_size
    per_sample = JACOBIAN_COPIES * num_classes * jacobian_params * 4
    return max(1, min(batch_size, memory_budget(max_memory, dev) // per_sample))


def _estimate_full_bytes(n_params: int) -> int:
    # H, the posterior precision and its inverse square root, float32 each.
    return 3 * n_params * n_params * 4


def laplace(
    model: nn.Module,
    task: Any,
    subset: str = "last_layer",
    hessian: str = "kron",
    prior: str | float = "marglik",
    temperature: float = 1.0,
    subnetwork: Sequence[str] | int | None = None,
    device: str | None = None,
    *,
    batch_size: int = 256,
    max_memory: str | int | None = None,
    grid: Sequence[float] = GRID,
    grid_models: int = 32,
    grid_kind: str = "nn",
    seed: int = 0,
) -> LaplacePosterior:
    """Fit a Laplace approximation at the MAP weights of `model` on `task.train`.

    subset: last_layer (the head), all, or subnetwork — `subnetwork` a list of module names
    (e.g. ["body.10", "head"]) whose parameters vary, or an int n (default 1000) for the n
    weights of largest diagonal-Laplace variance among conv/linear weights (full/diag hessian).
    hessian: diag | kron | full | lowrank (GGN approximations of laplace-torch).
    prior: "marglik" (maximise the marginal likelihood, scalar), "grid" (the value of `grid`
    whose `grid_models` sampled models give the lowest validation NLL of their mean prediction),
    or a fixed precision.
    temperature: scales the likelihood Hessian by 1/T (T > 1 widens the posterior).
    """
    from laplace import Laplace

    _check_choice(subset, SUBSETS, "subset")
    _check_choice(hessian, HESSIANS, "hessian")
    _check_choice(grid_kind, KINDS, "grid_kind")
    prior = parse_prior(prior)
    if not temperature > 0:
        raise RashomonError(f"temperature must be positive, got {temperature}")
    # Any network whose last operation is an nn.Linear: split there into body and head.
    model = as_classifier(model, probe=task.val.x[:4], size=task.image_size)
    if task.kind == "multilabel":
        if subset != "last_layer":
            raise RashomonError(
                "multilabel tasks have a last-layer Laplace only (laplace-torch has no sigmoid "
                "likelihood; rashomon fits the head's BCE curvature itself); use subset "
                "last_layer, or --source retrain / dropout"
            )
        from rashomon.sets.bernoulli import bernoulli_laplace

        return bernoulli_laplace(  # type: ignore[return-value]
            model,
            task,
            hessian=hessian,
            prior=prior,
            temperature=temperature,
            device=device,
            max_memory=max_memory,
            grid=grid,
            grid_models=grid_models,
            seed=seed,
        )
    if int(model.head.out_features) != int(task.num_classes):
        raise RashomonError(
            f"the model has {model.head.out_features} outputs but task {task.name!r} has "
            f"{task.num_classes} classes; train a model for this task"
        )
    if hessian == "lowrank":
        from importlib.util import find_spec

        if find_spec("asdfghjkl") is None:
            # PyPI's asdfghjkl wheels install a module named `asdl`; laplace-torch's
            # LowRankLaplace imports `asdfghjkl`, published only on GitHub (wiseodd/asdl).
            raise RashomonError(
                "hessian 'lowrank' needs laplace-torch's optional asdfghjkl backend (pip install "
                "git+https://github.com/wiseodd/asdl@asdfghjkl), which is not installed; use "
                "kron, diag or full"
            )
    if (
        subset == "subnetwork"
        and hessian not in ("full", "diag")
        and not (subnetwork is not None and not isinstance(subnetwork, int))
    ):
        raise RashomonError(
            "a largest-variance subnetwork needs hessian 'full' or 'diag'; or name the modules "
            "to vary with subnetwork=[...] to use kron"
        )
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model = copy.deepcopy(model).to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    all_names = [n for n, _ in model.named_parameters()]
    start = time.perf_counter()
    columns = None
    common: dict[str, Any] = dict(temperature=float(temperature))
    n_classes = int(task.num_classes)

    if subset == "last_layer":
        names = ordered_names(model, [f"head.{n}" for n, _ in model.head.named_parameters()])
        _check_full_fits(hessian, sum(p.numel() for p in model.head.parameters()), max_memory, dev)
        la = Laplace(
            model,
            "classification",
            subset_of_weights="last_layer",
            hessian_structure=hessian,
            last_layer_name="head",
            backend=PerSampleGGN,
            **common,
        )
        loader = _loader(task.train.x, task.train.y, batch_size)
    elif subset == "all" or (subset == "subnetwork" and not _is_count(subnetwork)):
        if subset == "all":
            names = all_names
        else:
            if not subnetwork or isinstance(subnetwork, int):  # a count took the else branch
                raise RashomonError("subnetwork=[] names no module; pass module names or a count")
            names = _subnetwork_modules(model, list(subnetwork))
            for n, p in model.named_parameters():
                p.requires_grad_(n in set(names))
        if hessian == "kron":
            _refuse_norm_layers(model, names)
        n_varied = sum(p.numel() for n, p in model.named_parameters() if n in set(names))
        _check_full_fits(hessian, n_varied, max_memory, dev)
        jac = n_varied if hessian == "diag" else 0
        fit_batch = _fit_batch_size(jac, n_classes, batch_size, max_memory, dev)
        loader = _loader(task.train.x, task.train.y, fit_batch)
        la = Laplace(
            model,
            "classification",
            subset_of_weights="all",
            hessian_structure=hessian,
            backend=PerSampleGGN,
            **common,
        )
    else:
        # Both the diagonal mask and the subnetwork fit take Jacobians over every weight.
        n_all = sum(p.numel() for p in model.parameters())
        fit_batch = _fit_batch_size(n_all, n_classes, batch_size, max_memory, dev)
        loader = _loader(task.train.x, task.train.y, fit_batch)
        count = cast(int | None, subnetwork)  # `_is_count(subnetwork)` chose this branch
        names, columns, la = _largest_variance_subnetwork(
            model, loader, hessian, int(count or 1000), common, max_memory, dev
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            la.fit(loader)
        except ValueError as exc:
            if "un-supported" in str(exc) or "unsupported" in str(exc):
                raise RashomonError(
                    f"laplace-torch cannot fit hessian {hessian!r} on this model ({exc}); use "
                    "subset='last_layer' or a subnetwork of conv/linear modules"
                ) from exc
            raise
    fit_seconds = time.perf_counter() - start
    post = LaplacePosterior(
        model,
        la,
        names,
        subset=subset,
        hessian=hessian,
        task=task_description(task),
        columns=columns,
    )
    start = time.perf_counter()
    grid_nll: dict[float, float] = {}
    if prior == "marglik":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            la.optimize_prior_precision(method="marglik", pred_type="glm")
    elif prior == "grid":
        _, grid_nll = prior_by_grid(
            post,
            task,
            grid,
            models=grid_models,
            seed=seed,
            kind=grid_kind,
            device=dev,
            max_memory=max_memory,
        )
    else:
        post.set_prior(float(prior))  # parse_prior gave a number: neither method name
    post.meta.update(
        source="laplace",
        subset=subset,
        hessian=hessian,
        prior=prior if isinstance(prior, str) else "fixed",
        prior_precision=post.prior_precision,
        temperature=float(temperature),
        num_params=post.num_params,
        fit_batch_size=int(cast(int, loader.batch_size)),  # _loader sets a batch size
        fit_seconds=round(fit_seconds, 3),
        prior_seconds=round(time.perf_counter() - start, 3),
        grid_nll={f"{k:.3g}": v for k, v in grid_nll.items()},
    )
    return post


def _is_count(subnetwork: Any) -> bool:
    return subnetwork is None or isinstance(subnetwork, (int, np.integer))


def _check_full_fits(hessian: str, n_params: int, max_memory, dev) -> None:
    if hessian != "full":
        return
    need = _estimate_full_bytes(n_params)
    budget = memory_budget(max_memory, dev)
    if need > budget:
        raise RashomonError(
            f"a full Hessian over {n_params} parameters needs {format_bytes(need)}, more than "
            f"the {format_bytes(budget)} budget; use hessian 'kron' or 'diag', a smaller "
            "subset, or raise --max-memory"
        )


def _largest_variance_subnetwork(model, loader, hessian, n_sub, common, max_memory, dev):
    """Subnetwork of the n weights of largest diagonal-Laplace marginal variance among the
    conv/linear parameters (normalisation layers held at their MAP values)."""
    from laplace import Laplace
    from laplace.utils.subnetmask import LargestVarianceDiagLaplaceSubnetMask

    for mod in model.modules():
        if isinstance(mod, NORM_LAYERS):
            for p in mod.parameters(recurse=False):
                p.requires_grad_(False)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if not 0 < n_sub <= total:
        raise RashomonError(f"subnetwork size must be in [1, {total}], got {n_sub}")
    _check_full_fits(hessian, n_sub, max_memory, dev)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diag = Laplace(
            model,
            "classification",
            subset_of_weights="all",
            hessian_structure="diag",
            backend=PerSampleGGN,
        )
        mask = LargestVarianceDiagLaplaceSubnetMask(model, n_sub, diag)
        indices = mask.select(loader).cpu()
    la = Laplace(
        model,
        "classification",
        subset_of_weights="subnetwork",
        hessian_structure=hessian,
        subnetwork_indices=indices.long(),
        backend=PerSampleGGN,
        **common,
    )
    # The varied parameters are the tensors holding a selected weight; their other entries
    # keep MAP values in every sample.
    slices = _param_slices(model, trainable)
    touched = [
        n
        for n in trainable
        if bool(((indices >= slices[n].start) & (indices < slices[n].stop)).any())
    ]
    columns = torch.cat([torch.arange(slices[n].start, slices[n].stop) for n in touched])
    return touched, columns, la
