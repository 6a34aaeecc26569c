"""AdderNet ResNet-20 (CIFAR-10) training step: the research code's unfold formulation
(samples/addernet_resnet20.py) against the same network with cmc AdderConv2d layers, whose forward
and backward run the cmc CUDA kernels. Times forward + backward + SGD step per batch.

    python benchmarks/bench_train_step.py --out /tmp/cmc_train.json [--batch 64 128]

GPU only; --smoke runs one tiny step per variant on the CPU to check the code paths.
"""
from __future__ import annotations

import argparse
import copy
import sys

import torch
from torch import nn

from _common import device_info, guarded, require_cuda, write_json


def to_cmc(model: nn.Module) -> nn.Module:
    """Replace each research adder2d by cmc's AdderConv2d with the same weights (eta = 0.2 is the
    research code's /5 adaptive scale)."""
    from cmc.plugins.adder_conv import AdderConv2d
    from samples.addernet_resnet20 import adder2d

    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, adder2d):
                new = AdderConv2d(child.input_channel, child.output_channel, child.kernel_size, stride=child.stride,
                                  padding=child.padding, bias=bool(child.bias), eta=0.2)
                with torch.no_grad():
                    new.weight.copy_(child.adder)
                    if child.bias:
                        new.bias.copy_(child.b)
                setattr(parent, name, new)
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--out", help="JSON file (default: stdout)")
    ap.add_argument("--smoke", action="store_true", help="batch 2, CPU allowed: code-path check only")
    args = ap.parse_args(argv)
    device = require_cuda(args.smoke)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    if device == "cuda":
        from cmc.plugins._cuda import loader

        if loader.load() is None:
            sys.exit(f"cmc CUDA extension unavailable: {loader.unavailable_reason()}")
    from samples.addernet_resnet20 import resnet20

    torch.manual_seed(0)
    base = resnet20()
    variants = {"unfold_formulation": base, "cmc_kernels": to_cmc(base)}
    batches = [2] if args.smoke else args.batch
    records = []
    for batch in batches:
        x = torch.randn(batch, 3, 32, 32, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        for name, model in variants.items():
            model = copy.deepcopy(model).to(device).train()
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            loss_fn = nn.CrossEntropyLoss()

            def step(model=model, opt=opt):
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                opt.step()

            r = guarded(step, device, warmup=1 if args.smoke else 3, iters=1 if args.smoke else args.iters)
            if device == "cuda" and "error" not in r:
                torch.cuda.reset_peak_memory_stats()
                step()
                torch.cuda.synchronize()
                r["peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
            records.append(dict(model="addernet_resnet20", variant=name, batch=batch, **r))
            print(f"batch {batch:4d} {name:20s} {r.get('ms_median', r.get('error'))}", file=sys.stderr)
            del model, opt
            if device == "cuda":
                torch.cuda.empty_cache()
    write_json({"benchmark": "addernet_resnet20_train_step", **device_info(device), "tf32": False,
                "records": records}, args.out)


if __name__ == "__main__":
    main()
