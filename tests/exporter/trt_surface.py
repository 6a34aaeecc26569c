"""The TensorRT Python surface cmc's recording stand-in (fake_tensorrt.py) may offer, per TensorRT version, read
from the real bindings' sources: which enum members and which class methods/properties each version binds.

The committed table (trt_surface.json) is what this module generated from the TensorRT OSS sources of each
version (``python/src``: the pybind11 bindings, pyCore.cpp, pyGraph.cpp, pyOnnx.cpp, ...; ``include``: the
headers, for the enumerators' values). The fake builds its enums from the table and may define only methods the
table lists, so a call cmc makes that a version does not bind fails in CI (tests/exporter/test_trt_surface.py).

Regenerate (read-only sources, outside the repository):

    python -m tests.exporter.trt_surface 10.3=/path/to/TensorRT-10.3.0 11.1=/path/to/TensorRT-11.1 \
        > tests/exporter/trt_surface.json
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# The parts of the module the fake models (Python names as the bindings spell them).
ENUMS = ("BuilderFlag", "NetworkDefinitionCreationFlag", "OnnxParserFlag", "MemoryPoolType", "TensorIOMode",
         "Severity", "DataType")
CLASSES = ("Builder", "IBuilderConfig", "INetworkDefinition", "IOptimizationProfile", "ITimingCache", "OnnxParser",
           "Runtime", "ICudaEngine", "IExecutionContext", "ILogger")

_DECL = re.compile(r'py::(class_|enum_)<\s*([\w:]+)(?:[^<>]|<[^<>]*>)*>\s*(\w+)?\s*[({]\s*\w+\s*,\s*"(\w+)"')
_MEMBER = re.compile(r'\.(def|def_property|def_property_readonly|def_readwrite|def_readonly|value)\s*\(\s*"(\w+)"'
                     r'(?:\s*,\s*([\w:]+))?')


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _statement(text: str, start: int, depth: int = 0) -> str:
    """text[start:] up to the first ';' outside brackets and string literals (a lambda's body is inside);
    ``depth`` brackets are open at ``start``."""
    k, quote = start, None
    while k < len(text):
        ch = text[k]
        if quote:
            if ch == "\\":
                k += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                break
        elif ch == ";" and depth <= 0:
            break
        k += 1
    return text[start:k]


def _top_level_members(chain: str, depth: int = 0) -> list[tuple[str, str, str]]:
    """The .def("x" / .value("x" calls of a chain at bracket depth 0 (not those inside lambdas); ``depth``
    brackets are open where the chain starts."""
    keep, quote = [], None
    for ch in chain:
        if quote:
            keep.append(ch if depth == 0 else " ")
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        if ch in ")]}":
            depth -= 1
        keep.append(ch if depth == 0 or ch in "(\"" else " ")
        if ch in "([{":
            depth += 1
    flat = "".join(keep)
    out = []
    for m in re.finditer(r'\.(def|def_property|def_property_readonly|def_readwrite|def_readonly|value)\s*\(', chain):
        if flat[m.start()] != ".":
            continue  # inside a lambda or an argument list
        args = _MEMBER.match(chain, m.start())
        if args:
            out.append(args.groups())
    return out


def read_bindings(src: Path) -> tuple[dict, dict]:
    """({enum: {member: "Cpp::kENUMERATOR"}}, {class: sorted attribute names}) from the pybind11 sources."""
    enums: dict[str, dict[str, str]] = {}
    classes: dict[str, set[str]] = {}
    for path in sorted(src.rglob("*.cpp")):
        text = _strip_comments(path.read_text(errors="replace"))
        decls = list(_DECL.finditer(text))
        for k, d in enumerate(decls):
            kind, _, var, name = d.groups()
            end = decls[k + 1].start() if k + 1 < len(decls) else len(text)
            body = text[d.end():end]
            # a chained declaration ends at its first top-level ';'; a named one (py::class_<...> v{m, ...}) is
            # continued by v.def(...) statements further on
            # body starts inside the declaration's ( or {; a named class continues in var.def(...) statements
            members = _top_level_members(_statement(body, 0, depth=1), depth=1)
            if var:  # (anywhere after the declaration: a nested enum's declaration may come first)
                rest = text[d.end():]
                for m in re.finditer(rf"\b{var}\s*(?=\.)", rest):
                    members += _top_level_members(_statement(rest, m.end()))
            if kind == "enum_":
                enums.setdefault(name, {}).update({m: cpp for f, m, cpp in members if f == "value"})
            else:
                classes.setdefault(name, set()).update(m for f, m, _ in members if f != "value")
    return enums, {k: sorted(v) for k, v in classes.items()}


_ENUM_DECL = re.compile(r"enum\s+class\s+(\w+)\s*:\s*\w+\s*\{(.*?)\};", re.S)


def read_enum_values(include: Path) -> dict[str, dict[str, int]]:
    """{C++ enum: {enumerator: value}} from the headers (implicit values count on from the previous one)."""
    out: dict[str, dict[str, int]] = {}
    for path in sorted(include.rglob("*.h")):
        text = _strip_comments(path.read_text(errors="replace"))
        for m in _ENUM_DECL.finditer(text):
            values, nxt = {}, 0
            for item in m.group(2).split(","):
                item = re.sub(r"\bTRT_DEPRECATED_ENUM\b|\bTRT_DEPRECATED\b", "", item).strip()
                if not item:
                    continue
                name, _, value = (s.strip() for s in item.partition("="))
                if value:
                    try:
                        nxt = int(value, 0)
                    except ValueError:
                        continue  # an expression (another enumerator): not needed for the enums cmc uses
                values[name] = nxt
                nxt += 1
            out.setdefault(m.group(1), values)
    return out


def surface(root: Path) -> dict:
    """The table entry of one TensorRT source tree (``root`` holds include/ and python/src/)."""
    enums, classes = read_bindings(root / "python" / "src")
    values = read_enum_values(root / "include")
    table_enums = {}
    for name in ENUMS:
        if name not in enums:
            continue
        members = {}
        for member, cpp in enums[name].items():
            cpp_enum, _, enumerator = cpp.rpartition("::")
            members[member] = values.get(cpp_enum.rpartition("::")[2], {}).get(enumerator)
        table_enums[name] = members
    return {"enums": table_enums, "classes": {c: classes[c] for c in CLASSES if c in classes}}


def build_table(sources: dict[str, Path]) -> dict:
    return {"provenance": "generated by tests/exporter/trt_surface.py from the TensorRT OSS sources "
                          "(python/src pybind11 bindings, include headers) of each version",
            "versions": {v: surface(Path(p)) for v, p in sorted(sources.items())}}


def main(argv: list[str]) -> int:
    sources = dict(a.split("=", 1) for a in argv)
    if not sources:
        print(__doc__, file=sys.stderr)
        return 2
    json.dump(build_table({v: Path(p) for v, p in sources.items()}), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
