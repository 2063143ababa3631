"""The user's own network as a `Classifier`: any `nn.Module` mapping images to logits whose last
operation is an `nn.Linear` (found in the module tree, or named).

`as_classifier(net)` splits the network at that layer: `body` is the network with the layer
replaced by `nn.Identity` (so `body(x)` are the penultimate features) and `head` is the layer,
so `forward(x) = head(body(x))` is the network's own forward. That equality is checked on a
probe input; a network whose final Linear is not its last operation (a softmax or a scaling
after it) is refused with the fix. Every source then treats it like a registry architecture:
last-layer sets run the body once, `subset="all"` varies every weight.

A wrapped network is rebuilt from its spec by calling its builder (`"pkg.module:function"`),
or, when it was given as an object, from a pickled copy of its structure that checkpoints and
model sets carry beside the weights (`template`).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rashomon.errors import RashomonError, one_line
from rashomon.models.registry import Classifier

EXTERNAL = "external"
PROBE_TOLERANCE = 1e-4  # relative: the split network must reproduce the original's logits


class WrappedClassifier(Classifier):
    """`body` = the user's network with its last Linear replaced by Identity, `head` = that
    Linear; `last_layer` is the layer's name in the user's network."""

    def __init__(self, net: nn.Module, last_layer: str):
        super().__init__()
        try:
            head = net.get_submodule(last_layer)
        except AttributeError:
            raise RashomonError(
                f"the network has no layer {last_layer!r}; name its final nn.Linear with "
                f"--last-layer ({linear_layers_text(net)})"
            ) from None
        if not isinstance(head, nn.Linear):
            raise RashomonError(
                f"layer {last_layer!r} is a {type(head).__name__}, not an nn.Linear; name the "
                "network's final nn.Linear with --last-layer"
            )
        _set_submodule(net, last_layer, nn.Identity())
        self.body = net
        self.head = head
        self.last_layer = last_layer

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations: the user's network up to its final nn.Linear."""
        return self.body(x)

    def unwrap(self) -> nn.Module:
        """The user's network again (a copy), with its own parameter names."""
        net = copy.deepcopy(self.body)
        _set_submodule(net, self.last_layer, copy.deepcopy(self.head))
        return net


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, module)


def linear_names(net: nn.Module) -> list[str]:
    """Names of the network's `nn.Linear` layers in registration order."""
    return [n for n, m in net.named_modules() if isinstance(m, nn.Linear) and n]


def linear_layers_text(net: nn.Module, limit: int = 8) -> str:
    """'its nn.Linear layers: a, b' (the last `limit`), for error messages."""
    names = linear_names(net)
    if not names:
        return "it has no nn.Linear layer"
    shown = names[-limit:]
    more = f"{len(names) - limit} more, " if len(names) > limit else ""
    return f"its nn.Linear layers: {more}{', '.join(shown)}"


def last_linear_name(net: nn.Module) -> str:
    """Name of the final `nn.Linear` in the module tree (definition order)."""
    names = linear_names(net)
    if not names:
        raise RashomonError(
            "the network has no nn.Linear layer; rashomon needs a final nn.Linear that maps "
            "features to logits (add one, or name it with --last-layer)"
        )
    return names[-1]


def _first_in_channels(net: nn.Module) -> int | None:
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    return None


def structure_digest(net: nn.Module) -> str:
    """A stable digest of the architecture (module tree and parameter shapes, no values)."""
    shapes = [(n, tuple(p.shape)) for n, p in net.state_dict().items()]
    return hashlib.sha256(repr((repr(net), shapes)).encode()).hexdigest()[:16]


def import_builder(target: str) -> Callable[..., nn.Module]:
    """The callable named by `"pkg.module:function"`."""
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise RashomonError(f"model {target!r} is not 'package.module:function'; e.g. my_pkg:build")
    # the current folder is importable, as for `python -m` (a console script's sys.path lacks
    # it), so `--model my_models:build` finds ./my_models.py
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise RashomonError(
            f"cannot import {module!r} for model {target!r} ({exc}); install the package or add "
            "its folder to PYTHONPATH"
        ) from exc
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise RashomonError(f"{module!r} has no {attr!r}; check the model name {target!r}")
    if not callable(obj):
        raise RashomonError(f"{target!r} is not callable; point --model at a function or class")
    return obj


def call_builder(
    builder: Callable[..., nn.Module], options: dict[str, Any], **task_args: Any
) -> nn.Module:
    """Call a builder with `options`, plus those of in_channels / num_classes / size it declares."""
    params = inspect.signature(builder).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in task_args.items() if takes_any or k in params}
    try:
        net = builder(**kwargs, **options)
    except RashomonError:
        raise
    except Exception as exc:  # the user's code: any error, told on one line with its arguments
        name = f"{builder.__module__}:{getattr(builder, '__qualname__', builder)}"
        args = ", ".join(f"{k}={v!r}" for k, v in {**kwargs, **options}.items()) or "none"
        raise RashomonError(
            f"the model builder {name} raised {one_line(exc)}; fix the builder or its "
            f"arguments (called with {args}; -o KEY=VALUE sets its options)"
        ) from exc
    if not isinstance(net, nn.Module):
        raise RashomonError(f"the model builder returned {type(net).__name__}, not an nn.Module")
    return net


def as_classifier(
    net: nn.Module,
    last_layer: str | None = None,
    *,
    probe: torch.Tensor | None = None,
    builder: str | None = None,
    options: dict[str, Any] | None = None,
    size: int | None = None,
) -> Classifier:
    """`net` as a Classifier (returned as is when it already is one with a spec). The network is
    copied, never changed. `probe` (a few input images) checks that the split reproduces the
    network's logits; `builder` ("pkg.module:function") and `options` rebuild it from its spec."""
    if isinstance(net, Classifier) and hasattr(net, "spec"):
        return net
    if not isinstance(net, nn.Module):
        raise RashomonError(f"expected an nn.Module mapping images to logits, got {type(net)}")
    original = net
    name = last_layer or last_linear_name(net)
    wrapped = WrappedClassifier(copy.deepcopy(net), name)
    if probe is not None:
        _check_split(original, wrapped, probe, name, named=last_layer is not None)
    in_channels = _first_in_channels(wrapped.body)
    if in_channels is None and probe is not None:
        in_channels = int(probe.shape[1])
    wrapped.spec = {
        "arch": EXTERNAL,
        "builder": builder,
        "options": dict(options or {}),
        "last_layer": name,
        "in_channels": in_channels,
        "num_classes": int(wrapped.head.out_features),
        "size": size if size is not None else (int(probe.shape[-1]) if probe is not None else None),
        "structure": structure_digest(original),
    }
    return wrapped.eval()


@torch.no_grad()
def _check_split(
    original: nn.Module, wrapped: Classifier, probe: torch.Tensor, name: str, named: bool
) -> None:
    """The split network reproduces the original's logits on `probe`; `named` says whether the
    user named the layer (--last-layer) or it was found."""
    was_training = original.training
    original.eval()
    try:
        want = original(probe)
    except Exception as exc:
        raise RashomonError(
            f"the network failed on input of shape {tuple(probe.shape)} ({one_line(exc)}); "
            "check that it takes the task's images (channels and size) and returns logits"
        ) from exc
    finally:
        original.train(was_training)
    try:
        got = wrapped.eval()(probe)
    except Exception as exc:
        # The layer replaced by Identity is used before the output: not the logits' layer.
        how = "--last-layer" if named else "its last registered nn.Linear"
        raise RashomonError(
            f"splitting the network at {name!r} ({how}) breaks its forward ({one_line(exc)}); "
            "name the nn.Linear that gives the logits with --last-layer "
            f"({linear_layers_text(original)})"
        ) from exc
    if not isinstance(want, torch.Tensor) or want.shape != got.shape:
        raise RashomonError(
            "the network's output is not one logits tensor [N, C]; wrap it so forward returns "
            "logits"
        )
    scale = float(want.abs().max().clamp_min(1.0))
    if float((want - got).abs().max()) > PROBE_TOLERANCE * scale:
        raise RashomonError(
            f"the network's output is not its layer {name!r} applied last (something follows "
            "it, e.g. a softmax or scaling); remove it so forward returns that layer's logits, "
            "or name the right final nn.Linear with --last-layer"
        )


def template_of(model: Classifier) -> Classifier | None:
    """What a checkpoint must carry to rebuild `model`: its structure when it came as an object
    (no builder), else nothing."""
    spec = getattr(model, "spec", {})
    if spec.get("arch") == EXTERNAL and not spec.get("builder"):
        return copy.deepcopy(model).cpu()
    return None


def rebuild(spec: dict[str, Any], template: Classifier | None = None) -> Classifier:
    """A wrapped network from its spec: the builder called again, or a copy of `template`."""
    if spec.get("builder"):
        builder = import_builder(spec["builder"])
        net = call_builder(
            builder,
            spec.get("options", {}),
            in_channels=spec.get("in_channels"),
            num_classes=spec.get("num_classes"),
            size=spec.get("size"),
        )
        out = as_classifier(
            net,
            spec["last_layer"],
            builder=spec["builder"],
            options=spec.get("options"),
            size=spec.get("size"),
        )
        if out.spec.get("structure") != spec.get("structure"):
            raise RashomonError(
                f"{spec['builder']} now builds another architecture than the one saved; "
                "restore the code the model was trained with"
            )
        out.spec = dict(spec)
        return out
    if template is None:
        raise RashomonError(
            "this file holds a user's network without its structure or builder; save it again "
            "with rashomon, or load it with --model pkg.module:function"
        )
    out = copy.deepcopy(template)
    out.spec = dict(spec)
    return out


def model_from_spec(spec: dict[str, Any], template: Classifier | None = None) -> Classifier:
    """Any saved model's network: a registry architecture or a user's wrapped one."""
    from rashomon.models.registry import build_from_spec

    if spec.get("arch") == EXTERNAL:
        return rebuild(spec, template)
    return build_from_spec(spec)


def is_external(arch: str) -> bool:
    """A user's network: "pkg.module:function" or a file holding a pickled nn.Module."""
    return ":" in arch or arch.endswith((".pt", ".pth"))


def arch_identity(arch: str) -> str:
    """What an `arch` string builds, as content: a registry name as it is; a builder
    ("pkg.module:function") with the sha256 of its module's source file, so that editing the
    builder (ReLU → Tanh) is a different architecture; a saved network file by its content."""
    from rashomon.fingerprint import file_sha256

    if arch.endswith((".pt", ".pth")):
        from pathlib import Path

        path = Path(arch).expanduser()
        return f"file:{file_sha256(path)[:16]}" if path.exists() else f"file:{arch}:absent"
    if ":" not in arch:
        return arch
    module = arch.partition(":")[0]
    import_builder(arch)  # a clear error when the builder cannot be imported
    source = inspect.getsourcefile(sys.modules[module])
    if source is None:
        return arch
    from pathlib import Path

    return f"{arch}@{file_sha256(Path(source))[:16]}"


def load_module_file(path: str) -> nn.Module:
    """A whole network saved with `torch.save(net, path)` (its class must be importable)."""
    from pathlib import Path

    if not Path(path).exists():
        raise RashomonError(f"model file {path} does not exist; check --model")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise RashomonError(
            f"cannot load model file {path} ({exc}); save the whole network with "
            "torch.save(net, path), or give --model pkg.module:function and --weights"
        ) from exc
    if not isinstance(obj, nn.Module):
        raise RashomonError(
            f"{path} holds a {type(obj).__name__}, not a network; a state dict goes to --weights "
            "together with --model pkg.module:function"
        )
    return obj


def _shape(value: Any) -> tuple[int, ...] | str:
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else type(value).__name__


def load_weights(net: nn.Module, path: str) -> None:
    """Load a state dict (or a checkpoint dict holding one under 'state_dict' or
    'model_state_dict', a 'module.' prefix of DataParallel stripped) into `net`, strictly."""
    from pathlib import Path

    if not Path(path).exists():
        raise RashomonError(f"weights file {path} does not exist; check --weights")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RashomonError(
            f"cannot read weights {path} ({exc}); save them with torch.save(net.state_dict(), path)"
        ) from exc
    if isinstance(state, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise RashomonError(f"{path} holds no state dict; save torch.save(net.state_dict(), path)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = net.state_dict()
    mismatched = [
        k for k, v in state.items() if k in own and getattr(v, "shape", None) != own[k].shape
    ]
    if mismatched:
        k = mismatched[0]
        raise RashomonError(
            f"weights {path} do not fit the network: {k} has shape {_shape(state[k])} there "
            f"but {tuple(own[k].shape)} in the network ({len(mismatched)} such); check that "
            "--model builds the architecture they were trained with (its options, the task's "
            "classes and channels)"
        )
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RashomonError(
            f"weights {path} do not fit the network: missing {list(missing)[:3]}, unexpected "
            f"{list(unexpected)[:3]}; check that --model builds the architecture they were "
            "trained with"
        )


def build_network(
    arch: str,
    in_channels: int,
    num_classes: int,
    size: int = 28,
    *,
    last_layer: str | None = None,
    probe: torch.Tensor | None = None,
    weights: str | None = None,
    **options: Any,
) -> Classifier:
    """A registry architecture by name, or the user's network: "pkg.module:function" (called
    with `options` and the task's in_channels / num_classes / size it declares) or a file of a
    pickled network. External networks are split at their final nn.Linear (`as_classifier`),
    after `weights` (a state dict file of the user's network) are loaded into them."""
    from rashomon.models.registry import build_model

    if not is_external(arch):
        if weights is not None or last_layer is not None:
            raise RashomonError(
                f"--weights and --last-layer are for your own network (--model); {arch!r} is a "
                "registry architecture that rashomon trains"
            )
        return build_model(arch, in_channels, num_classes, size, **options)
    if ":" in arch and not arch.endswith((".pt", ".pth")):
        net = call_builder(
            import_builder(arch),
            options,
            in_channels=in_channels,
            num_classes=num_classes,
            size=size,
        )
        builder = arch
    else:
        net = load_module_file(arch)
        builder = None
    if weights is not None:
        load_weights(net, weights)
    net.eval()
    model = as_classifier(net, last_layer, probe=probe, builder=builder, options=options, size=size)
    if model.spec["num_classes"] != num_classes:
        raise RashomonError(
            f"the network's last layer has {model.spec['num_classes']} outputs but the task has "
            f"{num_classes} classes (labels); give it {num_classes} outputs"
        )
    if model.spec.get("in_channels") is None:
        model.spec["in_channels"] = in_channels
    return model
