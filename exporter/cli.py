"""cmc-export: the command line.

    cmc-export MODEL --to onnx|trt [--arch mod:fn] [--arch-args k=v,...] [--input-shape 1x3x32x32] [-o DIR]
               [--slim PERCENT] [--align-channels N] [--accept-deviation] [--no-verify] [--debug]
    cmc-export verify ARTIFACT.onnx MODEL [--arch mod:fn] [--input-shape ...] [--json F] [--junit F]
    cmc-export shrink MODEL --arch mod:fn [--input-shape ...] -o DIR

Errors are one line on stderr and a non-zero exit code (2: bad input, 3: parity failure,
1: internal error); --debug adds the traceback.
"""
from __future__ import annotations

import argparse
import sys
import traceback

from . import __version__
from .errors import CmcError

SUBCOMMANDS = ("verify", "shrink", "serve")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line like every other error."""

    def error(self, message):
        raise CmcError(f"{message} (see {self.prog} --help)")


def _batches(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of batch sizes") from None
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError("batch sizes must be positive")
    return vals


def _trt_batch(text: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch {text!r} must be min:opt:max, e.g. 1:8:32") from None
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3 or not (0 < parts[0] <= parts[1] <= parts[2]):
        raise argparse.ArgumentTypeError(f"--batch {text!r} must be min:opt:max with 0 < min <= opt <= max")
    return parts


TARGETS = ("onnx", "trt", "triton")


def _targets(text: str) -> str:
    parts = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in parts if t not in TARGETS]
    if not parts or bad:
        raise argparse.ArgumentTypeError(f"--to {text!r}: choose from {', '.join(TARGETS)} (several joined by commas)")
    return ",".join(parts)


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if any(not n or not all(c.isalnum() or c in "_-." for c in n) for n in names):
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated tensor names (letters, digits, _ - .)")
    return names


def _positive_mib(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workspace {text!r} must be a whole number of MiB") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"--workspace must be a positive number of MiB, got {v}")
    return v


def _timing_cache_file(text: str) -> str:
    import os

    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"--timing-cache {text} is a folder; give a file name (created when missing)")
    return text


def _percent(text: str) -> float:
    try:
        v = float(text.strip().rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage (e.g. 50)") from None
    if not 0 < v < 100:
        raise argparse.ArgumentTypeError(f"{text!r}: the percentage must be between 0 and 100 "
                                         "(the repositories' --percent 0.5 is --slim 50)")
    return v


def _alignment(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a channel count (e.g. 8)") from None
    if not 1 <= v <= 1024:
        raise argparse.ArgumentTypeError(f"{text!r}: must be between 1 (no alignment) and 1024")
    return v


def _common(p: argparse.ArgumentParser):
    p.add_argument("--arch", metavar="MODULE:CALLABLE",
                   help="builds the model a state_dict belongs to; MODULE is imported from PYTHONPATH or the current "
                        "folder. It is called with the checkpoint's 'cfg' (and other entries) where it takes them")
    p.add_argument("--arch-args", metavar="K=V,...",
                   help="keyword arguments for --arch, e.g. depth=56,dataset=cifar10 or '{\"depth\": 56}' "
                        "(Python literals; a bare word is a string); they win over the checkpoint's")
    p.add_argument("--slim", type=_percent, metavar="PERCENT",
                   help="Network Slimming: prune the PERCENT %% of BatchNorm2d channels with the smallest |gamma| "
                        "(one global threshold, gamma = beta = 0, as the repository's prune scripts' --percent "
                        "PERCENT/100) before shrinking; the outputs change, and by how much is reported")
    p.add_argument("--input-shape", metavar="NxCxHxW", help="example input shape (default 1x3x32x32); the batch stays dynamic")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow MODEL to be a pickled nn.Module or a .pt2 program (unpickling runs code from the file: only for files you trust)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def _latent(p: argparse.ArgumentParser):
    p.add_argument("--binarize-weights", choices=("xnor", "sign"), default=None,
                   help="the checkpoint holds latent float weights of binary layers (the codebase binarizes them "
                        "outside the model): binarize the convs fed by a binarizing activation — xnor: XNOR-Net's "
                        "centre, clamp, mean|W|*sign(W); sign: sign(W) (BinaryNet). Reported per layer")
    p.add_argument("--zero-weights-as-plus-one", action="store_true",
                   help="binary layers whose sign-binarized weights hold exact zeros (torch.sign(0) = 0, exported "
                        "as exact float convs by default): take those zeros as +1 so the layers stay binary; the "
                        "deviation is measured and reported, and parity is checked against that model")


def export_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="cmc-export",
        description="Export a compressed PyTorch model (AdderNet, BNN, SPConv, pruned) to ONNX with com.cmc custom "
                    "nodes or to a TensorRT engine, and prove parity with PyTorch. Subcommands: 'verify', 'shrink' "
                    "(see cmc-export verify --help).")
    p.add_argument("model", metavar="MODEL", help="state_dict (.pt/.pth, with --arch), torch.export program (.pt2, with --allow-pickle), "
                                                   "or a pickled nn.Module (with --allow-pickle)")
    p.add_argument("--to", type=_targets, default="onnx", metavar="onnx|trt|triton",
                   help="artifacts to produce, several joined by commas (default onnx; the ONNX is always written): "
                        "trt a TensorRT engine, triton a Triton model repository in DIR/model_repository")
    p.add_argument("--input-names", type=_names, metavar="A,B", help="graph input names in the ONNX (default input)")
    p.add_argument("--output-names", type=_names, metavar="A,B",
                   help="graph output names in the ONNX (default output, or output_0, output_1, ...)")
    p.add_argument("-o", "--output", default="cmc_out", metavar="DIR", help="output folder (default ./cmc_out)")
    p.add_argument("--no-verify", action="store_true", help="skip the parity check (not recommended)")
    p.add_argument("--verify-batch", type=_batches, default=(1, 5), metavar="B1,B2",
                   help="batch sizes the parity check runs (default 1,5)")
    p.add_argument("--static-batch", action="store_true", help="export with the batch size fixed to --input-shape's")
    p.add_argument("--no-shrink", action="store_true", help="keep pruned channels instead of removing them")
    p.add_argument("--no-packed-chains", action="store_true",
                   help="keep float tensors between binary layers (default: a BinaryConv read only by binarizing "
                        "BinaryConvs passes its signs on as packed bits)")
    p.add_argument("--accept-deviation", action="store_true",
                   help="let shrinking drop constant channels where that is not exact; the deviation from the original "
                        "is a warning on stderr and in the report, and parity is checked against the shrunk model")
    p.add_argument("--align-channels", type=_alignment, default=1, metavar="N",
                   help="when shrinking, keep some removable channels so conv channel counts stay multiples of N "
                        "(e.g. 8 for vectorised kernels); the cost is reported. Default 1: remove exactly what "
                        "was pruned")
    _latent(p)
    trt = p.add_argument_group("TensorRT (--to trt)")
    trt.add_argument("--fp16", action="store_true",
                     help="FP16 engine: cmc writes a float16 ONNX (float32 where float16 would change results) and "
                          "TensorRT builds it strongly typed; checked against the contracts' FP16 tolerances")
    trt.add_argument("--tf32", action="store_true",
                     help="let TensorRT use TF32 for float32 layers (off by default: FP32 engines compute in float32)")
    trt.add_argument("--batch", type=_trt_batch, default=None, metavar="MIN:OPT:MAX",
                     help="optimisation profile for the batch; with --to triton also max_batch_size (MAX) and the "
                          "dynamic batcher's preferred batch size (OPT); default there 1:8:32")
    trt.add_argument("--workspace", type=_positive_mib, default=1024, metavar="MiB",
                     help="builder workspace limit (default 1024)")
    trt.add_argument("--timing-cache", type=_timing_cache_file, metavar="FILE", help="TensorRT timing cache to read and update")
    trt.add_argument("--plugin-lib", metavar="FILE", help="use this cmc plugin library instead of building one")
    triton = p.add_argument_group("Triton (--to triton)")
    triton.add_argument("--triton-device", choices=("cpu", "cuda"), default="cpu",
                        help="instance kind and onnxruntime execution provider of the Triton models (default cpu)")
    _common(p)
    p.add_argument("--version", action="version", version=f"cmc {__version__}")
    return p


def verify_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cmc-export verify",
                                description="Re-check an exported ONNX artifact against the PyTorch model "
                                            "(for CI): writes a JSON verdict and JUnit XML, exit 3 on mismatch.")
    p.add_argument("artifact", metavar="ARTIFACT.onnx")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--verify-batch", type=_batches, default=(1, 5), metavar="B1,B2")
    p.add_argument("--tolerance", type=float, default=None, help="override the contract tolerance (fraction of max|y|)")
    p.add_argument("--json", metavar="FILE", default="cmc-verdict.json", help="verdict JSON (default cmc-verdict.json)")
    p.add_argument("--junit", metavar="FILE", default="cmc-verdict.xml", help="JUnit XML (default cmc-verdict.xml)")
    _latent(p)
    p.add_argument("--accept-deviation", action="store_true",
                   help="the artifact was exported with --accept-deviation: check it against the shrunk model")
    p.add_argument("--accept-constant-output", action="store_true",
                   help="pass even when an output is the same for every verify input (the check then proves "
                        "nothing about it; the warning stays in the verdict)")
    _common(p)
    return p


def shrink_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cmc-export shrink",
                                description="Physically remove pruned channels and write the shrunk model as a "
                                            "torch.export program (.pt2) with a JSON report.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("-o", "--output", default="cmc_shrunk", metavar="DIR")
    p.add_argument("--accept-deviation", action="store_true")
    p.add_argument("--align-channels", type=_alignment, default=1, metavar="N")
    _common(p)
    return p


def main(argv=None) -> int:
    if argv is None:  # the command itself, not a call from Python: tune the process first (process_tuning)
        from .process_tuning import reexec_with_huge_pages

        reexec_with_huge_pages()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        if argv and argv[0] in SUBCOMMANDS:
            cmd, rest = argv[0], argv[1:]
            if cmd == "serve":  # the same command as `cmc serve` (its own error prefix and exit codes)
                from .serve.cli import serve_main

                return serve_main(rest)
            return {"verify": _cmd_verify, "shrink": _cmd_shrink}[cmd](rest)
        return _cmd_export(argv)
    except CmcError as e:
        if debug:
            traceback.print_exc()
        print(f"cmc-export: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("cmc-export: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as e:  # a bug in cmc or a library: still one line unless --debug
        if debug:
            traceback.print_exc()
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        print(f"cmc-export: internal error: {type(e).__name__}: {msg} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


def _shape(text):
    from .load import parse_shape

    return parse_shape(text) if text else None


def _arch_args(text):
    from .arch import parse_arch_args

    return parse_arch_args(text)


def _cmd_export(argv) -> int:
    args = export_parser().parse_args(argv)
    from .pipeline import ExportOptions, run_export

    trt = {}
    targets = set(args.to.split(","))
    if "trt" in targets:
        trt = dict(fp16=args.fp16, tf32=args.tf32, batch=args.batch, workspace_mb=args.workspace,
                   timing_cache=args.timing_cache, plugin_lib=args.plugin_lib)
    opts = ExportOptions(model=args.model, to=args.to, arch=args.arch, input_shape=_shape(args.input_shape),
                         out_dir=args.output, verify=not args.no_verify, verify_batches=args.verify_batch,
                         allow_pickle=args.allow_pickle, shrink=not args.no_shrink,
                         accept_deviation=args.accept_deviation, dynamic_batch=not args.static_batch,
                         packed_chains=not args.no_packed_chains,
                         binarize_weights=args.binarize_weights, trt=trt,
                         zero_weights_as_plus_one=args.zero_weights_as_plus_one,
                         arch_args=_arch_args(args.arch_args), slim=args.slim, align_channels=args.align_channels,
                         input_names=args.input_names, output_names=args.output_names,
                         triton=dict(batch=args.batch, device=args.triton_device) if "triton" in targets else {})
    report = run_export(opts)
    parity = report.get("parity", {})
    if "passed" in parity:
        print(f"cmc-export: ok: {report['export']['onnx']} in {args.output} "
              f"(parity {parity.get('worst', 0):.3g}"
              f" <= {parity['tolerance']:g} of max|y|)")
    else:
        print(f"cmc-export: ok: {report['export']['onnx']} in {args.output} (parity not checked)")
    if "triton" in report:
        print(f"cmc-export: Triton model repository: {args.output}/{report['triton']['repository']} "
              f"(models {', '.join(report['triton']['models'])}); serve it with: cmc serve "
              f"{args.output}/{report['triton']['repository']}")
    return 0


def _cmd_verify(argv) -> int:
    args = verify_parser().parse_args(argv)
    from .verify_cmd import run_verify

    return run_verify(args.artifact, args.model, arch=args.arch, input_shape=_shape(args.input_shape),
                      batches=args.verify_batch, tolerance=args.tolerance, json_path=args.json,
                      junit_path=args.junit, allow_pickle=args.allow_pickle, binarize_weights=args.binarize_weights,
                      zero_weights_as_plus_one=args.zero_weights_as_plus_one,
                      arch_args=_arch_args(args.arch_args), slim=args.slim, accept_deviation=args.accept_deviation,
                      accept_constant_output=args.accept_constant_output)


def _cmd_shrink(argv) -> int:
    args = shrink_parser().parse_args(argv)
    from .shrink_cmd import run_shrink

    return run_shrink(args.model, arch=args.arch, input_shape=_shape(args.input_shape), out_dir=args.output,
                      accept_deviation=args.accept_deviation, allow_pickle=args.allow_pickle,
                      arch_args=_arch_args(args.arch_args), slim=args.slim, align_channels=args.align_channels)


if __name__ == "__main__":
    sys.exit(main())
