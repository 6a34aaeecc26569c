"""Write the sample checkpoints: seeded weights, BatchNorm statistics calibrated on random inputs.

    python -m samples.make_checkpoints [OUT_DIR]       (default: samples/checkpoints)

The AdderNet ResNet-20 is saved the way nn.DataParallel training scripts save it
({'state_dict': {'module.<name>': tensor}}); the others as plain state_dicts.
"""
import sys
from pathlib import Path

import torch

from samples import addernet_resnet20, bnn_nin, spconv_resnet

MODELS = {
    "addernet_resnet20": (addernet_resnet20.resnet20, True),
    "bnn_nin": (bnn_nin.nin, False),
    "spconv_resnet20": (spconv_resnet.sp_resnet20, False),
}


def calibrate(model, batches=4, batch_size=8, shape=(3, 32, 32), seed=0):
    """Give BatchNorm layers real running statistics (cumulative average over random batches)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(batch_size, *shape, generator=g))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.1
    return model.eval()


def build(name: str, seed: int = 0):
    torch.manual_seed(seed)
    fn, _ = MODELS[name]
    return calibrate(fn())


def save(name: str, out_dir: Path) -> Path:
    model = build(name)
    sd = model.state_dict()
    if MODELS[name][1]:
        sd = {"state_dict": {f"module.{k}": v for k, v in sd.items()}}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.pth"
    torch.save(sd, path)
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "checkpoints"
    for n in MODELS:
        print(save(n, out))
