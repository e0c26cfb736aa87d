#!/usr/bin/python3
"""PyTorch inference throughput of latent's models, for bench/run.

    OMP_WAIT_POLICY=PASSIVE bench/torch_infer.py --threads T [--model ae] [--batch 1000] [--latent 2]

Encodes and decodes one batch of random images (--model ae, dae), or gives a
classifier's class probabilities (clf, cnn: softmax of the logits, as
lt_model_predict does), in eval mode under
torch.no_grad(), repeated for about 0.3 s per sample, and prints the median
of 5 as one JSON line: {"framework": "pytorch", "images_per_sec": ...}.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--latent", type=int, default=2)
    ap.add_argument("--model", default="ae", choices=["ae", "dae", "clf", "cnn"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    net, _ = torch_models.build(args.model, args.latent, 0.0)
    net.eval()
    model = (lambda x: torch.softmax(net(x), 1)) if args.model in ("clf", "cnn") else net
    x = torch.rand(args.batch, 1, 28, 28)
    times = []
    with torch.no_grad():
        model(x)  # warm-up
        for _ in range(5):
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 0.3:
                model(x)
                n += 1
            times.append((time.perf_counter() - t0) / n)
    print(json.dumps({"framework": "pytorch", "model": args.model, "threads": args.threads, "batch": args.batch,
                      "images_per_sec": args.batch / statistics.median(times)}))


if __name__ == "__main__":
    main()
