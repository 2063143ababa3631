"""The stage functions `rashomon run` chains; each is a thin wrapper over the Python API."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from rashomon.run import StageContext


@torch.no_grad()
def predict_probs(model: torch.nn.Module, x: torch.Tensor, kind: str, device: str) -> np.ndarray:
    """Probabilities of one model: softmax [N, C], or sigmoid [N, L] for multilabel."""
    model.eval().to(device)
    out = []
    for i in range(0, len(x), 512):
        logits = model(x[i : i + 512].to(device))
        p = torch.sigmoid(logits) if kind == "multilabel" else torch.softmax(logits, dim=1)
        out.append(p.cpu())
    return torch.cat(out).numpy()


def map_scores(probs: np.ndarray, y: np.ndarray, kind: str) -> dict[str, float]:
    """Accuracy and AUROC of one model (macro one-vs-rest for multiclass, mean over labels for
    multilabel), computed with scikit-learn for the training summary."""
    from sklearn.metrics import roc_auc_score

    if kind == "multilabel":
        acc = float(((probs > 0.5) == y).mean())
        aucs = [
            roc_auc_score(y[:, j], probs[:, j]) for j in range(y.shape[1]) if len(set(y[:, j])) > 1
        ]
        return {"accuracy": acc, "auroc": float(np.mean(aucs))}
    acc = float((probs.argmax(1) == y).mean())
    if probs.shape[1] == 2:
        auc = roc_auc_score(y, probs[:, 1])
    else:
        auc = roc_auc_score(y, probs, multi_class="ovr", labels=list(range(probs.shape[1])))
    return {"accuracy": acc, "auroc": float(auc)}


def run_train(ctx: StageContext) -> None:
    from rashomon.models.train import save_checkpoint, train

    task = ctx.task()
    t = ctx.cfg.train
    history: list[dict] = []
    model = train(
        task,
        t.arch,
        t.epochs,
        ctx.cfg.seed,
        **t.fit_options(),
        device=ctx.device,
        progress=ctx.progress,
        history=history,
    )
    save_checkpoint(model, ctx.out / "model.pt", task)
    pd.DataFrame(history).to_csv(ctx.out / "history.csv", index=False)
    from rashomon.models.registry import count_parameters

    ctx.summary["parameters"] = count_parameters(model)
    ctx.summary["epochs_run"] = len(history)
    for split in ("val", "test"):
        s = task.split(split)
        scores = map_scores(
            predict_probs(model, s.x, task.kind, ctx.device), s.y.numpy(), task.kind
        )
        for k, v in scores.items():
            ctx.summary[f"{split}_{k}"] = round(v, 4)


def run_sample(ctx: StageContext) -> None:
    from rashomon.sets.stage import run_sample_stage

    run_sample_stage(ctx)


def run_evaluate(ctx: StageContext) -> None:
    from rashomon.evaluate import run_evaluate_stage

    run_evaluate_stage(ctx)


def run_decide(ctx: StageContext) -> None:
    from rashomon.decide.stage import run_decide_stage

    run_decide_stage(ctx)


def run_report(ctx: StageContext) -> None:
    from rashomon.report.stage import run_report_stage

    run_report_stage(ctx)
