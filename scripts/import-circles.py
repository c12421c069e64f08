#!/usr/bin/env python3
"""File-level import circles inside each crate's src/: the layout rule that no file imports
back from a file that imports it. Run by .ci/run; exits 1 and names the files when it finds one.

An edge a -> b when file a names an item of file b: `crate::…` / `super::…` paths, and a
parent (lib.rs / mod.rs) naming a child module outside its `mod` and `pub use` lines. A path
that lands on an ancestor file counts only when the item is defined there (a facade's
re-export is not a dependency). Prints nothing when there is no circle.
"""
import os, re, sys

root = sys.argv[1] if len(sys.argv) > 1 else '.'
found = False
DEF = r'^\s*(pub(\([a-z:]+\))?\s+)?(async\s+)?(fn|struct|enum|const|static|trait|type|union)\s+{}\b'

for crate in ['engine', 'connectors', 'pipeline', 'cli', 'dashboard', 'testkit']:
    src = os.path.join(root, crate, 'src')
    if not os.path.isdir(src):
        continue
    mods, texts = {}, {}
    for d, _, fs in os.walk(src):
        for f in fs:
            if not f.endswith('.rs'):
                continue
            p = os.path.join(d, f)
            rel = os.path.relpath(p, src)[:-3].split(os.sep)
            if rel[-1] in ('mod', 'lib', 'main'):
                rel = rel[:-1]
            mods[tuple(rel)] = p
            t = open(p).read()
            texts[tuple(rel)] = re.sub(r'#\[cfg\(test\)\][\s\S]*', '', t)

    def resolve(parts):
        path = tuple(parts)
        while path:
            if path in mods:
                return path, parts[len(path):]
            path = path[:-1]
        return ((), parts) if () in mods else (None, parts)

    def defined(m, rest):
        return bool(rest) and re.search(DEF.format(re.escape(rest[0])), texts[m], re.M)

    edges = {m: set() for m in mods}
    for m, p in mods.items():
        text = texts[m]
        is_parent = p.endswith(('mod.rs', 'lib.rs', 'main.rs'))
        refs = [use.split('::') for use in re.findall(r'\bcrate::([A-Za-z_][A-Za-z0-9_:]*)', text)]
        refs += [list(m[:-1]) + use.split('::') if m else None
                 for use in re.findall(r'\bsuper::([A-Za-z_][A-Za-z0-9_:]*)', text)]
        for parts in refs:
            if parts is None:
                continue
            t, rest = resolve(parts)
            if t is None or t == m:
                continue
            ancestor = len(t) < len(m) and m[:len(t)] == t
            if ancestor and not defined(t, rest):
                continue
            edges[m].add(t)
        if is_parent:
            body = re.sub(r'^\s*(pub(\([a-z]+\))?\s+)?(mod\s+\w+;|use\s[^;]*;)', '', text, flags=re.M)
            body = re.sub(r'^\s*//.*$', '', body, flags=re.M)
            for child in [k for k in mods if len(k) == len(m) + 1 and k[:len(m)] == m]:
                if re.search(r'(?<![\w:])(self::)?' + child[-1] + r'::', body):
                    edges[m].add(child)
            for line in re.findall(r'^\s*use\s[^;]*;', text, flags=re.M):
                for child in [k for k in mods if len(k) == len(m) + 1 and k[:len(m)] == m]:
                    if re.search(r'(?<![\w:])(self::)?' + child[-1] + r'::', line):
                        edges[m].add(child)

    index, low, stack, on, sccs, i = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            strong(v)
    name = lambda x: '/'.join(x) or 'lib'
    for c in sccs:
        found = True
        print(f'{crate}: circle among {[name(x) for x in c]}')
        for a in c:
            for b in edges[a]:
                if b in c:
                    print(f'    {name(a)} -> {name(b)}')

sys.exit(1 if found else 0)
