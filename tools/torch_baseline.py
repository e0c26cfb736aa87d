#!/usr/bin/python3
"""The study's baseline protocol in PyTorch, for comparing final quality with latent.

    tools/torch_baseline.py [--seed 1] [--epochs 40] [--threads 2] [--out model.safetensors]

d=2 autoencoder (tools/torchref.py), batch 256, Adam lr 1e-3, weight decay 5e-5,
dropout 0; trains on the first 50k MNIST training images, validates on the
last 10k (as latent does), tests on the 10k test set. Prints one JSON line per
epoch and a final one with the test MSE. Set OMP_WAIT_POLICY=PASSIVE.
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchref import AutoEncoder, load_idx, mnist_file, save_safetensors  # noqa: E402


def mse(model, x):
    model.eval()
    with torch.no_grad():
        total = sum(F.mse_loss(model(x[i:i + 1000]), x[i:i + 1000], reduction="sum").item()
                    for i in range(0, len(x), 1000))
    model.train()
    return total / x.numel()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train = load_idx(mnist_file("train-images-idx3-ubyte")).reshape(-1, 1, 28, 28).float() / 255.0
    test = load_idx(mnist_file("t10k-images-idx3-ubyte")).reshape(-1, 1, 28, 28).float() / 255.0
    x_train, x_val = train[:50000], train[50000:]
    model = AutoEncoder(d=2, p=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-5)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        perm = torch.randperm(len(x_train))
        total = 0.0
        for i in range(0, len(x_train), 256):
            x = x_train[perm[i:i + 256]]
            opt.zero_grad()
            loss = F.mse_loss(model(x), x)
            loss.backward()
            opt.step()
            total += loss.item() * len(x)
        print(json.dumps({"epoch": epoch + 1, "train_loss": total / len(x_train), "val_loss": mse(model, x_val)}),
              flush=True)
    result = {"seed": args.seed, "test_mse": mse(model, test), "seconds": time.perf_counter() - start}
    if args.out:
        save_safetensors(args.out, {k: v.contiguous() for k, v in model.state_dict().items()})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
