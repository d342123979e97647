"""Runs one test file through pytest under `bazel test` and exits with pytest's code.

Usage (from a py_test's args): pytest_main.py tests/FOLDER/test_x.py [pytest args...].
Bazel runs it in the runfiles root: pytest's rootdir is there (pyproject.toml), and it loads
tests/conftest.py from the runfiles, so `from conftest import ...` works in every folder.
"""

import os
import sys

import pytest


def main(argv):
    if len(argv) < 2:
        sys.exit("usage: pytest_main.py TEST_FILE [PYTEST_ARGS...]")
    # One file per Bazel target, and Bazel runs targets side by side: no pytest-xdist workers inside one
    # (pyproject's addopts ask for them for the whole suite).
    args = [argv[1], "-q", "-p", "no:cacheprovider", "-o", "addopts="]
    xml = os.environ.get("XML_OUTPUT_FILE")
    if xml:  # Bazel's test.xml: per-case results in the test logs and dashboards.
        args.append("--junitxml=" + xml)
    return pytest.main(args + argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
