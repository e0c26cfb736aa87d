#!/usr/bin/python3
"""Evaluate a latent checkpoint in PyTorch: tools/torch_eval.py CHECKPOINT [--data DIR]

Proves latent's model.safetensors is a faithful PyTorch model: the tensors are
loaded with load_state_dict(strict=True) into tools/torchref.AutoEncoder (so
names and shapes must match exactly), and the MNIST test-set MSE printed here
should equal the one latent reports.

Only the default architecture is supported; the latent size d is inferred from
encoder.10.weight [d, 64] and dropout from the "latent.dropout" metadata (it is
inactive in eval mode anyway).  Prints {"test_mse": ..., "n": 10000}, where
test_mse is the float64 sum of per-batch float32 squared-error sums divided by
the number of pixels.
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchref import AutoEncoder, load_idx, load_safetensors, mnist_dir, mnist_file  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", default=mnist_dir(), help="MNIST directory (default %(default)s)")
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()

    tensors, meta = load_safetensors(args.checkpoint)
    if "encoder.10.weight" not in tensors:
        sys.exit(f"{args.checkpoint}: no encoder.10.weight; only the default architecture is supported")
    d = tensors["encoder.10.weight"].shape[0]
    p = float(meta.get("latent.dropout", "0"))
    model = AutoEncoder(d=d, p=p)
    model.load_state_dict(tensors, strict=True)
    model.eval()

    images = load_idx(mnist_file("t10k-images-idx3-ubyte", args.data))
    x_all = images.reshape(-1, 1, 28, 28).to(torch.float32) / 255.0
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(x_all), args.batch):
            x = x_all[i:i + args.batch]
            total += float(F.mse_loss(model(x), x, reduction="sum"))
    print(json.dumps({"test_mse": total / x_all.numel(), "n": len(x_all)}))


if __name__ == "__main__":
    main()
