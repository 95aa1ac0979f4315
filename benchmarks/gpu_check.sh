#!/usr/bin/env bash
# The accelerator check, in one go, on a machine with a GPU (run from the repository root):
#
#   bash benchmarks/gpu_check.sh          # GPU: the 16 ImageNet cells' train steps (alpha 1/0.75/0.5/0.25 x
#                                         # 224/192/160/128 px, batch 256, bf16, portable kernels), the input
#                                         # pipelines at each resolution, and the PyTorch peer at 1.0-224
#                                         # (timm's mobilenetv1_100 if timm is installed, else the bench's twin),
#                                         # torch.compile'd
#   bash benchmarks/gpu_check.sh --dry    # any machine: the same steps at tiny sizes on the CPU (tested)
#
# Every measurement goes as JSON lines to $OUT (default benchmarks/gpu_check_<date>_<commit>[_dry].jsonl);
# the table at the end says for each cell whether each input pipeline keeps up with its train step.
set -euo pipefail
PYTHON=${PYTHON:-python}

if [[ "${1:-}" == "--dry" ]]; then
  device=cpu batch=8 alphas="0.25" resolutions="64 32" repeats=1 peer=twin torch_compile=--no-torch-compile
  peer_setting=0.25,32,8,bfloat16 suffix=_dry
elif [[ $# -eq 0 ]]; then
  device=gpu batch=256 alphas="1.0 0.75 0.5 0.25" resolutions="224 192 160 128" repeats=5 torch_compile=--torch-compile
  peer_setting=1.0,224,256,bfloat16 suffix=""
  peer=$("$PYTHON" -c "import timm" 2>/dev/null && echo timm || echo twin)
else
  echo "usage: bash benchmarks/gpu_check.sh [--dry]" >&2
  exit 2
fi
OUT=${OUT:-benchmarks/gpu_check_$(date -u +%F)_$(git rev-parse --short HEAD 2>/dev/null || echo nogit)$suffix.jsonl}

settings=()
for alpha in $alphas; do
  for resolution in $resolutions; do
    settings+=(--setting "$alpha,$resolution,$batch,bfloat16")
  done
done

echo "== the cells' train steps alone, and the input pipelines at each resolution ($device) -> $OUT" >&2
"$PYTHON" -m mnet_jax.bench --device "$device" "${settings[@]}" --peer none --repeats "$repeats" --json >> "$OUT"
if [[ -z "$suffix" ]]; then  # --dry leaves out the input modes (tests/test_input_modes.py runs that bench)
  echo "== the input modes alone (mnet_jax.bench --pipeline)" >&2
  "$PYTHON" -m mnet_jax.bench --pipeline --json >> "$OUT"
fi
echo "== the PyTorch peer ($peer) at $peer_setting" >&2
"$PYTHON" -m mnet_jax.bench --device "$device" --setting "$peer_setting" --peer "$peer" "$torch_compile" \
  --repeats "$repeats" --no-pipeline --json >> "$OUT"

"$PYTHON" - "$OUT" <<'EOF'
import json, sys

lines = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
steps = [l for l in lines if "jax_train_img_s" in l and "alpha" in l and l.get("peer") == "none"]
pipelines = [l for l in lines if ("pipeline" in l or "mode" in l) and ("pipeline_img_s" in l or "img_s" in l)]
peers = [l for l in lines if "alpha" in l and l.get("peer") not in (None, "none")]
name = lambda l: l.get("mode") or l["pipeline"]  # noqa: E731
rate = lambda l: l.get("pipeline_img_s", l.get("img_s"))  # noqa: E731
modes = sorted({name(l) for l in pipelines})
print(f"{steps[0]['machine']}, kernels={steps[0]['kernels']}, {steps[0]['date']}" if steps else "no step measured")
print(f"{'alpha':>5} {'res':>4} {'step img/s':>11} | " + " | ".join(f"{m} img/s, bound?" for m in modes))
for s in steps:
  cells = []
  for m in modes:
    rates = [rate(l) for l in pipelines if name(l) == m and l["resolution"] == s["resolution"]]
    cells.append(f"{rates[-1]:.0f}, {'INPUT-BOUND' if rates[-1] < s['jax_train_img_s'] else 'no'}" if rates else "-")
  print(f"{s['alpha']:5.2f} {s['resolution']:4d} {s['jax_train_img_s']:11.1f} | " + " | ".join(cells))
for p in peers:
  print(f"peer {p['peer']} ({p['torch_mode']}) at {p['alpha']}-{p['resolution']} b{p['batch']} {p['dtype']}: "
        f"train jax {p['jax_train_img_s']} vs torch {p['torch_train_img_s']} img/s (ratio {p['train_ratio']}); "
        f"infer jax {p['jax_infer_img_s']} vs torch {p['torch_infer_img_s']} (ratio {p['infer_ratio']})")
EOF
