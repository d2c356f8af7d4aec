#!/usr/bin/env bash
# ppo_atari on Pong on a GPU for a fixed wall-clock budget: the Atari issue's GPU check, made to
# run in one call of the device tool (a bare machine with CUDA torch, 16 cores, no internet).
#
# Prepare here, in the repository root (the packages the device image lacks, as wheels):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux_2_28_x86_64 --platform any -d .whl \
#       gymnasium ale-py hydra-core omegaconf farama-notifications
#   python3 -m pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3
# then run it there: command "bash scripts/device_pong.sh", carry [".whl"], timeout_s 600.
# Here, without a GPU, the same path runs on the CPU: DEVICE=cpu SECONDS_LIMIT=60 OUT=/tmp/p bash scripts/device_pong.sh
#
# Settings for the GPU (ppo_atari's otherwise): 32 envs stepped by ale-py's vector env on 16
# threads, rollouts of 128 steps (4,096 frames), 4 epochs of 4 minibatches of 1,024 (CleanRL's
# 8 envs give 1,024-step rollouts and minibatches of 256: more envs feed the GPU bigger batches
# for the same number of gradient steps per rollout). Training stops by SIGTERM after
# SECONDS_LIMIT (420 s: the issue's 7 minutes); the run writes its checkpoint and summary then.
# Extra arguments are Hydra overrides (env.num_envs=64 algo.batch_size=2048 ...; network.precision=bf16
# runs the CNN in bfloat16 autocast, which GPUs from Ampere on compute in hardware; not yet measured there).
set -euo pipefail
OUT=${OUT:-outputs/device_pong}
SECONDS_LIMIT=${SECONDS_LIMIT:-420}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
mkdir -p "$OUT"

if ! "$PY" -c "import gymnasium, ale_py, hydra, omegaconf" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --find-links .whl gymnasium ale-py hydra-core omegaconf
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - "$DEVICE" <<'EOF'
import sys, torch, ale_py, gymnasium
device = sys.argv[1]
print(f"torch {torch.__version__}, gymnasium {gymnasium.__version__}, ale-py {ale_py.__version__}")
if device.startswith("cuda"):
    assert torch.cuda.is_available(), "device=cuda asked for, but torch sees no GPU"
    print(f"GPU: {torch.cuda.get_device_name(0)}")
EOF

start=$(date +%s)
status=0
timeout -s TERM "$SECONDS_LIMIT" "$PY" -m rlexp.cli.train hparams=ppo_atari env.id=ALE/Pong-v5 device="$DEVICE" \
    env.num_envs=32 env.threads=16 algo.n_steps=128 algo.batch_size=1024 \
    eval.every_steps=250000 eval.episodes=8 progress=false hydra.run.dir="$OUT/run" "$@" || status=$?
echo "rlexp.train exit status $status after $(( $(date +%s) - start )) s (124: stopped at the time limit)"
cp "$OUT/run/summary.json" "$OUT/run/train.log" "$OUT/" 2>/dev/null || true

"$PY" - "$OUT/summary.json" <<'EOF'
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except FileNotFoundError:
    sys.exit("no summary.json: the run did not get as far as writing one (see train.log)")
print(f"status {s['status']}: {s['steps']:,} steps, {s['updates']} updates, {s['sps']:.0f} steps/s of training on {s['device']}")
for step, mean, std in s.get("eval_history", []):
    print(f"  eval at {step:>10,}: {mean:6.1f} +/- {std:.1f}")
EOF
