#!/usr/bin/env bash
# Measurement run behind data/gpu_h200_*.csv: the harness (python -m aimoe_lib.gpu_measure) on one
# GPU, eager and CUDA-graph decode of Mixtral-8x7B (2 of 32 layers), Llama-3-8B (4 of 32) and
# Llama-2-70B (2 of 80) at batch 1, 8, 64 and 256 in bf16, each with a 3 s steady-state power
# window, then the bandwidth of weight-streaming GEMMs. Needs a CUDA machine with torch (and
# nvidia-ml-py for power); writes OUTDIR/gpu_h200.csv, gpu_h200_stream.csv, nvidia_smi.csv. Usage: bash tools/measure_gpu.sh OUTDIR [--dry-run]
# With --dry-run it runs the same steps on the CPU with tiny models (a check of this script).
set -u
out=${1:?give an output folder}
mkdir -p "$out"
parts=$(mktemp -d)
py=${PYTHON:-python3}
if [ "${2:-}" = "--dry-run" ]; then
  common=(--device cpu --dry-run); pw=(); tag=cpu
else
  common=(--device cuda); pw=(--power-seconds 3); tag=h200
  nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,clocks.max.mem,memory.total \
    --format=csv > "$out/nvidia_smi.csv" 2>&1 || true
fi
export PYTHONUNBUFFERED=1
status=0
for spec in "mixtral-8x7b 2" "llama-3-8b 4" "llama-2-70b 2"; do
  set -- $spec
  for mode in eager graph; do
    flag=(); [ $mode = graph ] && flag=(--graph)
    echo "== $1 $mode"
    $py -m aimoe_lib.gpu_measure --model "$1" --layers "$2" --batches 1,8,64,256 \
      --prompt-len 128 --decode-steps 32 --warmup 3 --repeats 5 "${common[@]}" "${pw[@]}" \
      "${flag[@]}" --out "$parts/${1}_${mode}.csv" || status=1
  done
done
# one CSV of all decode runs (the header once)
first=1
for f in "$parts"/*.csv; do
  if [ $first = 1 ]; then cat "$f"; first=0; else tail -n +2 "$f"; fi
done > "$out/gpu_${tag}.csv"
echo "== weight stream"
$py -m aimoe_lib.gpu_measure --weight-stream --stream-shape 8192,28672 \
  --batches 1,2,4,8,16,32,64,128,256,512,1024 --repeats 10 "${common[@]}" \
  --out "$out/gpu_${tag}_stream.csv" || status=1
exit $status
