"""cmc-export's own process: transparent huge pages for the C library's large allocations.

Research AdderNet code materialises N x M x CK x L tensors (hundreds of MB per layer at 224x224). glibc
serves each with a fresh mmap that the kernel fills 4 KiB page by page. Measured on a 2-core AMD EPYC, one
forward of an AdderNet ResNet-50 took 7.7 million page faults and 12 s of system time, against 5 s of
arithmetic. glibc's ``glibc.malloc.hugetlb=1`` tunable asks for transparent huge pages on those mappings
(madvise). With it, the faults fell 180-fold and the forward from 9.2 s to 3.5-5.7 s, with the same peak
memory.

glibc reads tunables only at start-up, so the command line re-executes itself once with the tunable added
(same interpreter, same arguments, same process id). Nothing changes where the C library is not glibc,
where transparent huge pages are off (``never``), or where ``CMC_MALLOC_DEFAULT=1`` is set.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb"
OPT_OUT = "CMC_MALLOC_DEFAULT"
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def reexec_plan(environ: dict, orig_argv: list[str], executable: str, libc: str, thp: str | None):
    """``(argv, env)`` to re-execute with, or None to carry on as is."""
    if environ.get(OPT_OUT) or libc != "glibc" or not executable or len(orig_argv) < 1:
        return None
    if thp is None or "[never]" in thp:
        return None
    tunables = environ.get("GLIBC_TUNABLES", "")
    if TUNABLE in tunables:  # set already: by the user, or by this very re-execution
        return None
    env = dict(environ, GLIBC_TUNABLES=f"{tunables}:{TUNABLE}=1" if tunables else f"{TUNABLE}=1")
    return [executable, *orig_argv[1:]], env


def reexec_with_huge_pages() -> None:
    """Re-execute this process with the tunable (see the module text); returns only where it does not."""
    if sys.platform != "linux":
        return
    try:
        thp = THP_SETTING.read_text()
    except OSError:
        thp = None
    plan = reexec_plan(dict(os.environ), list(getattr(sys, "orig_argv", [])), sys.executable,
                       platform.libc_ver()[0], thp)
    if plan is None:
        return
    argv, env = plan
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(argv[0], argv, env)
    except OSError:  # cannot re-execute (unusual sandbox): run as is, only slower
        return
