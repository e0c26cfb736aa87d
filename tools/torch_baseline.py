#!/usr/bin/python3
"""The study's baseline protocol in PyTorch, for comparing final quality with latent.

    tools/torch_baseline.py [--seed 1] [--epochs 40] [--threads 2] [--out model.safetensors]
                            [--latent 2] [--batch 256] [--lr 1e-3] [--dropout 0] [--noise SIGMA]

By default the d=2 autoencoder (tools/torchref.py), batch 256, Adam lr 1e-3,
weight decay 5e-5, dropout 0; trains on the first 50k MNIST training images,
validates on the last 10k (as latent does), tests on the 10k test set. With
--noise SIGMA it is the denoising autoencoder: fresh Gaussian noise (not
clipped) on every training batch, validation and test inputs corrupted once
with a fixed generator, every loss against the clean images. Prints one JSON
line per epoch and a final one with the test MSE. Set OMP_WAIT_POLICY=PASSIVE.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchref import AutoEncoder, load_idx, mnist_file, save_safetensors  # noqa: E402


def mse(model, x, noisy=None):
    noisy = x if noisy is None else noisy
    model.eval()
    with torch.no_grad():
        total = sum(F.mse_loss(model(noisy[i:i + 1000]), x[i:i + 1000], reduction="sum").item()
                    for i in range(0, len(x), 1000))
    model.train()
    return total / x.numel()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    ap.add_argument("--latent", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--noise", type=float, default=0.0, help="Gaussian input noise sigma (denoising autoencoder)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train = load_idx(mnist_file("train-images-idx3-ubyte")).reshape(-1, 1, 28, 28).float() / 255.0
    test = load_idx(mnist_file("t10k-images-idx3-ubyte")).reshape(-1, 1, 28, 28).float() / 255.0
    x_train, x_val = train[:50000], train[50000:]
    model = AutoEncoder(d=args.latent, p=args.dropout)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=5e-5)
    fixed = torch.Generator().manual_seed(12345)
    val_in = x_val + args.noise * torch.randn(x_val.shape, generator=fixed) if args.noise else None
    test_in = test + args.noise * torch.randn(test.shape, generator=fixed) if args.noise else None
    start = time.perf_counter()
    for epoch in range(args.epochs):
        perm = torch.randperm(len(x_train))
        total = 0.0
        for i in range(0, len(x_train), args.batch):
            x = x_train[perm[i:i + args.batch]]
            inp = x + args.noise * torch.randn_like(x) if args.noise else x
            opt.zero_grad()
            loss = F.mse_loss(model(inp), x)
            loss.backward()
            opt.step()
            total += loss.item() * len(x)
        print(json.dumps({"epoch": epoch + 1, "train_loss": total / len(x_train), "val_loss": mse(model, x_val, val_in)}),
              flush=True)
    result = {"seed": args.seed, "test_mse": mse(model, test, test_in), "seconds": time.perf_counter() - start}
    if args.noise:
        m = mse(model, test, test_in)
        result["test_psnr"] = 10 * math.log10(1 / m)
    if args.out:
        save_safetensors(args.out, {k: v.contiguous() for k, v in model.state_dict().items()})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
