"""Every repository file a test reads is in its Bazel target's data (tests/BUILD), or `bazel test` fails
where pytest passes. Static and cheap: the tests' sources are parsed, not run.

A read is a string that names an existing path under the repository root: a constant with a '/'
("tpu/cifar100_tpu.cfg", "--flagfile=flags/digits.cfg", glob patterns included) or naming a top-level
file ("pyproject.toml"), or an os.path.join / pathlib '/' chain of two or more parts whose constant
parts do (os.path.join(ROOT, "flags", "**", "*.cfg")). A directory stands for every file in it.
kdas_tf/ and tests/ are the targets' srcs and deps, and what .gitignore ignores is not the repository's.
The targets' data are read from tests/BUILD and BUILD (Starlark parses as Python) and matched with
Bazel's glob semantics."""

import ast
import fnmatch
import glob
import os

import pytest

# The real checkout, also under `bazel test`, whose runfiles are symlinks to it: undeclared files are what
# this test looks for, and the runfiles tree only has the declared ones.
ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
TESTS = "tests"
CODE = {"kdas_tf", TESTS}
TEST_RULES = {"pytest_test", "py_test"}
BUILD_FILES = ("BUILD", "BUILD.bazel")


class Glob:
    """glob(include, exclude) of one package, matched as Bazel does (no crossing into subpackages)."""

    def __init__(self, package, include, exclude):
        self.package, self.include, self.exclude = package, include, exclude

    def matches(self, path):
        relative = relative_to_package(path, self.package)
        return (relative is not None and any(glob_match(p, relative) for p in self.include)
                and not any(glob_match(p, relative) for p in self.exclude))

    def files(self):
        found = [path for path in repository_files(self.package) if self.matches(path)]
        return sorted(found)


def glob_match(pattern, path):
    """Bazel's glob: '*' within one path component, '**' any number of whole components."""
    def match(parts, names):
        if not parts:
            return not names
        if parts[0] == "**":
            return any(match(parts[1:], names[i:]) for i in range(len(names) + 1))
        return bool(names) and fnmatch.fnmatchcase(names[0], parts[0]) and match(parts[1:], names[1:])
    return match(pattern.split("/"), path.split("/"))


def relative_to_package(path, package):
    """PATH relative to PACKAGE, or None when it is outside it or in a subpackage (a folder with a BUILD)."""
    prefix = package + "/" if package else ""
    if not path.startswith(prefix):
        return None
    relative = path[len(prefix):]
    folder = os.path.dirname(relative)
    while folder:
        if any(os.path.isfile(os.path.join(ROOT, package, folder, b)) for b in BUILD_FILES):
            return None
        folder = os.path.dirname(folder)
    return relative


def ignored_patterns():
    with open(os.path.join(ROOT, ".gitignore")) as f:
        lines = [line.strip() for line in f]
    return [".git"] + [line.strip("/") for line in lines if line and not line.startswith(("#", "!"))]


IGNORED = ignored_patterns()


def is_ignored(path):
    return any(fnmatch.fnmatchcase(name, p) for name in path.split("/") for p in IGNORED)


def repository_files(folder=""):
    """The files under FOLDER (relative to ROOT) that are the repository's: not ignored, not .git."""
    found = []
    for directory, subdirs, names in os.walk(os.path.join(ROOT, folder)):
        relative = os.path.relpath(directory, ROOT)
        relative = "" if relative == "." else relative
        subdirs[:] = [d for d in subdirs if not is_ignored(os.path.join(relative, d))]
        found += [os.path.join(relative, n) for n in names if not is_ignored(os.path.join(relative, n))]
    return found


# --- the targets of a BUILD file -------------------------------------------------------------------------

def parse_build(package):
    path = next(os.path.join(ROOT, package, b) for b in BUILD_FILES if os.path.isfile(os.path.join(ROOT, package, b)))
    with open(path) as f:
        return ast.parse(f.read(), path)


def evaluate(node, package, names):
    """The value of a BUILD expression: strings, lists, '+', glob(...) and module-level names."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.List):
        return [value for element in node.elts for value in evaluate(element, package, names)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return evaluate(node.left, package, names) + evaluate(node.right, package, names)
    if isinstance(node, ast.Name) and node.id in names:
        return evaluate(names[node.id], package, names)
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "glob":
        keywords = {k.arg: k.value for k in node.keywords}
        include = node.args[0] if node.args else keywords["include"]
        exclude = evaluate(keywords["exclude"], package, names) if "exclude" in keywords else []
        return [Glob(package, evaluate(include, package, names), exclude)]
    raise AssertionError(f"{package or '//'}/BUILD: cannot read {ast.unparse(node)!r}; extend {__file__}")


def module_names(tree):
    return {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}


def resolve(label, package, seen=()):
    """A data entry as what it declares: file paths and Globs, filegroups followed."""
    if isinstance(label, Glob):
        return [label]
    if label.startswith("//"):
        package, _, name = label[2:].partition(":")
        name = name or package.rsplit("/", 1)[-1]
    else:
        name = label.lstrip(":")
    tree = parse_build(package)
    names = module_names(tree)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "filegroup"
                and any(k.arg == "name" and getattr(k.value, "value", None) == name for k in node.keywords)):
            assert (package, name) not in seen, f"filegroup cycle at //{package}:{name}"
            srcs = next(k.value for k in node.keywords if k.arg == "srcs")
            seen += ((package, name),)
            return [d for src in evaluate(srcs, package, names) for d in resolve(src, package, seen)]
    return [os.path.join(package, name)]


def targets_of_tests():
    """(test file, what its target declares) for every test rule of tests/BUILD."""
    tree = parse_build(TESTS)
    names = module_names(tree)
    loops = {id(c.elt): c for c in ast.walk(tree) if isinstance(c, ast.ListComp)}
    targets = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) in TEST_RULES):
            continue
        keywords = {k.arg: k.value for k in node.keywords}
        src = keywords.get("src") or keywords["srcs"]
        loop = loops.get(id(node))
        if loop and isinstance(src, ast.Name) and src.id == loop.generators[0].target.id:
            sources = evaluate(loop.generators[0].iter, TESTS, names)
        else:
            sources = [s for s in evaluate(src, TESTS, names) if not s.startswith("//")]  # pytest_main.py
        files = [f for s in sources for f in (s.files() if isinstance(s, Glob) else [os.path.join(TESTS, s)])]
        entries = evaluate(keywords.get("data", ast.List([])), TESTS, names)
        data = [d for entry in entries for d in resolve(entry, TESTS)]
        targets += [(f, data) for f in files]
    return targets


def declared(path, data):
    return any(d.matches(path) if isinstance(d, Glob) else path == d or path.startswith(d + "/") for d in data)


# --- what a test file reads --------------------------------------------------------------------------------

def candidates(tree):
    """Relative paths a test's source names: path-like constants and constant join / '/' chains
    (module-level NAME = "string" counts as a constant)."""
    strings = {t.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
               and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
               for t in node.targets if isinstance(t, ast.Name)}

    def string(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        return strings.get(node.id) if isinstance(node, ast.Name) else None

    divisions = [node for node in ast.walk(tree) if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)]
    outer = {id(node.left): node for node in divisions}  # a / b / c is (a / b) / c
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value
            if value.startswith("-") and "=" in value:
                value = value.split("=", 1)[1]  # --flagfile=flags/digits.cfg
            if "/" in value or os.path.isfile(os.path.join(ROOT, value)):
                yield value
        parts = None
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.path.join", "path.join"):
            parts = node.args
        elif node in divisions and not isinstance(node.left, ast.BinOp):  # a pathlib chain, from its base
            parts = [node.left, node.right]
            while id(node) in outer:
                node = outer[id(node)]
                parts.append(node.right)
        if parts and len(parts) >= 2:
            constant = [string(p) for p in parts]
            if None not in constant[1:]:  # only the base (ROOT, a workdir, ...) may vary
                yield "/".join(constant if constant[0] is not None else constant[1:])


def reads(source):
    """The repository files outside kdas_tf/ and tests/ that SOURCE (a test's text) names."""
    found = set()
    for candidate in candidates(ast.parse(source)):
        path = os.path.normpath(candidate)
        if os.path.isabs(path) or path.startswith("..") or path == "." or path.split("/")[0] in CODE:
            continue
        if any(c in path for c in "*?["):
            matches = glob.glob(os.path.join(ROOT, path), recursive=True)  # "missing/**" gives "missing/"
        else:
            matches = [os.path.join(ROOT, path)]
        for match in filter(os.path.exists, matches):
            relative = os.path.relpath(match, ROOT)
            if is_ignored(relative):
                continue
            found.update(repository_files(relative) if os.path.isdir(match) else [relative])
    return found


def conftests_of(test_file):
    """The conftest.py files pytest loads for TEST_FILE: tests/conftest.py and any in the folders down to it."""
    folders = [os.path.dirname(test_file)]
    while folders[-1] != TESTS:
        folders.append(os.path.dirname(folders[-1]))
    found = [os.path.join(folder, "conftest.py") for folder in reversed(folders)]
    return [path for path in found if os.path.isfile(os.path.join(ROOT, path))]


def read_by(test_file):
    """What running TEST_FILE reads: its own source and its conftest.py files'."""
    found = set()
    for path in [test_file, *conftests_of(test_file)]:
        with open(os.path.join(ROOT, path)) as f:
            found |= reads(f.read())
    return found


def label(test_file):
    """The target of tests/FOLDER/test_x.py: //tests:FOLDER/test_x (tests/BUILD names them so)."""
    return f"//{TESTS}:{os.path.relpath(test_file, TESTS)[:-len('.py')]}"


def repository_test_files():
    """Every tests/**/test_*.py of the repository, as paths from the root."""
    return {path for path in repository_files(TESTS) if fnmatch.fnmatchcase(os.path.basename(path), "test_*.py")}


def test_every_file_a_test_reads_is_in_its_targets_data():
    targets = targets_of_tests()
    undeclared = {f"{label(test)} reads {path}"
                  for test, data in targets for path in read_by(test) if not declared(path, data)}
    assert not undeclared, "add to //:test_data (BUILD) or the target's data in tests/BUILD:\n" + "\n".join(
        sorted(undeclared))


def test_every_test_file_has_a_target():
    targets = [test for test, _ in targets_of_tests()]
    files = repository_test_files()
    assert any("/" in os.path.relpath(f, TESTS) for f in files)  # the folders are searched
    assert files <= set(targets), sorted(files - set(targets))
    assert len(targets) == len(set(targets)), sorted(t for t in targets if targets.count(t) > 1)


def test_every_target_has_its_conftests():
    """pytest under `bazel test` finds conftest.py only in the runfiles: `from conftest import ...` needs it."""
    missing = {f"{label(test)} lacks {c}" for test, data in targets_of_tests()
               for c in conftests_of(test) if not declared(c, data)}
    assert not missing, "add to TEST_DATA in tests/BUILD:\n" + "\n".join(sorted(missing))


def test_the_check_sees_reads_and_undeclared_files():
    """Not vacuous: it finds the usual spellings of a read, and files outside a target's data fail it."""
    source = (
        'import os\nfrom pathlib import Path\nROOT = "."\n'
        'a = ["--flagfile=flags/digits.cfg"]\n'
        'b = os.path.join(ROOT, "BUILD")\n'
        'c = Path(ROOT) / "tpu" / "launch.sh"\n'
        'd = os.path.join(ROOT, "flags", "**", "*.cfg")\n'
        'e = os.path.join(ROOT, "kdas_tf", "cli.py"), "tests/conftest.py", "results.json", "flags/nope.cfg"\n'
    )
    found = reads(source)
    flagfiles = {os.path.relpath(p, ROOT)
                 for p in glob.glob(os.path.join(ROOT, "flags", "**", "*.cfg"), recursive=True)}
    assert found == {"BUILD", "tpu/launch.sh"} | flagfiles
    data = [Glob("", ["flags/*.cfg"], [])]
    assert {p for p in found if not declared(p, data)} == {"BUILD", "tpu/launch.sh"} | {
        p for p in flagfiles if p.count("/") > 1}


@pytest.mark.parametrize("pattern, path, expected", [  # made-up folders: these are not reads
    ("cfgs/*.cfg", "cfgs/a.cfg", True),
    ("cfgs/*.cfg", "cfgs/sub/a.cfg", False),
    ("cfgs/**/*.cfg", "cfgs/a.cfg", True),
    ("cfgs/**/*.cfg", "cfgs/sub/deeper/a.cfg", True),
    ("cfgs/**/*.cfg", "cfgs/a.cfgx", False),
    ("dir/**", "dir/a.sh", True),
    ("dir/**", "dirx/a.sh", False),
])
def test_glob_semantics(pattern, path, expected):
    assert glob_match(pattern, path) is expected
