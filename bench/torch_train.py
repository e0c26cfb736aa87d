#!/usr/bin/python3
"""PyTorch training-throughput baseline for latent's benchmarks.

    OMP_WAIT_POLICY=PASSIVE bench/torch_train.py --threads T --batch B \
        [--model ae] [--latent 2] [--limit N] [--epochs 1] [--dropout 0]

Trains the same network as `latent train --model M` (bench/torch_models.py:
ae, dae, vae, clf, cnn) with its loss and Adam with latent's defaults for that
model (ae: lr=1e-3, weight_decay=5e-5; MSE loss) on MNIST train images
(float32 / 255, first N with --limit), reshuffled each epoch by a
torch.Generator seeded with 1, last partial batch included.  Only the training
loop is timed: the images are loaded and converted to a float tensor up front.

Set OMP_WAIT_POLICY=PASSIVE in the environment (the caller's job; it must be
set before torch starts): with the default, idle OpenMP threads spin and slow
down everything else on this shared machine, and skew the timing.

Prints one JSON line: framework, threads, batch, images (trained, summed over
epochs), seconds, images_per_sec, final_loss (last batch), torch version.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from torchref import load_idx, mnist_file  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description="PyTorch autoencoder training throughput")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--model", default="ae", choices=sorted(torch_models.OPTIM))
    ap.add_argument("--latent", type=int, default=2, help="d (vae: k)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N images")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--data", default=None, help="MNIST directory")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)

    images = load_idx(mnist_file("train-images-idx3-ubyte", args.data))
    labels = load_idx(mnist_file("train-labels-idx1-ubyte", args.data)).to(torch.int64)
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    x_all = images.reshape(-1, 1, 28, 28).to(torch.float32) / 255.0
    n = len(x_all)

    model, loss_fn = torch_models.build(args.model, args.latent, args.dropout)
    model.train()
    opt = torch.optim.Adam(model.parameters(), **torch_models.OPTIM[args.model])
    gen = torch.Generator().manual_seed(1)

    trained, loss = 0, torch.tensor(float("nan"))
    start = time.perf_counter()
    for _ in range(args.epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, args.batch):
            idx = perm[i:i + args.batch]
            x, t = x_all[idx], labels[idx]
            opt.zero_grad()
            loss = loss_fn(model, x, t)
            loss.backward()
            opt.step()
            trained += len(x)
    seconds = time.perf_counter() - start

    print(json.dumps({"framework": "pytorch", "model": args.model, "threads": args.threads, "batch": args.batch,
                      "images": trained, "seconds": seconds,
                      "images_per_sec": trained / seconds, "final_loss": loss.item(),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
