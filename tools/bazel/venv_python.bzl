"""The project's venv as Bazel's Python toolchain.

Bazel 4 does not expand %workspace% in .bazelrc option values, so
--python_path=%workspace%/.venv/bin/python cannot be written down in the
repository. This repository rule finds <workspace>/.venv/bin/python when it runs
(locally, no download) and declares a py_runtime with that absolute path, which
WORKSPACE registers as the Python toolchain.
"""

_BUILD = """\
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

py_runtime(
    name = "py3_runtime",
    interpreter_path = "{python}",
    python_version = "PY3",
    stub_shebang = "#!{python}",
)

py_runtime_pair(
    name = "runtime_pair",
    py3_runtime = ":py3_runtime",
)

toolchain(
    name = "toolchain",
    toolchain = ":runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
"""

def _venv_python_impl(rctx):
    workspace = rctx.path(Label("//:WORKSPACE")).dirname
    python = workspace.get_child(rctx.attr.venv).get_child("bin").get_child("python")
    if not python.exists:
        fail(("%s is missing: create the venv first, as the README says: " +
              "python3 -m venv %s && %s/bin/pip install -e \".[test]\"") %
             (python, rctx.attr.venv, rctx.attr.venv))
    rctx.file("WORKSPACE", "workspace(name = \"%s\")\n" % rctx.name)
    rctx.file("BUILD", _BUILD.format(python = str(python)))

venv_python = repository_rule(
    implementation = _venv_python_impl,
    attrs = {"venv": attr.string(default = ".venv", doc = "The venv's directory, relative to the workspace.")},
    local = True,
    doc = "Declares <workspace>/<venv>/bin/python as a Python 3 toolchain.",
)
