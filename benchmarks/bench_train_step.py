"""AdderNet ResNet-20 (CIFAR-10) training step: the research code's unfold formulation
(samples/addernet_resnet20.py) against the same network with cmc AdderConv2d layers, whose forward
and backward run the cmc CUDA kernels, and against the same network with cuDNN convolutions in place of
the adder layers (what a multiplication network of that shape costs). Times forward + backward + SGD
step per batch.

Also the whole-network FP16 figures of issue 10 (``fp16_network``): the AdderNet ResNet-20 with
trained-AdderNet weights (|w| up to 60, BatchNorms recalibrated, then folded: tests/plugins/adder_data.py)
run on the GPU in FP16 activations (float32 AdderConv weights and arithmetic) and in FP32, against the
same network in float64 on the CPU: error of max|y| on the logits, argmax agreement (all inputs, and the
inputs whose float64 top-2 margin exceeds twice the FP16 tolerance), and inference time at batch 64.

    python benchmarks/bench_train_step.py --out /tmp/cmc_train.json [--batch 64 128]

GPU only; --smoke runs one tiny step per variant (and the FP16 figures on 8 inputs) on the CPU to check
the code paths.
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


def to_cudnn_conv(model: nn.Module) -> nn.Module:
    """The same network with each research adder2d replaced by an nn.Conv2d of the same shape."""
    from samples.addernet_resnet20 import adder2d

    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, adder2d):
                setattr(parent, name, nn.Conv2d(child.input_channel, child.output_channel, child.kernel_size,
                                                stride=child.stride, padding=child.padding, bias=bool(child.bias)))
    return model


def fp16_network(device: str, smoke: bool) -> dict:
    """Whole-network FP16-activation and FP32 figures against float64 on the CPU (see the module doc)."""
    from cmc.plugins.adder_conv.reference import CONTRACT
    from tests.plugins import adder_data  # the repository root is on sys.path (_common)

    model = adder_data.trained_magnitude_resnet20(seed=0)
    x = adder_data.network_inputs(8 if smoke else 64, seed=1)
    deployed = adder_data.deployment_form(model, x[:2])
    with torch.no_grad():
        ref = copy.deepcopy(deployed).double()(x.double())
    top2 = ref.topk(2, dim=1).values
    decisive = (top2[:, 0] - top2[:, 1]) > 2 * CONTRACT.tol("float16") * ref.abs().max()
    out = {"model": "addernet_resnet20, |w| up to 60, BatchNorm folded", "reference": "float64 on the CPU",
           "tolerance": {"fp16": CONTRACT.tol("float16"), "fp32": CONTRACT.tol("float32")},
           "decisive_inputs": int(decisive.sum())}
    for name, dt in (("fp16_activations", torch.float16), ("fp32", torch.float32)):
        if device == "cpu" and dt == torch.float16 and not smoke:
            continue
        net = copy.deepcopy(deployed).to(device, dt)
        xd = x.to(device, dt)
        with torch.no_grad():
            y = net(xd)
            t = guarded(lambda: net(xd), device, warmup=1 if smoke else 3, iters=1 if smoke else 20)
        f = adder_data.fp16_network_figures(y, ref)
        agree = y.detach().cpu().double().argmax(1) == ref.argmax(1)
        f["decisive_argmax_agreement"] = float(agree[decisive].double().mean()) if bool(decisive.any()) else None
        f["inference_batch"] = int(x.shape[0])
        f.update({k: v for k, v in t.items() if k != "iters"})
        out[name] = f
        print(f"fp16 network {name}: {f}", file=sys.stderr)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--out", help="JSON file (default: stdout)")
    ap.add_argument("--smoke", action="store_true", help="batch 2, CPU allowed: code-path check only")
    ap.add_argument("--no-fp16-network", action="store_true", help="skip the whole-network FP16 figures")
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
    variants = {"unfold_formulation": base, "cmc_kernels": to_cmc(base), "cudnn_conv_network": to_cudnn_conv(base)}
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
    network = None if args.no_fp16_network else fp16_network(device, args.smoke)
    write_json({"benchmark": "addernet_resnet20_train_step", **device_info(device), "tf32": False,
                "records": records, "fp16_network": network}, args.out)


if __name__ == "__main__":
    main()
