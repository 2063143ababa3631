"""Probabilities and penultimate features of one network, in batches of images.

The set's models are evaluated by `rashomon.sets.predict`; these run a single `nn.Module` (the
MAP model, a retrained seed, a white-box attacked member) the plain way.
"""

from __future__ import annotations

import torch

from rashomon.models.registry import Classifier

SINGLE_MODEL_BATCH = 512  # images per forward when evaluating one network


@torch.no_grad()
def model_probs(
    model: torch.nn.Module,
    x: torch.Tensor,
    multilabel: bool = False,
    device: str | torch.device = "cpu",
    batch: int = SINGLE_MODEL_BATCH,
) -> torch.Tensor:
    """Probabilities of one network, float32 [N, C] on the CPU: softmax over classes, or
    sigmoid per label when `multilabel`."""
    model.eval().to(device)
    out = []
    for i in range(0, len(x), batch):
        logits = model(x[i : i + batch].to(device)).float()
        out.append((torch.sigmoid(logits) if multilabel else logits.softmax(-1)).cpu())
    if not out:
        return torch.empty(0, 0)
    return torch.cat(out)


@torch.no_grad()
def model_features(
    model: Classifier,
    x: torch.Tensor,
    device: str | torch.device = "cpu",
    batch: int = SINGLE_MODEL_BATCH,
) -> torch.Tensor:
    """Penultimate activations of one network (its `features`), float32 [N, D], on `device`."""
    model.eval().to(device)
    return torch.cat([model.features(x[i : i + batch].to(device)) for i in range(0, len(x), batch)])
