"""The networks `latent train --model` trains, in PyTorch, for the benchmarks.

Each builder mirrors a spec in src/nn/spec.c layer for layer (same shapes,
same dropout places), so both sides do the same arithmetic:
  ae, dae  lt_default_spec: tools/torchref.py's AutoEncoder (dae only adds
           Gaussian input noise, sigma 1, in the training loop);
  vae      lt_default_vae_spec: the encoder ends in 2k (means, log-variances),
           z = mu + exp(lv/2) eps, the decoder starts from k;
  clf      lt_classifier_spec on the default spec: the encoder up to its last
           dense layer, then dense(10);
  cnn      lt_mnist_cnn_spec: the PyTorch MNIST example's CNN.
"""
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from torchref import AutoEncoder, build_autoencoder  # noqa: E402


class VAE(nn.Module):
    def __init__(self, k=3, p=0.0):
        super().__init__()
        self.k = k
        self.encoder, self.decoder = build_autoencoder(2 * k, p)
        self.decoder[0] = nn.Linear(k, 64)

    def forward(self, x):
        h = self.encoder(x)
        mu, lv = h[:, :self.k], h[:, self.k:]
        z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
        return self.decoder(z), mu, lv


def classifier(d=2, p=0.0, classes=10):
    encoder, _ = build_autoencoder(d, p)
    return nn.Sequential(*list(encoder)[:-1], nn.Linear(64, classes))


def mnist_cnn(classes=10):
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Dropout(0.25), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(128, classes))


def build(model, latent, dropout):
    """(module, loss(module, x, labels)) for one of latent's --model names."""
    if model in ("ae", "dae"):
        net = AutoEncoder(d=latent, p=dropout)
        if model == "ae":
            return net, lambda m, x, t: F.mse_loss(m(x), x)
        return net, lambda m, x, t: F.mse_loss(m(x + torch.randn_like(x)), x)
    if model == "vae":
        net = VAE(k=latent, p=dropout)

        def vae_loss(m, x, t):
            # latent's default likelihood gaussian:1, per image: sum (y-x)^2 / 2 + KL.
            y, mu, lv = m(x)
            rec = ((y - x) ** 2).sum() / 2
            kl = -0.5 * (1 + lv - mu ** 2 - lv.exp()).sum()
            return (rec + kl) / len(x)
        return net, vae_loss
    if model == "clf":
        return classifier(latent, dropout), lambda m, x, t: F.cross_entropy(m(x), t)
    if model == "cnn":
        return mnist_cnn(), lambda m, x, t: F.cross_entropy(m(x), t)
    raise ValueError(f"unknown model {model}")


# `latent train --model`'s own defaults (src/cli/cmd_train.c), where they differ from ae's.
OPTIM = {"ae": dict(lr=1e-3, weight_decay=5e-5), "dae": dict(lr=1e-3, weight_decay=5e-5),
         "vae": dict(lr=1e-3, weight_decay=5e-5), "clf": dict(lr=0.006, weight_decay=5e-5),
         "cnn": dict(lr=1e-3, weight_decay=0.0)}
