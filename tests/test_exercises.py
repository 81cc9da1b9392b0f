"""The exercise notebooks (exercises/, solutions/, tools/make_exercises.py).

- The committed copies are what tools/make_exercises.py generates from course_src/exercises/
  (the same logic as `python tools/make_exercises.py --check`: cell sources only, nothing executed).
- No answer is readable by the learner: not in exercises/ (the folder holds no source), not in a
  blank's message or a hint, not verbatim in the course notebook of the same number; every exercise
  has a collapsed Hint.
- Every exercise notebook runs and fails ONLY with NotImplementedError, at least once per exercise,
  and each check cell reports its exercise as not done yet.
The solution notebooks themselves run under nbval: pytest solutions --nbval --nbval-current-env ...
"""
import importlib.util
import re
import shutil
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_exercises", ROOT / "tools" / "make_exercises.py")
make_exercises = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_exercises)

SOURCES = make_exercises.sources()
# The topics the course asks exercises for (a course notebook that teaches code, same number and name).
REQUIRED = ["01_noise_schedules", "02_forward_and_reverse_diffusion", "03_dynamic_thresholding",
            "04_resnet_and_attention_blocks", "06_text_conditioning_and_guidance",
            "07_super_resolution_and_noise_augmentation", "09_training_on_data"]


def test_every_topic_has_exercises():
    assert set(REQUIRED) <= {p.stem for p in SOURCES}
    labels = [label for path in SOURCES for label in make_exercises.build(path)[2]]
    assert len(labels) >= 13
    for path in SOURCES:
        assert (ROOT / "exercises" / path.name).exists() and (ROOT / "solutions" / path.name).exists()


def test_committed_copies_are_up_to_date():
    problems = make_exercises.check()
    assert not problems, "\n".join(problems) + "\nRegenerate with: python tools/make_exercises.py"


def test_check_command_line(capsys):
    assert make_exercises.main(["--check"]) == 0
    assert "up to date" in capsys.readouterr().out


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A copy of the sources, exercises/, solutions/ and notebooks/ that the tool reads instead of the real ones."""
    for folder in ("course_src", "exercises", "solutions", "notebooks"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    monkeypatch.setattr(make_exercises, "ROOT", tmp_path)
    monkeypatch.setattr(make_exercises, "SOURCE_DIR", tmp_path / "course_src" / "exercises")
    monkeypatch.setattr(make_exercises, "EXERCISE_DIR", tmp_path / "exercises")
    monkeypatch.setattr(make_exercises, "SOLUTION_DIR", tmp_path / "solutions")
    return tmp_path


def test_check_finds_stale_copies(sandbox, capsys):
    name = SOURCES[0].name
    source = nbformat.read(sandbox / "course_src" / "exercises" / name, 4)
    code = next(c for c in source.cells if c.cell_type == "code" and "### BEGIN SOLUTION" in c.source)
    code.source = code.source.replace("### END SOLUTION", "# an edit\n    ### END SOLUTION")
    nbformat.write(source, sandbox / "course_src" / "exercises" / name)
    exercise = nbformat.read(sandbox / "exercises" / SOURCES[1].name, 4)
    next(c for c in exercise.cells if c.cell_type == "code").execution_count = 3
    nbformat.write(exercise, sandbox / "exercises" / SOURCES[1].name)
    (sandbox / "solutions" / "99_orphan.ipynb").write_text((sandbox / "solutions" / name).read_text())

    problems = make_exercises.check()
    assert f"solutions/{name} is stale: its cells differ from course_src/exercises/{name}" in problems
    assert f"exercises/{SOURCES[1].name} has outputs: exercise copies are committed without outputs" in problems
    assert any("99_orphan.ipynb has no source" in p for p in problems)
    assert make_exercises.main(["--check"]) == 1
    assert "python tools/make_exercises.py" in capsys.readouterr().err


def test_regions_become_not_implemented_errors(sandbox):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Exercises 05 · Test\n[badge](https://x/blob/main/course_src/exercises/05_test.ipynb)"),
        nbformat.v4.new_code_cell('def f(x):\n    """Doc."""\n    ### BEGIN SOLUTION (Exercise 5.1: return "twice" x)\n'
                                  '    y = 2 * x\n    return y\n    ### END SOLUTION\n\nf(1)'),
    ]
    path = sandbox / "course_src" / "exercises" / "05_test.ipynb"
    nbformat.write(nb, path)
    exercise, solution, labels = make_exercises.build(path)
    assert labels == ["Exercise 5.1"]
    assert exercise.cells[1].source == ('def f(x):\n    """Doc."""\n'
                                        '    raise NotImplementedError("Exercise 5.1: return \\"twice\\" x")\n\nf(1)')
    assert solution.cells[1].source == 'def f(x):\n    """Doc."""\n    y = 2 * x\n    return y\n\nf(1)'
    assert exercise.cells[0].source.startswith("# Exercises 05") and "blob/main/exercises/05_test.ipynb" in exercise.cells[0].source
    assert solution.cells[0].source.startswith("# Solutions 05") and "blob/main/solutions/05_test.ipynb" in solution.cells[0].source
    ns = {}
    exec(exercise.cells[1].source.replace("f(1)", ""), ns)
    with pytest.raises(NotImplementedError, match=r"^Exercise 5\.1: return"):
        ns["f"](1)

    for bad, message in [("### BEGIN SOLUTION\n1\n### END SOLUTION", "Exercise N.M: what to write"),
                         ("### BEGIN SOLUTION (Exercise 4.1: x)\n1\n### END SOLUTION", "number it 5.M"),
                         ("### BEGIN SOLUTION (Exercise 5.1: x)\n1", "has no '### END SOLUTION'"),
                         ("1\n### END SOLUTION", "without a '### BEGIN SOLUTION'")]:
        nb.cells[1].source = bad
        nbformat.write(nb, path)
        with pytest.raises(make_exercises.SourceError, match=re.escape(message)):
            make_exercises.build(path)


def test_the_learners_folder_holds_no_answers():
    marked = [p.relative_to(ROOT) for p in (ROOT / "exercises").rglob("*")
              if p.is_file() and p.suffix in (".ipynb", ".py") and "BEGIN SOLUTION" in p.read_text()]
    assert marked == []


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_no_answer_line_is_readable_in_the_exercise_or_the_course_notebook(source):
    assert make_exercises.leaks(source) == []


def test_a_hint_that_gives_the_answer_away_is_found(sandbox):
    path = sandbox / "course_src" / "exercises" / SOURCES[0].name
    nb = nbformat.read(path, 4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "### BEGIN SOLUTION" in c.source)
    answer = next(line for line in cell.source.split("### BEGIN SOLUTION")[1].splitlines()[1:]
                  if len(line.strip()) >= 12)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"Hint: `{answer.strip()}`"))
    nbformat.write(nb, path)
    found = make_exercises.leaks(path)
    assert found and "answer line in the exercise copy" in found[0]
    assert any("answer line in the exercise copy" in p for p in make_exercises.check())


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_every_exercise_has_a_collapsed_hint(source):
    nb = nbformat.read(source, 4)
    titles = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith("## Exercise ")]
    assert len(titles) == len(make_exercises.build(source)[2])
    for i in titles:
        hint_cell = nb.cells[i + 1]
        assert hint_cell.cell_type == "markdown"
        assert hint_cell.source.startswith("<details><summary>Hint</summary>")
        assert "```" not in hint_cell.source  # words, not code: only solutions/ has code


def _stdout(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                   if o.output_type == "stream" and o.name == "stdout")


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_exercise_notebook_fails_only_with_not_implemented(source):
    from nbclient import NotebookClient

    labels = make_exercises.build(source)[2]
    nb = nbformat.read(ROOT / "exercises" / source.name, 4)
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(ROOT / "exercises")}}).execute()
    errors = [(i, o) for i, c in enumerate(nb.cells) if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    others = [f"cell {i}: {o.ename}: {o.evalue}" for i, o in errors if o.ename != "NotImplementedError"]
    assert not others, "exercise notebooks may fail only with NotImplementedError:\n" + "\n".join(others)
    raised = {m[1] for _, o in errors if (m := re.match(r"(Exercise \d+\.\d+):", o.evalue))}
    assert raised == set(labels), f"each exercise cell raises its own NotImplementedError: {raised} vs {labels}"
    stdout = _stdout(nb)
    for label in labels:
        assert f"✗ {label} is not done yet: " in stdout
    assert "✓" not in stdout
