"""pytest_test: one test file (tests/**/test_*.py) as a py_test run through pytest (pytest_main.py)."""

def pytest_test(name, src, data = [], size = "medium", deps = [], pytest_args = []):
    """A py_test that runs `pytest SRC` with conftest.py and pyproject.toml's settings.

    Args:
      name: the target's name (tests/BUILD: the file's path in the package without .py).
      src: the test file, in the calling package.
      data: the files the test reads besides its code; give it what it opens.
      size: Bazel's size, hence its timeout (small 60 s, medium 300 s, large 900 s).
      deps: Python libraries the test imports.
      pytest_args: more pytest arguments (e.g. --noconftest).
    """
    native.py_test(
        name = name,
        size = size,
        srcs = ["//tools/bazel:pytest_main.py", src],
        args = ["$(location %s)" % src] + pytest_args,
        data = data,
        legacy_create_init = 0,
        main = "//tools/bazel:pytest_main.py",
        python_version = "PY3",
        srcs_version = "PY3",
        deps = deps,
    )
