#!/usr/bin/env bash
# The runs behind the generated tables of docs/results.md: one multirun per row, two jobs at a
# time, into outputs/multirun/results/<row>; 20 deterministic evaluation episodes except where a
# preset sets its own (the FrozenLake and MiniGrid ones).
#
#   bash scripts/results_runs.sh [row ...]          # default: every row below, in this order
#   python scripts/results_page.py record --table tuned outputs/multirun/results/<row> ...
#   python scripts/results_page.py record --table recurrent outputs/multirun/results/ppo_lstm_* ...
#   python scripts/results_page.py record --table spaces outputs/multirun/results/ppo_{frozenlake,minigrid}* ...
#   python scripts/results_page.py build            # -> docs/results.md and its curves
#
# Each row's command is what its "command" column shows.
set -euo pipefail
cd "$(dirname "$0")/.."

# row | overrides (seeds included)
ROWS="
ppo_cartpole|hparams=ppo_cartpole seed=0,1,2 eval.episodes=20
a2c_cartpole|hparams=a2c_cartpole seed=0,1,2 eval.episodes=20
reinforce_baseline_cartpole|hparams=reinforce_baseline_cartpole seed=0,1,2 eval.episodes=20
reinforce_cartpole|hparams=reinforce_cartpole seed=0,1,2 eval.episodes=20
ppo_pendulum|hparams=ppo_pendulum seed=0,1,2 eval.episodes=20
ppo_acrobot|hparams=ppo_acrobot seed=0,1,2 eval.episodes=20
ppo_lunarlander|hparams=ppo_lunarlander eval.every_steps=100000 seed=0,1,2 eval.episodes=20
ppo_cartpole_gpu|hparams=ppo_cartpole_gpu seed=0,1,2 eval.episodes=20
ppo_lstm_cartpole_novel|hparams=ppo_lstm_cartpole_novel seed=0,1,2,3,4,5,6,7 eval.episodes=20
ppo_lstm_cartpole_novel_nocore|hparams=ppo_lstm_cartpole_novel network.recurrent=null seed=0,1,2 eval.episodes=20
ppo_lstm_pendulum_novel|hparams=ppo_lstm_pendulum_novel seed=0,1,2 eval.episodes=20
a2c_lunarlander|hparams=a2c_lunarlander eval.every_steps=100000 seed=0,1,2 eval.episodes=20
ppo_halfcheetah|hparams=ppo_halfcheetah eval.every_steps=100000 seed=0,1,2 eval.episodes=20
ppo_bipedalwalker|hparams=ppo_bipedalwalker eval.every_steps=500000 seed=0,1,2 eval.episodes=20
ppo_frozenlake|hparams=ppo_frozenlake seed=0,1,2
ppo_frozenlake_slippery|hparams=ppo_frozenlake_slippery seed=0,1,2
ppo_minigrid_doorkey|hparams=ppo_minigrid_doorkey seed=0,1,2
"

wanted=" $* "
while IFS='|' read -r row overrides; do
  [ -z "$row" ] && continue
  [ $# -gt 0 ] && [[ "$wanted" != *" $row "* ]] && continue
  # shellcheck disable=SC2086
  python -m rlexp.cli.train -m $overrides progress=false \
    hydra/launcher=joblib hydra.launcher.n_jobs=2 "hydra.sweep.dir=outputs/multirun/results/$row"
done <<< "$ROWS"
