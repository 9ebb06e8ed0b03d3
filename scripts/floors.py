#!/usr/bin/env python3
"""Count the import arrows between the crate's files against its floors.

The crate should read bottom-up (see /work/shared/ARCHITECTURE.md, "Floors"): shared
vocabulary on the ground floor, then the error, classification, timeouts, retries, breakers,
overload guards, policies, the call, the client, and the adapters on top. This script draws
the file graph and says where it points up, and where files import each other in a circle.

Rules
-----
Nodes: the files under src/ (a `mod.rs` is its folder's file; src/lib.rs is the crate root).
A file declared only under `#[cfg(test)]` (`#[cfg(test)] mod fuzzing;`) is test code and
left out.

Edges: file A imports file B when A names a path that resolves to B:
  - `crate::…` and `super::…` (`super::super::…`, `self::…` too) in `use` statements,
    grouped ones included (`use crate::{a::b, c::{d, e}}`), and inline in code
    (`crate::breaker::Breaker::new(..)`, `super::meters::hedge(..)`);
  - in a module's own file, paths through the submodules it declares (`pub use budget::X;`
    in retry/mod.rs is an arrow to retry/budget.rs), as `mod` declarations are imports too.
A path resolves to the longest prefix of its segments that is a file: `crate::retry::state::
RetryState` is src/retry/state.rs, `crate::retry::RetryPolicy` is src/retry/mod.rs (a
re-export counts as an import of the module that re-exports it, which is what a reader
follows), `crate::Error` is src/lib.rs. Comments, doc comments, string literals, `$crate`
in macros, and items under `#[cfg(test)]` (test modules, test-only imports) are skipped.
An edge's names are the first segment after the file (the item imported).

Floors: FLOORS below, bottom-up; a file takes the floor of the first pattern it matches.
Imports inside one floor are fine. An import from a file on a lower floor to one on a higher
floor is an "upward arrow". Choices beyond ARCHITECTURE.md's list:
  - telemetry sits on the error floor: it names errors (ErrorType, the observer) and the
    vocabulary, and every floor above reports through it;
  - redirect.rs (explains a redirect error), caught.rs (turns a panic into an Error) and
    transport.rs (what a reqwest::Error is: kind, delivery) sit on the error floor too: the
    error's constructors use them, or they make an `Error`, and nothing else above it;
  - hedge, read, hook, extras and outer sit on the retry floor: they are the parts of an
    attempt the retry driver runs (race, body read, hooks, the outer retry);
  - breaker/window.rs is the breaker's, src/window.rs the ground's;
  - lib.rs is the top: it only re-exports, so a path through the crate root (`crate::Error`)
    from below is an upward arrow;
  - testkit, fleet (the optional Redis backend of the guards) and resilient.rs (a client's
    whole policy as a layer of a user's own stack) are adapters; call/ is the call's floor.

Circles: strongly connected components of more than one file, each listed with whether all
of its files lie inside one feature folder (the same folder below src/, not src/ itself).
The crate root is left out of the circles: it declares every module and re-exports the public
ones, so with it every file that names `crate::Error` would close one circle through the whole
crate and hide the others. A path through the root from below still counts as an upward
arrow, so those routes are counted, once, there.

Usage: scripts/floors.py [--count] [--src DIR]
  --count   print only `upward=N circles=M circles_outside_a_folder=K`
"""

import os
import re
import sys

# Bottom-up. Each floor: (name, [path patterns relative to src/]); a pattern ending in "/"
# matches a folder, otherwise it is one file.
FLOORS = [
    (
        "vocabulary",
        [
            "window.rs",
            "keyed.rs",
            "redact.rs",
            "outcome.rs",
            "retry_after.rs",
            "bounds.rs",
            "boxed.rs",
            "circuit.rs",
        ],
    ),
    ("error", ["error.rs", "transport.rs", "caught.rs", "redirect.rs", "telemetry/"]),
    ("classify", ["classify/"]),
    ("timeout", ["timeout/"]),
    (
        "retry",
        ["retry/", "hedge/", "read/", "hook/", "extras.rs", "outer.rs"],
    ),
    ("breaker", ["breaker/"]),
    ("overload", ["overload/"]),
    ("policy", ["policy/"]),
    ("call", ["call.rs", "call/"]),
    ("client", ["client/", "pending.rs"]),
    ("adapters", ["middleware.rs", "resilient.rs", "fleet/", "testkit/", "cli/", "probe/"]),
    ("root", ["lib.rs"]),
]


ROOT = "lib.rs"


def floor_of(rel):
    """The floor of the longest pattern that matches `rel` (a file named on its own wins over
    its folder)."""
    best = None
    for index, (_, patterns) in enumerate(FLOORS):
        for pattern in patterns:
            matches = rel == pattern or (pattern.endswith("/") and rel.startswith(pattern))
            if matches and (best is None or len(pattern) > best[1]):
                best = (index, len(pattern))
    return None if best is None else best[0]


# --- reading a file --------------------------------------------------------------------------


def strip_comments_and_strings(text):
    """Blank out comments (doc comments included), string and char literals, keeping line
    structure, so that the rest of the scan sees only code."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
            continue
        if text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
            continue
        raw = re.match(r'b?r(#*)"', text[i : i + 40])
        if raw and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = '"' + raw.group(1)
            j = text.find(end, i + raw.end())
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
            continue
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
            continue
        if c == "'":
            # A char literal ('a', '\n', '\u{..}'), not a lifetime ('a).
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i : i + 12])
            if m:
                out.append("' '")
                i += m.end()
                continue
        out.append(c)
        i += 1
    return "".join(out)


CFG_TEST = re.compile(r"#\[cfg\((?:all\()?\s*test\b[^\]]*\]")


def item_end(code, start):
    """The end of the item that starts at `start`: past its `;` or its matching `}`."""
    depth = 0
    i = start
    while i < len(code):
        c = code[i]
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == ";" and depth == 0:
            return i + 1
        elif c == "{" and depth == 0:
            braces = 1
            i += 1
            while i < len(code) and braces:
                if code[i] == "{":
                    braces += 1
                elif code[i] == "}":
                    braces -= 1
                i += 1
            return i
        i += 1
    return len(code)


def strip_test_items(code):
    """Remove every item under `#[cfg(test)]`; return the code and the names of out-of-line
    modules declared only for tests."""
    test_modules = []
    while True:
        m = CFG_TEST.search(code)
        if not m:
            return code, test_modules
        end = item_end(code, m.end())
        decl = re.search(r"\bmod\s+(\w+)\s*;", code[m.end() : end])
        if decl and code[m.end() : end].rstrip().endswith(";"):
            test_modules.append(decl.group(1))
        code = code[: m.start()] + "\n" * code.count("\n", m.start(), end) + code[end:]


def split_use_tree(tree):
    """Expand a use tree (`crate::{a::b, c::{d, e as f}}`) into its paths."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)  # `x as y` imports x
    tree = re.sub(r"\s+", "", tree)
    brace = tree.find("{")
    if brace < 0:
        return [tree]
    prefix = tree[:brace]
    inner = tree[brace + 1 : tree.rfind("}")]
    parts, depth, current = [], 0, ""
    for ch in inner:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current:
        parts.append(current)
    paths = []
    for part in parts:
        if not part:
            continue
        for sub in split_use_tree(part):
            paths.append(prefix + sub if sub != "self" else prefix.rstrip(":"))
    return paths


USE = re.compile(r"(?<![\w$])use\s+([^;]+);")
INLINE = re.compile(r"(?<![\w$:])((?:crate|super|self)(?:::\w+)+)")


class Module:
    def __init__(self, path, rel, modpath):
        self.path = path
        self.rel = rel
        self.modpath = modpath  # ["retry", "state"]
        self.children = []


def discover(src):
    files = {}
    for root, _, names in os.walk(src):
        for name in names:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, src).replace(os.sep, "/")
            parts = rel[:-3].split("/")
            if rel == "lib.rs":
                parts = []
            elif parts[-1] == "mod":
                parts = parts[:-1]
            files[tuple(parts)] = Module(path, rel, parts)
    return files


def resolve(files, segments):
    """The longest prefix of `segments` that is a file; (module, the rest)."""
    for length in range(len(segments), -1, -1):
        key = tuple(segments[:length])
        if key in files:
            return files[key], segments[length:]
    return None, segments


def analyse(src):
    files = discover(src)
    code_of = {}
    test_only = set()
    for key, module in files.items():
        with open(module.path, encoding="utf-8") as handle:
            code = strip_comments_and_strings(handle.read())
        code, test_modules = strip_test_items(code)
        for name in test_modules:
            test_only.add(tuple(module.modpath) + (name,))
        module.children = re.findall(r"\bmod\s+(\w+)\s*;", code)
        code_of[key] = code
    for key in test_only:
        files.pop(key, None)

    edges = {}  # (from rel, to rel) -> set of names
    for key, module in files.items():
        code = code_of[key]
        paths = []
        for m in USE.finditer(code):
            paths.extend(split_use_tree(m.group(1)))
        rest = USE.sub(lambda m: "\n" * m.group(0).count("\n"), code)
        paths.extend(m.group(1) for m in INLINE.finditer(rest))
        # Paths through this module's own submodules (`budget::SCALE` in retry/mod.rs).
        if module.children:
            child = re.compile(
                r"(?<![\w$:])((?:%s)(?:::\w+)+)" % "|".join(map(re.escape, module.children))
            )
            paths.extend(m.group(1) for m in child.finditer(rest))
        for path in paths:
            segments = [s for s in path.split("::") if s]
            if not segments:
                continue
            base = list(module.modpath)
            if segments[0] == "crate":
                base, segments = [], segments[1:]
            elif segments[0] in ("super", "self"):
                while segments and segments[0] in ("super", "self"):
                    if segments[0] == "super":
                        base = base[:-1]
                    segments = segments[1:]
            elif segments[0] in module.children:
                pass
            else:
                continue  # an external crate or a local name
            target, rest_segments = resolve(files, base + segments)
            if target is None or target is module:
                continue
            name = rest_segments[0] if rest_segments else target.modpath[-1] if target.modpath else "crate"
            edges.setdefault((module.rel, target.rel), set()).add(name)
    return files, edges


def circles(nodes, edges):
    """Tarjan's strongly connected components of more than one node."""
    graph = {node: [] for node in nodes}
    for a, b in edges:
        graph[a].append(b)
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        # Iterative, so deep graphs do not hit the recursion limit.
        work = [(v, iter(sorted(graph[v])))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, successors = work[-1]
            advanced = False
            for w in successors:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    advanced = True
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def inside_one_folder(component):
    folders = {os.path.dirname(rel) for rel in component}
    return len(folders) == 1 and "" not in folders


def main(argv):
    count_only = "--count" in argv
    src = "src"
    if "--src" in argv:
        src = argv[argv.index("--src") + 1]
    elif not os.path.isdir(src):
        src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    files, edges = analyse(src)
    rels = sorted(module.rel for module in files.values())
    unplaced = [rel for rel in rels if floor_of(rel) is None]
    upward = sorted(
        (a, b)
        for (a, b) in edges
        if floor_of(a) is not None and floor_of(b) is not None and floor_of(a) < floor_of(b)
    )
    found = circles(
        [rel for rel in rels if rel != ROOT],
        {edge: names for edge, names in edges.items() if ROOT not in edge},
    )
    outside = [c for c in found if not inside_one_folder(c)]
    if count_only:
        print(f"upward={len(upward)} circles={len(found)} circles_outside_a_folder={len(outside)}")
        return 0
    print(f"files={len(rels)} arrows={len(edges)}")
    if unplaced:
        print(f"files on no floor (add them to FLOORS): {', '.join(unplaced)}")
    print(f"\nupward arrows: {len(upward)}")
    for a, b in upward:
        print(
            f"  {a} -> {b}: {', '.join(sorted(edges[(a, b)]))}"
            f"   [{FLOORS[floor_of(a)][0]} -> {FLOORS[floor_of(b)][0]}]"
        )
    print(f"\ncircles: {len(found)} ({len(outside)} outside a folder)")
    for component in found:
        where = "inside one folder" if inside_one_folder(component) else "ACROSS folders"
        print(f"  [{where}] {' <-> '.join(component)}")
    print(f"\nupward={len(upward)} circles={len(found)} circles_outside_a_folder={len(outside)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
