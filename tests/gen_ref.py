#!/usr/bin/python3
"""Generate tests/ref/torch_ref.safetensors: PyTorch ground truth for latent.

latent must reproduce PyTorch exactly, so its unit tests compare layer
forward/backward passes, losses, a whole-model gradient and optimizer steps
against values computed here.  The output is committed so the C tests need no
Python; rerun with `/usr/bin/python3 tests/gen_ref.py` after changing this
script.  See tests/ref/README.md for the tensor names.
"""
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from torchref import AutoEncoder, build_autoencoder, save_safetensors  # noqa: E402

OUT = os.path.join(HERE, "ref", "torch_ref.safetensors")


def layer_case(out, name, module, x_shape):
    """Forward a random x, backward a random dy; store x,w,b,y,dy,dx,dw,db."""
    x = torch.randn(x_shape, requires_grad=True)
    y = module(x)
    dy = torch.randn_like(y)
    y.backward(dy)
    out.update({f"{name}.x": x, f"{name}.w": module.weight, f"{name}.b": module.bias,
                f"{name}.y": y, f"{name}.dy": dy, f"{name}.dx": x.grad,
                f"{name}.dw": module.weight.grad, f"{name}.db": module.bias.grad})


def activation_case(out, name, fn, x):
    x.requires_grad_(True)
    y = fn(x)
    dy = torch.randn_like(y)
    y.backward(dy)
    out.update({f"{name}.x": x, f"{name}.y": y, f"{name}.dy": dy, f"{name}.dx": x.grad})


def loss_case(out, name, fn, y, t):
    """Store prediction y, target t, scalar loss as shape [1], and dloss/dy."""
    y = y.detach().requires_grad_(True)
    loss = fn(y, t)
    loss.backward()
    out.update({f"{name}.y": y, f"{name}.t": t, f"{name}.loss": loss.reshape(1),
                f"{name}.dy": y.grad})


def model_case(out):
    model = AutoEncoder(d=2, p=0.0)
    x = torch.rand(4, 1, 28, 28)
    z = model.encoder(x)
    y = model.decoder(z)
    loss = F.mse_loss(y, x)
    loss.backward()
    for pname, param in model.state_dict(keep_vars=True).items():
        out[f"model.{pname}"] = param
        out[f"model.grad.{pname}"] = param.grad
    out.update({"model.x": x, "model.z": z, "model.y": y, "model.loss": loss.reshape(1)})


def params_out(out, prefix, modules):
    for part, mod in modules.items():
        for pname, param in mod.state_dict(keep_vars=True).items():
            out[f"{prefix}.{part}.{pname}"] = param
            out[f"{prefix}.grad.{part}.{pname}"] = param.grad


def cnn_case(out):
    """The PyTorch MNIST example's CNN (dropout off: eval-mode masks), softmax
    cross-entropy on 4 images: logits, loss and every gradient."""
    features = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Dropout(0.0), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.0))
    head = nn.Sequential(nn.Linear(128, 10))
    x = torch.rand(4, 1, 28, 28)
    t = torch.tensor([3, 7, 0, 9])
    logits = head(features(x))
    loss = F.cross_entropy(logits, t)
    loss.backward()
    params_out(out, "cnn", {"features": features, "head": head})
    out.update({"cnn.x": x, "cnn.t": t.float(), "cnn.logits": logits, "cnn.loss": loss.reshape(1)})


def vae_case(out, name, k, bernoulli):
    """The default VAE (encoder to 2k, z = mu + exp(logvar/2) eps with eps
    stored here, decoder): loss per image = reconstruction + KL, mean over 4."""
    enc, dec = build_autoencoder(2 * k, 0.0)
    dec[0] = nn.Linear(k, 64)
    x = torch.rand(4, 1, 28, 28)
    if bernoulli:
        x = (x > 0.5).float()
    h = enc(x)
    mu, lv = h[:, :k], h[:, k:]
    eps = torch.randn(4, k)
    z = mu + torch.exp(0.5 * lv) * eps
    y = dec(z)
    if bernoulli:
        rec = F.binary_cross_entropy(y, x, reduction="sum") / 4
    else:
        rec = ((y - x) ** 2).sum() / 2 / 4
    kl = (-0.5 * (1 + lv - mu ** 2 - lv.exp()).sum()) / 4
    loss = rec + kl
    loss.backward()
    params_out(out, name, {"encoder": enc, "decoder": dec})
    out.update({f"{name}.x": x, f"{name}.eps": eps, f"{name}.z": z, f"{name}.y": y, f"{name}.loss": loss.reshape(1),
                f"{name}.rec": rec.reshape(1), f"{name}.kl": kl.reshape(1)})


OPTIMIZERS = {  # name -> (class, explicitly chosen hyperparameters; rest default)
    "sgd": (torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=1e-2)),
    "adam": (torch.optim.Adam, dict(lr=1e-3, weight_decay=5e-5)),
    "adamw": (torch.optim.AdamW, dict(lr=1e-3, weight_decay=1e-2)),
    "rmsprop": (torch.optim.RMSprop, dict(lr=1e-2, weight_decay=5e-5)),
    "adadelta": (torch.optim.Adadelta, dict(lr=1.0, weight_decay=5e-5)),
}


def optim_case(out, meta, name, cls, hyper):
    """Three steps from p0 with gradients g1..g3; store p after each step."""
    p = torch.randn(37, requires_grad=True)
    out[f"optim.{name}.p0"] = p.detach().clone()
    opt = cls([p], **hyper)
    for k in (1, 2, 3):
        g = torch.randn(37)
        p.grad = g.clone()
        opt.step()
        out[f"optim.{name}.g{k}"] = g
        out[f"optim.{name}.p{k}"] = p.detach().clone()
    meta[f"optim.{name}"] = " ".join(f"{k}={v}" for k, v in hyper.items())


def main():
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float32)
    out, meta = {}, {"generator": "tests/gen_ref.py", "torch": torch.__version__}

    layer_case(out, "conv_a", nn.Conv2d(2, 4, 3, stride=2, padding=1), (3, 2, 7, 7))
    layer_case(out, "conv_b", nn.Conv2d(3, 5, 3, stride=2, padding=0), (2, 3, 8, 8))
    layer_case(out, "conv_c", nn.Conv2d(2, 3, 3, stride=1, padding=1), (2, 2, 5, 5))
    layer_case(out, "convt_a", nn.ConvTranspose2d(4, 2, 3, stride=2, padding=0, output_padding=0), (3, 4, 3, 3))
    layer_case(out, "convt_b", nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1), (2, 3, 4, 4))
    layer_case(out, "convt_c", nn.ConvTranspose2d(2, 3, 3, stride=1, padding=1, output_padding=0), (2, 2, 5, 5))
    layer_case(out, "dense", nn.Linear(6, 5), (4, 6))
    activation_case(out, "relu", torch.relu, torch.randn(4, 10))
    activation_case(out, "sigmoid", torch.sigmoid, torch.randn(4, 10) * 3)

    loss_case(out, "mse", F.mse_loss, torch.sigmoid(torch.randn(4, 10)), torch.rand(4, 10))
    loss_case(out, "bce", F.binary_cross_entropy, torch.sigmoid(torch.randn(4, 10)), torch.rand(4, 10))
    loss_case(out, "xent", lambda y, t: F.cross_entropy(y, t.long()),
              torch.randn(5, 10), torch.randint(0, 10, (5,)).float())

    model_case(out)
    activation_case(out, "maxpool", nn.MaxPool2d(2), torch.randn(2, 3, 6, 7))
    cnn_case(out)
    vae_case(out, "vae_g", 3, False)
    vae_case(out, "vae_b", 2, True)
    for name, (cls, hyper) in OPTIMIZERS.items():
        optim_case(out, meta, name, cls, hyper)
    # Conv2d between wide layers goes through Winograd's F(2x2, 3x3) in
    # latent (src/nn/winograd.c): odd sizes give tiles cut by the edges.
    # Last, so that the cases above keep their random draws.
    layer_case(out, "conv_w1", nn.Conv2d(16, 24, 3, stride=1, padding=1), (2, 16, 5, 7))
    layer_case(out, "conv_w0", nn.Conv2d(16, 16, 3, stride=1, padding=0), (3, 16, 7, 6))

    out = {k: v.detach().float().contiguous() for k, v in out.items()}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_safetensors(OUT, out, meta)
    print(f"wrote {OUT}: {len(out)} tensors, {os.path.getsize(OUT)} bytes, torch {torch.__version__}")
    groups = {}
    for k in out:  # "conv_a.x" -> conv_a, "optim.sgd.p1" -> optim.sgd
        groups.setdefault(".".join(k.split(".")[:2 if k.startswith("optim.") else 1]), []).append(k)
    for group, names in groups.items():
        print(f"  {group}: {len(names)} tensors")


if __name__ == "__main__":
    main()
