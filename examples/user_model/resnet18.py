"""A user's own network for `rashomon run --model`: torchvision's ResNet-18 for small grey images.

    # train it your way (here: a plain loop on BreastMNIST), save the state dict, then audit it
    RASHOMON_DATA=../shared/data python examples/user_model/resnet18.py --out resnet18.pt
    rashomon run examples/user_model/audit.yaml --model examples.user_model.resnet18:build \
        --weights resnet18.pt --out runs/user-resnet18

`build` is what rashomon calls to rebuild the architecture; it may declare `num_classes`,
`in_channels` and `size`, which rashomon passes from the task.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torchvision.models import resnet18


def build(num_classes: int = 2, in_channels: int = 1) -> nn.Module:
    """ResNet-18 with a 3×3 stem and no max-pool, as MedMNIST v2 adapts it to 28 px images."""
    net = resnet18(num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


def main() -> None:
    ap = argparse.ArgumentParser(description="Train the example ResNet-18 on a MedMNIST task.")
    ap.add_argument("--dataset", default="breastmnist")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", default="resnet18.pt")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import rashomon as rs  # only to read the data; the training loop is the user's own

    torch.manual_seed(args.seed)
    task = rs.load_task(args.dataset)
    net = build(task.num_classes, task.train.x.shape[1])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    x, y = task.train.x.float(), task.train.y
    start = time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            acc = (net(task.val.x.float()).argmax(-1) == task.val.y).float().mean()
        print(f"epoch {epoch + 1}: validation accuracy {acc:.3f}")
    torch.save(net.state_dict(), args.out)
    print(f"saved {args.out} after {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
