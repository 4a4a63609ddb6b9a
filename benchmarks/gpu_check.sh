#!/usr/bin/env bash
# One command that proves streamanon's GPU path on a machine with one NVIDIA GPU (docs/gpu.md):
# installs the GPU extras, builds FP16 TensorRT engines, runs file mode (1080p, 4K) with
# NVDEC/NVENC, --method generate and 8 RTSP feeds through `streamanon streams`, compares
# boxes and leaks with a CPU run, prints one table; exits non-zero on any mismatch or leak.
#
#   benchmarks/gpu_check.sh             # the whole check (< 8 min on one H100-class GPU)
#   benchmarks/gpu_check.sh --dry-run   # the plan + every check that needs no GPU (CI)
#   benchmarks/gpu_check.sh --no-install ...   # skip the pip step (extras already installed)
#
# Other arguments go to benchmarks/gpu_check.py (see its --help). PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
install=1
args=()
for a in "$@"; do
  case "$a" in
    --dry-run) install=0; args+=("$a") ;;
    --no-install) install=0 ;;
    *) args+=("$a") ;;
  esac
done
if [[ $install == 1 ]]; then
  command -v nvidia-smi >/dev/null || { echo "gpu_check: no nvidia-smi: this needs an NVIDIA GPU (try --dry-run)" >&2; exit 2; }
  echo "gpu_check: installing the GPU extras (ort-gpu, tensorrt)"
  "$PYTHON" -m pip install --quiet -e ".[ort-gpu,tensorrt]"
  # onnxruntime and onnxruntime-gpu install the same package: keep only the GPU build.
  if "$PYTHON" -m pip show --quiet onnxruntime >/dev/null 2>&1; then
    "$PYTHON" -m pip uninstall --quiet -y onnxruntime
    "$PYTHON" -m pip install --quiet --force-reinstall --no-deps "onnxruntime-gpu>=1.17"
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" benchmarks/gpu_check.py "${args[@]}"
