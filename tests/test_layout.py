"""Every module of the service is one job you can see at once: a docstring whose first line says
the job, and a length one can read in a sitting (tests and benchmarks aside)."""

from __future__ import annotations

import ast

from tests.test_imports import modules

MAX_LINES = 400


def test_every_module_says_its_job_in_its_first_line() -> None:
    missing, long_first = [], []
    for name, path in sorted(modules().items()):
        doc = ast.get_docstring(ast.parse(path.read_text(), str(path)))
        lines = (doc or "").splitlines()
        if not lines or not lines[0].strip():
            missing.append(name)
        elif len(lines) > 1 and lines[1].strip():
            long_first.append(name)  # the summary runs on into a second line
    assert (missing, long_first) == ([], [])


def test_no_module_is_longer_than_one_can_read_in_a_sitting() -> None:
    lengths = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}
