#!/usr/bin/env python
"""Generate the exercise and solution notebooks from their single source.

Each topic is written once, in course_src/exercises/NN_topic.ipynb (outside exercises/, so the
folder a learner opens holds no answers), with the answers marked the nbgrader way inside code cells:

    def my_q_sample_from(x_s, s, t, noise, schedule):
        \"\"\"...\"\"\"
        ### BEGIN SOLUTION (Exercise 1.3: in words, what to compute and which equation of the notebook to use)
        ...the answer...
        ### END SOLUTION

The text in the marker is the learner's first hint, so it says in words what to compute, never the
code; a collapsed "Hint" (`<details>`) in the markdown above gives the stronger nudge. From the
source this script writes
  exercises/NN_topic.ipynb  each region replaced by
                            `raise NotImplementedError("Exercise 1.3: in words, ...")` (same
                            indentation), no outputs, no execution counts;
  solutions/NN_topic.ipynb  the marker lines removed, executed with nbclient (cwd = solutions/) so
                            that it carries its outputs (nbval compares them in CI).
In both, links to course_src/exercises/ in markdown (the Colab badge) point to the copy itself, and a
title starting with "# Exercises" reads "# Solutions" in the solution copy.

Usage
    python tools/make_exercises.py            regenerate every topic (executes the solutions)
    python tools/make_exercises.py 01 06      only these topics (number or file name prefix)
    python tools/make_exercises.py --no-execute   write the copies, keep the solutions' old outputs
                                                  when their sources did not change
    python tools/make_exercises.py --check    exit 1 if a committed copy is stale (compares cell
                                              sources only, executes nothing; fast, used by tests) or
                                              an answer line can be read in an exercise copy or
                                              verbatim in the course notebook of the same number
"""
from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = ROOT / "course_src" / "exercises"
EXERCISE_DIR = ROOT / "exercises"
SOLUTION_DIR = ROOT / "solutions"
NAME_RE = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")
BEGIN_RE = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION\b(?P<rest>.*)$")
END_RE = re.compile(r"^[ \t]*### END SOLUTION\s*$")
HINT_RE = re.compile(r"^\(\s*(?P<label>Exercise (?P<major>\d+)\.\d+)\s*:\s*(?P<hint>.+?)\s*\)$")
NB_VERSION = 4


class SourceError(ValueError):
    """A source notebook's solution markers are malformed."""


def sources(selection=()) -> list[Path]:
    """The source notebooks, optionally only those whose name starts with one of `selection`."""
    paths = sorted(p for p in SOURCE_DIR.glob("*.ipynb") if NAME_RE.match(p.name))
    if selection:
        paths = [p for p in paths if any(p.name.startswith(s) or p.stem == s for s in selection)]
    return paths


def _split_regions(text: str, where: str):
    """Yield ('code', line) and ('region', (indent, label, hint, body_lines)) items of a cell's source."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        begin = BEGIN_RE.match(lines[i])
        if END_RE.match(lines[i]):
            raise SourceError(f"{where}: '### END SOLUTION' without a '### BEGIN SOLUTION' before it")
        if not begin:
            yield "code", lines[i]
            i += 1
            continue
        hint = HINT_RE.match(begin["rest"].strip())
        if not hint:
            raise SourceError(f"{where}: write the marker as '### BEGIN SOLUTION (Exercise N.M: what to write)', "
                              f"got {lines[i].strip()!r}")
        body = []
        i += 1
        while i < len(lines) and not END_RE.match(lines[i]):
            if BEGIN_RE.match(lines[i]):
                raise SourceError(f"{where}: '### BEGIN SOLUTION' inside another solution region")
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise SourceError(f"{where}: '### BEGIN SOLUTION' ({hint['label']}) has no '### END SOLUTION'")
        i += 1
        yield "region", (begin["indent"], hint["label"], hint["hint"], int(hint["major"]), body)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rewrite_markdown(text: str, kind: str, first: bool) -> str:
    text = text.replace("course_src/exercises/", f"{kind}/")
    if first and kind == "solutions":
        text = re.sub(r"^# Exercises\b", "# Solutions", text, count=1)
    return text


def _new_notebook(source_nb):
    nb = nbformat.v4.new_notebook()
    nb.nbformat, nb.nbformat_minor = source_nb.nbformat, source_nb.nbformat_minor
    nb.metadata = copy.deepcopy(source_nb.metadata)
    return nb


def build(source_path: Path):
    """(exercise notebook, solution notebook (not executed), exercise labels) for one source notebook."""
    source_nb = nbformat.read(source_path, as_version=NB_VERSION)
    number = int(source_path.name[:2])
    exercise, solution = _new_notebook(source_nb), _new_notebook(source_nb)
    labels = []
    for index, cell in enumerate(source_nb.cells):
        where = f"{source_path.relative_to(ROOT)}, cell {index}"
        ex_cell, sol_cell = copy.deepcopy(cell), copy.deepcopy(cell)
        if cell.cell_type == "markdown":
            ex_cell.source = _rewrite_markdown(cell.source, "exercises", index == 0)
            sol_cell.source = _rewrite_markdown(cell.source, "solutions", index == 0)
        elif cell.cell_type == "code":
            ex_lines, sol_lines = [], []
            for kind, item in _split_regions(cell.source, where):
                if kind == "code":
                    ex_lines.append(item)
                    sol_lines.append(item)
                    continue
                indent, label, hint, major, body = item
                if major != number:
                    raise SourceError(f"{where}: {label} is in notebook {number:02d}; number it {number}.M")
                if label in labels:
                    raise SourceError(f"{where}: {label} is used twice")
                labels.append(label)
                ex_lines.append(f"{indent}raise NotImplementedError({_quote(f'{label}: {hint}')})")
                sol_lines.extend(body)
            ex_cell.source, sol_cell.source = "\n".join(ex_lines), "\n".join(sol_lines)
            for c in (ex_cell, sol_cell):
                c.outputs, c.execution_count = [], None
        exercise.cells.append(ex_cell)
        solution.cells.append(sol_cell)
    if not labels:
        raise SourceError(f"{source_path.relative_to(ROOT)} has no '### BEGIN SOLUTION (Exercise N.M: ...)' region")
    return exercise, solution, labels


def _cells(nb) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in nb.cells]


def execute(nb, timeout: int = 120):
    """Run a notebook in solutions/ and return it with its outputs."""
    from nbclient import NotebookClient

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(SOLUTION_DIR)}})
    client.execute()
    return nb


def _answer_lines(solution, exercise) -> list[str]:
    """Code lines the solution has and the exercise lacks (whitespace removed, >= 12 characters): the answers."""
    def lines(nb):
        return {re.sub(r"\s+", "", line) for cell in nb.cells if cell.cell_type == "code"
                for line in cell.source.splitlines()}
    return sorted(line for line in lines(solution) - lines(exercise)
                  if len(line) >= 12 and not line.startswith(("#", "print(")))


def leaks(source_path: Path) -> list[str]:
    """Answer lines of one topic that the learner can read: in the exercise copy (a hint, a message, the
    markdown) or verbatim in the course notebook of the same number. Empty when the exercises need thought."""
    exercise, solution, _ = build(source_path)
    found = []
    course = sorted((ROOT / "notebooks").glob(f"{source_path.name[:2]}_*.ipynb"))
    places = [("the exercise copy", exercise)] + [(f"notebooks/{p.name}", nbformat.read(p, as_version=NB_VERSION))
                                                  for p in course]
    for where, nb in places:
        text = re.sub(r"\s+", "", "\n".join(cell.source for cell in nb.cells))
        found += [f"{source_path.name}: answer line in {where}: {line[:70]}"
                  for line in _answer_lines(solution, exercise) if line in text]
    return found


def check(selection=()) -> list[str]:
    """Problems with the committed copies (empty when they are up to date). Executes nothing."""
    problems = []
    paths = sources(selection)
    if not paths:
        return [f"no source notebooks (NN_topic.ipynb) in {SOURCE_DIR.relative_to(ROOT)}"]
    for path in paths:
        try:
            exercise, solution, _ = build(path)
        except SourceError as error:
            problems.append(str(error))
            continue
        problems += leaks(path)
        for kind, generated in (("exercises", exercise), ("solutions", solution)):
            target = ROOT / kind / path.name
            rel = target.relative_to(ROOT)
            if not target.exists():
                problems.append(f"{rel} is missing")
                continue
            committed = nbformat.read(target, as_version=NB_VERSION)
            if _cells(committed) != _cells(generated):
                problems.append(f"{rel} is stale: its cells differ from {path.relative_to(ROOT)}")
                continue
            code = [c for c in committed.cells if c.cell_type == "code"]
            if kind == "exercises" and any(c.outputs or c.execution_count is not None for c in code):
                problems.append(f"{rel} has outputs: exercise copies are committed without outputs")
            if kind == "solutions" and any(c.execution_count is None for c in code):
                problems.append(f"{rel} was not executed: solution copies carry their outputs (nbval compares them)")
    if not selection:
        known = {p.name for p in paths}
        for kind in ("exercises", "solutions"):
            for orphan in sorted((ROOT / kind).glob("*.ipynb")):
                if orphan.name not in known:
                    problems.append(f"{orphan.relative_to(ROOT)} has no source in {SOURCE_DIR.relative_to(ROOT)}")
    return problems


def generate(selection=(), run: bool = True) -> None:
    EXERCISE_DIR.mkdir(exist_ok=True)
    SOLUTION_DIR.mkdir(exist_ok=True)
    for path in sources(selection):
        exercise, solution, labels = build(path)
        nbformat.write(exercise, EXERCISE_DIR / path.name)
        target = SOLUTION_DIR / path.name
        old = nbformat.read(target, as_version=NB_VERSION) if target.exists() else None
        if run:
            start = time.perf_counter()
            try:
                solution = execute(solution)
            except Exception as error:  # noqa: BLE001 - say which notebook failed, then stop
                sys.exit(f"executing {target.relative_to(ROOT)} failed:\n{error}")
            took = f"executed in {time.perf_counter() - start:.0f} s"
        elif old is not None and _cells(old) == _cells(solution):
            solution, took = old, "unchanged, outputs kept"
        else:
            took = "NOT executed (run without --no-execute before committing)"
        nbformat.write(solution, target)
        print(f"{path.name}: {', '.join(labels)} -> exercises/ and solutions/ ({took})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("topics", nargs="*", help="only these topics: a number (01) or a file name prefix")
    parser.add_argument("--check", action="store_true", help="only check that the committed copies are up to date")
    parser.add_argument("--no-execute", action="store_true", help="do not execute the solution notebooks")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.topics)
        if problems:
            print(f"The exercise/solution notebooks do not match {SOURCE_DIR.relative_to(ROOT)}/ or give answers away:",
                  file=sys.stderr)
            for problem in problems:
                print(f"  - {problem}", file=sys.stderr)
            print("Regenerate stale copies with: python tools/make_exercises.py; reword a source whose answer "
                  "line can be read (a hint says in words what to compute, never the code)", file=sys.stderr)
            return 1
        print(f"exercises/ and solutions/ are up to date with {SOURCE_DIR.relative_to(ROOT)}/ ({len(sources(args.topics))} topics)")
        return 0
    try:
        generate(args.topics, run=not args.no_execute)
    except SourceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
