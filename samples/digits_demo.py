"""A tiny real-data demo: train an AdderNet and a BNN on scikit-learn's bundled digits (8x8), export
both with cmc-export and compare test accuracy in PyTorch and in onnxruntime (CPU, no extra library).

    python -m samples.digits_demo [--epochs 15] [-o digits_out]

Training uses cmc's own layers (AdderConv2d with AdderNet's gradients, BinaryConv2d with STEs).
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from cmc.plugins.adder_conv import AdderConv2d
from cmc.plugins.binary_conv import BinaryConv2d


def adder_net():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        AdderConv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        AdderConv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )


def binary_net():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32),
        BinaryConv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64),
        BinaryConv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - 0.3) / 0.4
    y = torch.tensor(d.target)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=g)
    x, y = x[perm], y[perm]
    n_test = 360
    return (x[n_test:], y[n_test:]), (x[:n_test], y[:n_test])


def train(model, data, epochs, make_optimizer):
    (x, y), _ = data
    opt = make_optimizer(model.parameters())
    g = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(y), generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    # AdderNet activations are large and move fast while training, so the running BatchNorm statistics
    # lag behind the weights: recompute them once over the training set (exact averages, no update).
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for idx in torch.arange(len(y)).split(256):
            model(x[idx])
    return model.eval()


def run(epochs=15, out_dir="digits_out"):
    from cmc.exporter.cli import main as cmc_export
    import onnxruntime as ort

    torch.manual_seed(0)
    data = digits()
    (_, _), (xt, yt) = data
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, build, make_opt in (
                ("addernet", adder_net, lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),  # AdderNet's recipe: SGD
                ("bnn", binary_net, lambda p: torch.optim.Adam(p, lr=3e-3)),                 # BNNs train with Adam
        ):
            model = train(build(), data, epochs, make_opt)
            with torch.no_grad():
                acc_torch = float((model(xt).argmax(1) == yt).float().mean())
            ckpt = Path(tmp) / f"{name}.pth"
            torch.save(model.state_dict(), ckpt)
            out = Path(out_dir) / name
            rc = cmc_export([str(ckpt), "--arch", f"samples.digits_demo:{'adder_net' if name == 'addernet' else 'binary_net'}",
                             "--input-shape", "1x1x8x8", "-o", str(out)])
            if rc != 0:
                raise SystemExit(f"export of {name} failed")
            sess = ort.InferenceSession(str(out / f"{name}.onnx"), providers=["CPUExecutionProvider"])
            logits = sess.run(None, {sess.get_inputs()[0].name: xt.numpy()})[0]
            acc_onnx = float((logits.argmax(1) == yt.numpy()).mean())
            with torch.no_grad():
                agree = float((model(xt).argmax(1).numpy() == logits.argmax(1)).mean())
            results[name] = {"test_accuracy_pytorch": acc_torch, "test_accuracy_onnxruntime": acc_onnx,
                             "prediction_agreement": agree, "test_samples": len(yt)}
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("-o", "--output", default="digits_out")
    a = ap.parse_args()
    run(a.epochs, a.output)
