"""Static SASS figures of the BinaryConv BMMA kernels, from the compiler alone (no GPU needed).

For every instantiation of binaryBmmaConvKernel (tile shape, dtype, packed output, fused): registers
per thread, spills, the resident warps per SM the registers allow, the static instruction count, and
the k-loop — the backward branch whose body holds the BMMAs — in instructions per k-step (the loop
body over its unroll factor) and per BMMA. The k-loop runs kSteps times per warp (9 on the BNN
workhorse layer), so its size per step is what the compiler's changes move; the code outside it
(column set-up, epilogue) runs once per warp but holds branches, so its static size is an upper bound.

These are not speed figures: what a kernel reaches on a GPU is in bench_layers.json / ncu.txt. They
say what each source change did to the instruction stream before a GPU is lent to measure it.

    python benchmarks/sass_stats.py --arch 90 --out benchmarks/results/sass_stats_sm90.json

Needs nvcc (CUDA 13: /usr/local/cuda/bin or PATH) and cuobjdump + nvdisasm (PATH, beside nvcc, or the
nvidia-cuda-cuobjdump / nvidia-cuda-nvdisasm wheels of the test extras).
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import write_json

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "trt_plugins" / "binary_conv" / "binary_bmma_kernels.cu"
# (WM, WN, WARPS_M, WARPS_N, dtype, PACKED_OUT[, FUSED]): builds before the fused variant have no FUSED
KERNEL = re.compile(r"binaryBmmaConvKernelILi(\d+)ELi(\d+)ELi(\d+)ELi(\d+)E(6__half|f)Lb([01])E(?:Lb([01])E)?")
REGS_PER_SM, MAX_WARPS_PER_SM, REG_ALLOC_UNIT = 65536, 64, 256  # sm_80 / sm_87 / sm_90


def cuda_tool(name: str, nvcc: str | None = None) -> str | None:
    """A CUDA binary tool on PATH, beside nvcc (the given one, else PATH's or /usr/local/cuda's), or
    from the nvidia-cuda-* wheels. The build tests use this finder too."""
    nvcc = nvcc or shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    cands = [shutil.which(name), str(Path(nvcc).parent / name), f"/usr/local/cuda/bin/{name}"]
    try:
        import nvidia  # namespace package of the nvidia-cuda-* wheels

        for base in getattr(nvidia, "__path__", []):
            cands += [str(p) for p in sorted(Path(base).glob(f"cu*/bin/{name}"))]
    except ImportError:
        pass
    return next((c for c in cands if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


def parse_sass(text: str) -> dict[str, list[tuple[int, str]]]:
    """{mangled function: [(address, instruction text)]} from `cuobjdump -sass`."""
    funcs: dict[str, list[tuple[int, str]]] = {}
    name = None
    for line in text.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            name = m.group(1)
            funcs[name] = []
            continue
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;", line)
        if name and m:
            funcs[name].append((int(m.group(1), 16), m.group(2)))
    return funcs


def k_loop(ins: list[tuple[int, str]]) -> list[str] | None:
    """The body of the largest backward-branch loop that holds BMMA instructions."""
    where = {a: i for i, (a, _) in enumerate(ins)}
    best = None
    for i, (addr, text) in enumerate(ins):
        m = re.search(r"\bBRA (0x[0-9a-f]+)", text)
        if not m:
            continue
        target = int(m.group(1), 16)
        if target < addr and target in where:
            body = [t for _, t in ins[where[target]:i + 1]]
            if any("BMMA" in t for t in body) and (best is None or len(body) > len(best)):
                best = body
    return best


def registers(text: str) -> dict[str, dict[str, int]]:
    """{mangled function: {"regs": .., "stack": ..}} from `cuobjdump -res-usage`."""
    out, name = {}, None
    for line in text.splitlines():
        m = re.search(r"Function (\S+):", line)
        if m:
            name = m.group(1)
            continue
        m = re.search(r"REG:(\d+) STACK:(\d+)", line)
        if name and m:
            out[name] = {"regs": int(m.group(1)), "stack": int(m.group(2))}
            name = None
    return out


def warps_per_sm(regs: int, warps_per_block: int) -> int:
    per_warp = -(-regs * 32 // REG_ALLOC_UNIT) * REG_ALLOC_UNIT
    blocks = (REGS_PER_SM // per_warp) // warps_per_block
    return min(blocks * warps_per_block, MAX_WARPS_PER_SM)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="90", help="SM version to compile for (80, 87, 90)")
    ap.add_argument("--out", help="JSON file (default: stdout)")
    args = ap.parse_args(argv)
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
    cuobjdump, nvdisasm = cuda_tool("cuobjdump"), cuda_tool("nvdisasm")
    missing = [n for n, t in (("nvcc", nvcc), ("cuobjdump", cuobjdump), ("nvdisasm", nvdisasm)) if t is None]
    if missing:
        sys.exit(f"sass_stats.py: {', '.join(missing)} not found (CUDA toolkit or the nvidia-cuda-* wheels)")
    env = dict(os.environ, PATH=f"{Path(nvdisasm).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "bmma.cubin"
        print(f"compiling {SOURCE.name} for sm_{args.arch} (about 30 s)", file=sys.stderr)
        cmd = [nvcc, "-std=c++17", "-O3", "-cubin", f"-arch=sm_{args.arch}", f"-I{ROOT / 'trt_plugins' / 'common'}",
               f"-I{SOURCE.parent}", str(SOURCE), "-o", str(cubin)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"sass_stats.py: nvcc failed: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode}")
        sass = subprocess.run([cuobjdump, "-sass", str(cubin)], capture_output=True, text=True, env=env, check=True).stdout
        usage = subprocess.run([cuobjdump, "-res-usage", str(cubin)], capture_output=True, text=True, check=True).stdout
        nvcc_version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    regs = registers(usage)
    rows = []
    for name, ins in parse_sass(sass).items():
        m = KERNEL.search(name)
        if not m:
            continue
        wm, wn, am, an = map(int, m.groups()[:4])
        dtype = "fp16" if m.group(5) == "6__half" else "fp32"
        loop = k_loop(ins) or []
        bmma = sum("BMMA" in t for t in loop)
        unroll = max(1, bmma // (wm * wn)) if bmma else 1
        r = regs.get(name, {})
        rows.append(dict(
            tile=f"warp {wm}x{wn}, {am}x{an} warps", fused=m.group(7) == "1", dtype=dtype,
            packed_output=m.group(6) == "1", registers=r.get("regs"), stack_bytes=r.get("stack"),
            warps_per_sm_by_registers=warps_per_sm(r["regs"], am * an) if "regs" in r else None,
            static_instructions=len(ins), k_loop_unroll=unroll,
            k_loop_instructions_per_step=round(len(loop) / unroll, 1), bmma_per_step=bmma // unroll,
            k_loop_instructions_per_bmma=round(len(loop) / bmma, 1) if bmma else None,
            outside_loop_static_instructions=len(ins) - len(loop)))
    rows.sort(key=lambda r: (r["tile"], r["dtype"], r["packed_output"], r["fused"]))
    for r in rows:
        print(f"{r['tile']:24s} {r['dtype']} packed={int(r['packed_output'])} fused={int(r['fused'])}  "
              f"regs {r['registers']}  k-step {r['k_loop_instructions_per_step']} instr / {r['bmma_per_step']} BMMA  "
              f"outside {r['outside_loop_static_instructions']}", file=sys.stderr)
    write_json({"benchmark": "sass_stats", "what": "static SASS of binaryBmmaConvKernel (compiler output, no GPU)",
                "arch": f"sm_{args.arch}", "nvcc": nvcc_version, "host": platform.node() or "unknown",
                "source": str(SOURCE.relative_to(ROOT)), "kernels": rows}, args.out)


if __name__ == "__main__":
    main()
