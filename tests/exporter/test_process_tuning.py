"""cmc-export re-executes itself once with glibc's transparent-huge-page tunable (process_tuning)."""
import json
import platform
import subprocess
import sys

from cmc.exporter.process_tuning import OPT_OUT, TUNABLE, reexec_plan

THP = "always [madvise] never\n"


def test_plan_adds_the_tunable_once_and_keeps_the_command():
    argv, env = reexec_plan({"PATH": "/bin"}, ["/usr/bin/python3", "/venv/bin/cmc-export", "m.pt"], "/py", "glibc", THP)
    assert argv == ["/py", "/venv/bin/cmc-export", "m.pt"] and env["GLIBC_TUNABLES"] == f"{TUNABLE}=1"
    assert env["PATH"] == "/bin"
    assert reexec_plan(env, argv, "/py", "glibc", THP) is None  # the re-executed process carries on


def test_plan_keeps_the_users_tunables():
    _, env = reexec_plan({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, ["p", "x"], "/py", "glibc", THP)
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{TUNABLE}=1"


def test_no_plan_where_it_cannot_help_or_is_refused():
    assert reexec_plan({OPT_OUT: "1"}, ["p", "x"], "/py", "glibc", THP) is None
    assert reexec_plan({}, ["p", "x"], "/py", "musl", THP) is None
    assert reexec_plan({}, ["p", "x"], "/py", "glibc", "always madvise [never]\n") is None
    assert reexec_plan({}, ["p", "x"], "/py", "glibc", None) is None


def test_the_command_runs_re_executed_with_the_same_arguments():
    code = ("import json, os, sys; from cmc.exporter.process_tuning import reexec_with_huge_pages; "
            "reexec_with_huge_pages(); print(json.dumps([sys.argv[1:], os.environ.get('GLIBC_TUNABLES')]))")
    r = subprocess.run([sys.executable, "-c", code, "a", "b c"], capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1  # printed once: by the process that carried on
    args, tunables = json.loads(lines[0])
    assert args == ["a", "b c"]
    try:
        thp = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        thp = "[never]"
    glibc = platform.libc_ver()[0] == "glibc"
    assert tunables == (f"{TUNABLE}=1" if glibc and "[never]" not in thp else None)
