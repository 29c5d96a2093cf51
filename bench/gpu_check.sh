#!/usr/bin/env bash
# The GPU check, for a lent H100/H200 (no network; its Python has torch + CUDA, transformers,
# peft, accelerate, pytest, but none of the server's dependencies). From the repository root:
#
#     bash bench/gpu_check.sh            # through the device tool: run(command=..., timeout_s=420)
#
# 1. the CUDA tests: PYTHONPATH=src pytest --confcutdir=tests/gpu -m gpu tests/gpu (LoRA and full
#    jobs in bf16, resume, packing, memory, several devices: each skips what the machine lacks);
# 2. the trainer benchmark on a Qwen2.5-0.5B-shaped model: ftserve vs HF Trainer, tokens/s, MFU
#    (bench/gpu_train_bench.py);
# then one summary. Each part has its own time limit; the whole stays under 5 minutes, leaving
# device time for a second run. Logs and the benchmark's JSON go to $OUT (the device tool brings
# them back) or a temporary directory.
#
# Optional: the worker-level job-start test (tests/gpu/test_job_start_cuda.py) needs orjson and
# starlette, which the machine lacks. Make them travel by preparing, on the dev machine:
#     pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --platform manylinux_2_17_x86_64 -d /tmp/w orjson starlette anyio sniffio \
#         python-multipart typing_extensions && mkdir -p .gpu-deps && \
#         for w in /tmp/w/*.whl; do unzip -oq "$w" -d .gpu-deps; done
# and passing carry=[".gpu-deps"]; this script puts it on the path when it is there.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT_DIR="${OUT:-$(mktemp -d)}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .gpu-deps ]; then PYTHONPATH="$PYTHONPATH:$PWD/.gpu-deps"; fi
began=$(date +%s)

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c 'import torch, transformers, peft, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, "peft", peft.__version__, "cuda available", torch.cuda.is_available())'

echo "== CUDA tests (tests/gpu)"
# Deprecations of the machine's own (older) library versions are not what this check is for;
# everything else stays an error, as in the suite.
timeout 150 "$PY" -m pytest --confcutdir=tests/gpu -m gpu tests/gpu -q -rs -p no:cacheprovider \
    -W "ignore::DeprecationWarning" -W "ignore::FutureWarning" \
    --junitxml="$OUT_DIR/gpu-tests.xml" 2>&1 | tee "$OUT_DIR/gpu-tests.log"
tests_rc=${PIPESTATUS[0]}

echo "== trainer benchmark (0.5B, bf16)"
timeout 120 "$PY" bench/gpu_train_bench.py --json "$OUT_DIR/gpu-bench.json" 2>&1 \
    | tee "$OUT_DIR/gpu-bench.log"
bench_rc=${PIPESTATUS[0]}

echo
echo "================ GPU check summary ================"
nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1
echo "tests: $(grep -E '(passed|failed|skipped|error)' "$OUT_DIR/gpu-tests.log" | tail -1) (exit $tests_rc)"
grep -E "^(FAILED|ERROR)" "$OUT_DIR/gpu-tests.log" || true
grep -E "^job start on CUDA" "$OUT_DIR/gpu-tests.log" || true
echo "benchmark (exit $bench_rc):"
sed -n '/^== trainer on/,$p' "$OUT_DIR/gpu-bench.log"
echo "elapsed: $(( $(date +%s) - began )) s; logs in $OUT_DIR"
[ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ]
