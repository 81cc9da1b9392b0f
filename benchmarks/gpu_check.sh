#!/usr/bin/env bash
# The GPU checks, in one run on the lent GPU machine (the `device` tool; nothing here is needed to pass CI):
#
#   1. install the wheels benchmarks/gpu_wheels.sh prepared (.gpu_carry/part*), offline, into
#      /tmp/minimagen-gpu-check/site (after checking that torch sees CUDA);
#   2. pytest -m gpu tests            the tests that need CUDA (they skip everywhere else);
#   3. nbval of the ten notebooks     each notebook run on CUDA (get_device() picks it) against its stored
#                                     outputs, with the same sanitising as the CPU run;
#   4. benchmarks/step_variants.py --device cuda --batch-scale 8   one training step per variant, figures.
#
# Every step runs even when an earlier one fails; each one's log and the step figures go to $OUT (the
# device tool's output folder; /tmp/gpu_check elsewhere); the last lines say which steps passed, and the
# exit status is the number of steps that failed. About 5 minutes on an H200 (not yet timed there).
#
#   bash benchmarks/gpu_check.sh                         # on the GPU machine, after the parts are carried
#   GPU_CHECK_ALLOW_CPU=1 bash benchmarks/gpu_check.sh   # a rehearsal on a CPU: steps 1 and 3 only
#
# The calls (benchmarks/README.md, "GPU checks"): `bash benchmarks/gpu_wheels.sh` here; then on the device,
# back to back while it stays warm, one call per part: carry [".gpu_carry/part1"] with the command `true`,
# ..., and the last part with `bash benchmarks/gpu_check.sh`.
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS=${OUT:-/tmp/gpu_check}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
PY=${PYTHON:-python3}
WORK=/tmp/minimagen-gpu-check   # the wheels and the packages installed from them
declare -A RESULT
ORDER=()

step() {  # step NAME COMMAND...: run it, keep its log, remember whether it passed
    local name=$1; shift
    ORDER+=("$name")
    echo "=== $name: $*"
    local start=$SECONDS
    "$@" 2>&1 | tee "$LOGS/$name.log"
    local status=${PIPESTATUS[0]}
    RESULT[$name]="exit $status in $((SECONDS - start)) s"
    echo "=== $name: ${RESULT[$name]}"
    return "$status"
}

install_wheels() {
    local pieces
    pieces=$(ls .gpu_carry/part*/wheels.tar.* 2>/dev/null | sort -t. -k3 -n)
    if [ -z "$pieces" ]; then
        echo "no .gpu_carry/part*/wheels.tar.* here: run benchmarks/gpu_wheels.sh on the CPU machine and carry"
        echo "each .gpu_carry/partN in its own call (ignored paths stay on the machine while it is warm)"
        return 1
    fi
    echo "pieces: $pieces"
    rm -rf "$WORK" && mkdir -p "$WORK"
    # A missing piece makes tar stop with "Unexpected EOF": the message names the parts it had.
    cat $pieces | tar -x -C "$WORK" || { echo "the pieces do not make a whole tar: carry every part"; return 1; }
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
        "$WORK"/wheels/*.whl
}

"$PY" - <<'EOF' | tee "$LOGS/machine.log"
import platform, sys, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("CUDA available:", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device:", p.name, f"{p.total_memory / 2**30:.0f} GiB,", p.multi_processor_count, "SMs, bf16:",
          torch.cuda.is_bf16_supported())
sys.exit(0 if torch.cuda.is_available() else 3)  # the exit status says whether there is CUDA
EOF
[ "${PIPESTATUS[0]}" = 0 ] && cuda=1 || cuda=0
if [ "$cuda" != 1 ] && [ "${GPU_CHECK_ALLOW_CPU:-0}" != 1 ]; then
    echo "gpu_check: torch sees no CUDA device here; set GPU_CHECK_ALLOW_CPU=1 for a rehearsal on a CPU"
    exit 1
fi

step wheels install_wheels
export PYTHONPATH="$WORK/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$WORK/site/bin:$PATH"

if [ "$cuda" = 1 ]; then
    step pytest_gpu "$PY" -m pytest -m gpu tests -q -p no:cacheprovider -rs
fi
step nbval "$PY" -m pytest notebooks --nbval --nbval-current-env \
    --nbval-sanitize-with tests/nbval_sanitize.cfg -q -p no:cacheprovider --durations=10
if [ "$cuda" = 1 ]; then
    step step_variants "$PY" benchmarks/step_variants.py --device cuda --batch-scale 8 \
        --out "$LOGS/step_variants_cuda.json"
fi

failed=0
echo
echo "gpu_check summary ($(date -u +%Y-%m-%dT%H:%MZ)):"
for name in "${ORDER[@]}"; do
    echo "  $name: ${RESULT[$name]}"
    [[ ${RESULT[$name]} == "exit 0 "* ]] || failed=$((failed + 1))
done
exit "$failed"
