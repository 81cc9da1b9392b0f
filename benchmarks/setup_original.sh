#!/usr/bin/env bash
# Install the ORIGINAL MinImagen (PyPI minimagen==0.0.9) into its own venv, for benchmarks/.
# Idempotent: re-running only checks what is already there.
#
#   bash benchmarks/setup_original.sh            # -> /work/main/.bench-venv (git-ignored)
#   BENCH_VENV=/some/dir bash benchmarks/setup_original.sh
#
# Why not `pip install minimagen==0.0.9`: it pins 44 exact 2022 versions (torch 1.12.0 among them)
# and pip dies building pandas 1.4.3 from source. So: torch first, then the package without its
# pins, then the libraries its model code imports (its data/training extras are not needed here).
# torchvision is NOT installed: PyPI's wheel does not import beside the CPU torch 2.13 wheel; the
# benchmark puts benchmarks/_stubs (ToPILImage, Compose, ToTensor) on sys.path for the original
# only, after importing transformers' T5 (transformers would otherwise take the stub for a real
# torchvision and import names it lacks). Its tokenizer (`batch_encode_plus`, gone in transformers 5) and T5 download are never
# called: the benchmark passes precomputed text embeddings, and `text_encoder_name="t5_small"` is
# only looked up in a table for its width (512).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BENCH_VENV:-$ROOT/.bench-venv}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
fi
have() { "$PY" -m pip show "$1" >/dev/null 2>&1; }

if ! "$PY" -c "import torch, sys; sys.exit(not torch.__version__.startswith('$TORCH_VERSION'))" 2>/dev/null; then
    "$PY" -m pip install "torch==$TORCH_VERSION"
fi
if [ "$("$PY" -m pip show minimagen 2>/dev/null | sed -n 's/^Version: //p')" != "0.0.9" ]; then
    "$PY" -m pip install --no-deps "minimagen==0.0.9"
fi
missing=()
for p in transformers sentencepiece einops einops-exts resize-right tqdm pillow; do
    have "$p" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    "$PY" -m pip install "${missing[@]}"
fi

# Check: the original imports (with the stub) and is the PyPI one, not this checkout.
cd /tmp
STUBS="$ROOT/benchmarks/_stubs" "$PY" - <<'PY'
import os, sys
import torch
import transformers  # import its T5 before the stub exists, so transformers sees no torchvision
from transformers import T5EncoderModel, T5Tokenizer
sys.path.insert(0, os.environ["STUBS"])
import minimagen, minimagen.Imagen, minimagen.Unet
assert "site-packages" in minimagen.__file__, minimagen.__file__
print(f"original MinImagen ready: {minimagen.__file__} (torch {torch.__version__})")
PY
