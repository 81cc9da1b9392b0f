"""Every ```python block of README.md runs as pasted, in a fresh interpreter.

Each block is written to a file and run with this Python in an empty folder (the blocks save
pictures into the working directory), exactly as written: no name is injected, nothing is
patched. A learner pasting the block into a new session gets what this test gets.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("number", range(len(BLOCKS)), ids=lambda n: f"block{n + 1}")
def test_readme_python_block_runs_as_pasted(number, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(BLOCKS[number])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"README python block {number + 1} failed:\n{done.stderr[-3000:]}"
    # Each block ends by saving a picture: it is there and not empty.
    saved = [p for p in tmp_path.iterdir() if p.suffix == ".png"]
    assert saved and all(p.stat().st_size > 0 for p in saved), "the block saved no picture"
