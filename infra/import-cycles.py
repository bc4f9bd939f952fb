#!/usr/bin/env python3
"""Finds import cycles between the files of each crate (issue 21).

A file depends on another when it names an item of the other's module: `crate::a::b::Item`,
`super::x::Item`, or `use` of either. A `pub use` in a crate root or a module file is a facade,
not a dependency: a path through it is followed to the file that defines the module. Inline test
modules (`#[cfg(test)] mod tests { ... }` at the end of a file) are skipped: a test naming its
own crate is no cycle of the program.

Prints every cycle (strongly connected component of two or more files) and exits 1 if any.
Usage: infra/import-cycles.py [CRATE_DIR ...]   (default: every workspace member with a src/)
"""

import os
import re
import sys

PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*?)\}\s*;", re.S)
FACADE = re.compile(r"^\s*pub(?:\([a-z]+\))?\s+use\s+([a-z_][a-z0-9_:]*)::\{?", re.M)


def module_files(src):
    """Module path (tuple) -> file, for every .rs file under src."""
    modules = {}
    for root, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, name), src)[:-3].split(os.sep)
            if rel in (["lib"], ["main"]):
                path = ()
            elif rel[-1] == "mod":
                path = tuple(rel[:-1])
            else:
                path = tuple(rel)
            modules[path] = os.path.join(root, name)
    return modules


def program_text(file):
    text = open(file, encoding="utf-8").read()
    # Comments name paths without depending on them.
    text = re.sub(r"//[^\n]*", "", text)
    # Test modules (`#[cfg(test)] mod name { ... }`, other attributes such as `#[allow(...)]` may
    # sit between), wherever they sit, by their braces.
    out, at = [], 0
    for start in re.finditer(r"#\[cfg\(test\)\](?:\s*#\[[^\]]*\])*\s*(pub(\([a-z]+\))?\s+)?mod\s+\w+\s*\{", text):
        if start.start() < at:
            continue
        out.append(text[at : start.start()])
        depth, i = 1, start.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        at = i
    out.append(text[at:])
    return "".join(out)


def aliases(modules):
    """`pub use a::b;` / `pub use a::{b, c};` in a module file: the name b in that module stands
    for the module a::b, or for the module a when b is an item of it (a type, a function)."""
    table = {}
    for path, file in modules.items():
        text = program_text(file)
        for line in re.findall(r"^\s*pub(?:\([a-z]+\))?\s+use\s+([^;]+);", text, re.M):
            line = re.sub(r"\s+", "", line)
            if "{" in line:
                prefix, _, rest = line.partition("{")
                names = [prefix + n for n in rest.rstrip("}").split(",") if n]
            else:
                names = [line]
            for name in names:
                target = [p for p in name.split("::") if p not in ("self", "crate")]
                alias = target[-1].split("as")[-1]
                # A re-exported module, or an item of one: the path leads to its module's file.
                for candidate in (tuple(path) + tuple(target), tuple(target)):
                    if candidate in modules:
                        table[tuple(path) + (alias,)] = candidate
                        break
                    if candidate[:-1] in modules and candidate[:-1] != tuple(path):
                        table[tuple(path) + (alias,)] = candidate[:-1]
                        break
    return table


def resolve(parts, modules, table):
    """The file module a path names: its longest prefix that is a module, through aliases."""
    parts = tuple(parts)
    for _ in range(8):
        changed = False
        for i in range(len(parts), 0, -1):
            if parts[:i] in table:
                parts = table[parts[:i]] + parts[i:]
                changed = True
                break
        if not changed:
            break
    for i in range(len(parts), -1, -1):
        if parts[:i] in modules:
            return parts[:i]
    return ()


def edges(modules):
    table = aliases(modules)
    graph = {path: set() for path in modules}
    for path, file in modules.items():
        text = program_text(file)
        # A facade line is no dependency.
        text = re.sub(r"^\s*pub(?:\([a-z]+\))?\s+use\s+[^;]+;", "", text, flags=re.M)
        text = re.sub(r"^\s*(pub(\([a-z]+\))?\s+)?mod\s+\w+\s*;", "", text, flags=re.M)
        base_of = {"crate": (), "super": path[:-1]}
        found = []
        for kind, head, group in USE_GROUP.findall(text):
            for item in re.split(r"\s*,\s*", group):
                item = item.strip().split(" as ")[0].split("::{")[0]
                if item and item != "self":
                    found.append((kind, head + "::" + item))
                elif item == "self":
                    found.append((kind, head))
        found += PATH.findall(text)
        for kind, tail in found:
            parts = base_of[kind] + tuple(p for p in tail.split("::") if p)
            target = resolve(parts, modules, table)
            if target != path:
                graph[path].add(target)
    return graph


def cycles(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    crates = sys.argv[1:] or sorted(
        d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d, "src")) and d != "target"
    )
    failed = False
    for crate in crates:
        modules = module_files(os.path.join(root, crate, "src"))
        for component in cycles(edges(modules)):
            failed = True
            names = sorted("::".join(p) or "(root)" for p in component)
            print(f"{crate}: {len(names)} files import each other: {', '.join(names)}")
    if not failed:
        print(f"no import cycles in {', '.join(crates)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
