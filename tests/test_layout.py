"""The package's floor plan, read from the code's imports: the commands at the top and imported by nothing,
every other import running down the layers below, no cycle, flags read only at the top, a configuration that
loads and builds nothing, and top-level names that each say one thing."""

import ast
import os

from conftest import ROOT

PACKAGE = os.path.join(ROOT, "kdas_tf")
ENTRY_POINTS = ("search", "teachers", "train", "export", "report", "bench", "sweep", "latency")
# Top first. A module may import its own package's modules, or a unit (a package or a top-level module) of a
# strictly lower layer; units of one layer do not import each other. README's Layout section draws the same.
LAYERS = (
    ("kdas_tf", *ENTRY_POINTS),  # the commands, and kdas_tf/__init__.py (load_search)
    ("cli",),
    ("budget_curve",),
    ("pipeline", "dry_run"),
    ("parallel", "benchmarking", "recorded"),
    ("assembly",),
    ("config",),
    ("deploy",),
    ("reporting", "nas"),
    ("distill",),
    ("_internals",),
    ("runtime",),
    ("data", "models"),
    ("errors",),
)
# What the config package may import, besides its own modules: the grammars it checks names against (pure Python)
# and the modules that define its flags' choices and checks (free of TensorFlow, so --help answers without it);
# never the data package, a network builder or what counts a budget, and it calls nothing that loads or builds.
CONFIG = "kdas_tf.config"
CONFIG_IMPORTS = {
    "kdas_tf.errors", "kdas_tf.data.catalog", "kdas_tf.models.networks", "kdas_tf.models.architecture",
    "kdas_tf.distill.recipe", "kdas_tf.nas.controller_config", "kdas_tf.runtime.distribute", "kdas_tf.deploy.formats",
}
GRAMMARS = ("kdas_tf.data.catalog", "kdas_tf.models.networks", "kdas_tf.models.architecture")
HEAVY = {"tensorflow", "keras", "tensorflow_datasets", "keras_tuner"}


def modules():
    """{module name: parsed source} of every kdas_tf module."""
    found = {}
    for directory, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__")
                found[module] = ast.parse(open(path).read())
    return found


def import_graph(trees, nodes=ast.walk):
    """{module: the kdas_tf modules it imports}: `from P import M` counts as importing P.M when M is a module,
    and as importing P when M is a name P defines. nodes=ast.iter_child_nodes: only what importing it runs."""
    graph = {}
    for name, tree in trees.items():
        targets = set()
        for node in nodes(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kdas_tf"):
                submodules = {f"{node.module}.{alias.name}" for alias in node.names} & set(trees)
                targets.update(submodules)
                if len(submodules) < len(node.names):  # names defined in the module (or its __init__) itself
                    targets.add(node.module)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names if alias.name.startswith("kdas_tf"))
        graph[name] = {t for t in targets if t in trees and t != name}
    return graph


def unit(module):
    """The package or top-level module a module belongs to: kdas_tf.nas.oracle -> 'nas', kdas_tf -> 'kdas_tf'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer(module):
    return next(index for index, units in enumerate(LAYERS) if unit(module) in units)


def test_every_module_has_a_layer():
    missing = {unit(name) for name in modules()} - {u for units in LAYERS for u in units}
    assert not missing, f"add {sorted(missing)} to LAYERS (and README's Layout)"


def test_every_import_runs_down_the_layers():
    back = [f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)})"
            for name, targets in import_graph(modules()).items() for target in sorted(targets)
            if unit(target) != unit(name) and layer(target) <= layer(name)]
    assert not back, "\n".join(back)


def test_no_library_module_imports_an_entry_point_and_there_is_no_import_cycle():
    graph = import_graph(modules())
    entries = {f"kdas_tf.{entry}" for entry in ENTRY_POINTS}
    for name, targets in graph.items():
        assert not targets & entries, (name, targets & entries)

    def visit(name, path):
        assert name not in path, " -> ".join(path[path.index(name):] + [name])
        for target in graph[name]:
            if not target.startswith(name + "."):  # a package's __init__ may import its own modules
                visit(target, path + [name])

    for name in graph:
        visit(name, [])


def config_modules(trees):
    """The config package's modules: its __init__ and every module under it."""
    return {name for name in trees if name == CONFIG or name.startswith(CONFIG + ".")}


def test_only_entry_points_and_the_config_command_line_read_flags():
    allowed = {f"kdas_tf.{entry}" for entry in ENTRY_POINTS} | {"kdas_tf.cli", "kdas_tf.config.command_line"}
    readers = {name for name, tree in modules().items()
               if any(isinstance(node, ast.Attribute) and node.attr == "FLAGS" or
                      isinstance(node, ast.Name) and node.id == "FLAGS" for node in ast.walk(tree))}
    assert readers <= allowed, readers - allowed


def test_the_config_imports_no_loader_builder_or_counter_and_its_grammars_import_no_tensorflow():
    trees = modules()
    graph = import_graph(trees)
    package = config_modules(trees)
    outside = {target for name in package for target in graph[name]} - package
    assert outside <= CONFIG_IMPORTS, outside - CONFIG_IMPORTS
    for grammar in GRAMMARS:
        imported = {alias.name.split(".")[0] for node in ast.walk(trees[grammar]) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(trees[grammar])
                     if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & {*HEAVY, "numpy"}, (grammar, imported)
        assert graph[grammar] <= set(GRAMMARS) | {"kdas_tf.errors"}, (grammar, graph[grammar])


def test_importing_the_config_imports_no_tensorflow_at_any_module_or_package_level():
    trees = modules()
    graph = import_graph(trees, nodes=ast.iter_child_nodes)
    reached, todo = set(), sorted(config_modules(trees))
    while todo:  # every module importing any of config's runs, with the package __init__s above each
        name = todo.pop()
        parts = name.split(".")
        for module in [".".join(parts[:i]) for i in range(1, len(parts))] + [name]:
            if module not in reached:
                reached.add(module)
                todo += graph[module]
    for name in sorted(reached):
        top = {alias.name.split(".")[0] for node in ast.iter_child_nodes(trees[name]) if isinstance(node, ast.Import)
               for alias in node.names}
        top |= {node.module.split(".")[0] for node in ast.iter_child_nodes(trees[name])
                if isinstance(node, ast.ImportFrom) and node.module}
        assert not top & HEAVY, (name, top & HEAVY)


def test_each_top_level_name_says_one_thing():
    names = sorted(name[:-3] if name.endswith(".py") else name for name in os.listdir(PACKAGE)
                   if (name.endswith(".py") and name != "__init__.py")
                   or os.path.isfile(os.path.join(PACKAGE, name, "__init__.py")))
    clashes = [(a, b) for a in names for b in names if a != b and (
        b == a + "s" or b.startswith(a + "_") or b.endswith("_" + a))]
    assert not clashes, clashes
