"""The package's folders are its layers: imports go down (or sideways, without cycles), never up.

Every import is read from the source, module-level and inside functions alike.
"""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "minikd"
LAYERS = ("engine", "losses", "nn", "tasks", "recipes", "tools")  # bottom to top


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports(modules):
    """{module: {imported minikd module, ...}}, ``from a import b`` resolved to ``a.b`` when that is a module."""
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in modules else node.module)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def layer_of(module):
    """0..5 for a module in one of the layer folders; None for the top-level facade and __main__."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def upward_imports(graph):
    """(importer, imported) pairs where a lower layer imports a higher one (or the facade)."""
    bad = []
    for source, targets in graph.items():
        low = layer_of(source)
        if low is None:
            continue
        for target in targets:
            high = layer_of(target)
            if high is None and target in ("minikd", "minikd.__main__") or high is not None and high > low:
                bad.append((source, target))
    return sorted(bad)


def find_cycle(graph):
    """One import cycle as a list of modules [a, b, ..., a], or None (iterative depth-first search)."""
    state = {}  # absent: unvisited, 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        stack, path = [(root, iter(sorted(graph[root])))], [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(sorted(graph.get(child, ())))))
                path.append(child)
    return None


def minikd_modules():
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_sits_in_a_layer_folder():
    loose = [m for m in minikd_modules() if layer_of(m) is None and m not in ("minikd", "minikd.__main__")]
    assert not loose, f"modules outside the layer folders {LAYERS}: {loose}"


def test_no_import_goes_up_a_layer():
    bad = upward_imports(package_imports(minikd_modules()))
    assert not bad, "upward imports: " + ", ".join(f"{a} imports {b}" for a, b in bad)


def test_no_import_cycle():
    cycle = find_cycle(package_imports(minikd_modules()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_each_layer_says_what_it_may_import():
    for layer in LAYERS:
        doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text()))
        assert doc and "May import" in doc, f"minikd/{layer}/__init__.py must say what the layer may import"


def test_the_checks_fail_on_a_deliberate_cycle_and_an_upward_import(tmp_path):
    """The same functions, on a small package written here, name the offending pairs."""
    pkg = tmp_path / "minikd"
    for layer in ("engine", "recipes"):
        (pkg / layer).mkdir(parents=True)
        (pkg / layer / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "engine" / "autograd.py").write_text("from minikd.engine import ops\n")
    (pkg / "engine" / "ops.py").write_text("def f():\n    from minikd.engine.autograd import Tensor\n"
                                           "    from minikd.recipes import train\n")
    (pkg / "recipes" / "train.py").write_text("from minikd.engine import ops\n")
    modules = {".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): p
               for p in pkg.rglob("*.py")}
    graph = package_imports(modules)
    cycle = find_cycle(graph)
    assert cycle is not None and set(cycle) == {"minikd.engine.autograd", "minikd.engine.ops"}
    assert upward_imports(graph) == [("minikd.engine.ops", "minikd.recipes.train")]
