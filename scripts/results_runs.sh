#!/usr/bin/env bash
# The runs behind the generated tables of docs/results.md: one multirun per row, two jobs at a
# time, into outputs/multirun/results/<row>; 20 deterministic evaluation episodes except where a
# preset sets its own (the FrozenLake and MiniGrid ones).
#
#   bash scripts/results_runs.sh [row ...]          # default: every row below, in this order
#   N_JOBS=1 bash scripts/results_runs.sh row       # one job at a time (beside another run)
#   python scripts/results_page.py record --table tuned outputs/multirun/results/<row> ...
#   python scripts/results_page.py record --table recurrent outputs/multirun/results/ppo_lstm_* ...
#   python scripts/results_page.py record --table spaces outputs/multirun/results/ppo_{frozenlake,minigrid}* ...
#   python scripts/results_page.py record --table masks outputs/multirun/results/ppo_taxi* ...
#   python scripts/results_page.py record --table minatar outputs/multirun/results/{breakout_10m,spaceinvaders_10m,ppo_minatar_breakout,ppo_lstm_minatar_breakout}* ...
#   python scripts/results_page.py record --table atari --stopped outputs/multirun/results/*_atari_{breakout,pong} ...
#   python scripts/results_page.py record --table probes outputs/multirun/results/breakout_3m* ...  # one change per row
#   python scripts/results_page.py record --table agents --eval 'episodes=1000 opponent=random' \
#       --eval 'episodes=1000 opponent=rlexp.envs.multiagent:connect_four_lookahead' outputs/multirun/results/ppo_connect_four_selfplay*
#   python scripts/results_page.py record --table agents outputs/multirun/results/ppo_simple_*
#   python scripts/results_page.py record --table optuna outputs/multirun/results/optuna_*   # one record per trial
#   python scripts/results_page.py build            # -> docs/results.md and its curves
#
# Each row's command is what its "command" column shows.
set -euo pipefail
cd "$(dirname "$0")/.."

# row | overrides (seeds included). The breakout_3m rows ran when ppo_minatar_mlp had a 5% warm-up,
# so they set it (their records' commands predate that and omit it). The Atari rows keep their
# presets' 10M-step schedule and are stopped by a signal when the machine's time is spent
# (`python -m rlexp.cli.train resume=<job dir>` goes on; `record --stopped` keeps them so far).
# The a2c_lunarlander__* probes ran on that preset as it was before it took ent_coef 1e-3 and
# max_grad_norm 0.2 (from the probe a2c_lunarlander__ent_1e3_grad_02); their rows here set its
# old values (ent_coef 1e-5, max_grad_norm 0.5), which their records' commands did not need to.
# The optuna_* rows are two Optuna searches (16 trials, two at a time) in a study database of their
# own: run them one after the other on an idle machine, with no study of those names in it yet
# (a second run adds 16 trials to the same study). connect_four_20k is recorded with
# --eval 'episodes=200 opponent=random'. The *_seeds_3_5 rows are seeds of the row before them,
# run later: record --table spaces --name <that row> (and ppo_halfcheetah__lr_constant_seed_2 with
# --table probes). ppo_minigrid_doorkey__cnn_auto ran one job at
# a time (hydra.launcher.n_jobs=1, as its records' command says) beside breakout_pgx_20m.
# a2c_lunarlander__base is that old preset, recorded as the probes' base row:
#   python scripts/results_page.py record --table probes --name a2c_lunarlander outputs/multirun/results/a2c_lunarlander__base
ROWS="
ppo_cartpole|hparams=ppo_cartpole seed=0,1,2 eval.episodes=20
a2c_cartpole|hparams=a2c_cartpole seed=0,1,2 eval.episodes=20
reinforce_baseline_cartpole|hparams=reinforce_baseline_cartpole seed=0,1,2 eval.episodes=20
reinforce_cartpole|hparams=reinforce_cartpole seed=0,1,2 eval.episodes=20
ppo_pendulum|hparams=ppo_pendulum seed=0,1,2 eval.episodes=20
ppo_acrobot|hparams=ppo_acrobot seed=0,1,2 eval.episodes=20
ppo_lunarlander|hparams=ppo_lunarlander eval.every_steps=100000 seed=0,1,2 eval.episodes=20
reinforce_cartpole__200k|hparams=reinforce_cartpole total_steps=200000 seed=0,1,2 eval.episodes=20
ppo_acrobot__epochs_4|hparams=ppo_acrobot algo.n_epochs=4 seed=0,1,2 eval.episodes=20
ppo_cartpole__autograd|hparams=ppo_cartpole fast_cpu=false seed=0,1,2 eval.episodes=20
ppo_pendulum__autograd|hparams=ppo_pendulum fast_cpu=false seed=0,1,2 eval.episodes=20
ppo_acrobot__autograd|hparams=ppo_acrobot fast_cpu=false seed=0,1,2 eval.episodes=20
ppo_lunarlander__autograd|hparams=ppo_lunarlander fast_cpu=false eval.every_steps=100000 seed=0,1,2 eval.episodes=20
ppo_halfcheetah__lr_constant|hparams=ppo_halfcheetah algo.lr_schedule=constant eval.every_steps=100000 seed=0,1 eval.episodes=20
ppo_halfcheetah__lr_constant_seed_2|hparams=ppo_halfcheetah algo.lr_schedule=constant eval.every_steps=100000 seed=2 eval.episodes=20
ppo_acrobot__zoo|hparams=ppo_acrobot algo.n_epochs=4 algo.lr_schedule=constant seed=0,1,2 eval.episodes=20
ppo_pendulum__lr_constant|hparams=ppo_pendulum algo.lr_schedule=constant seed=0,1,2 eval.episodes=20
ppo_pendulum__no_sde_lr_constant|hparams=ppo_pendulum network.use_sde=false algo.lr_schedule=constant seed=0,1,2 eval.episodes=20
ppo_cartpole_gpu|hparams=ppo_cartpole_gpu seed=0,1,2 eval.episodes=20
ppo_lstm_cartpole_novel|hparams=ppo_lstm_cartpole_novel seed=0,1,2,3,4,5,6,7 eval.episodes=20
ppo_lstm_cartpole_novel_nocore|hparams=ppo_lstm_cartpole_novel network.recurrent=null seed=0,1,2 eval.episodes=20
ppo_lstm_pendulum_novel|hparams=ppo_lstm_pendulum_novel seed=0,1,2 eval.episodes=20
ppo_lstm_cartpole_novel__zoo_100k|hparams=ppo_lstm_cartpole_novel total_steps=100000 seed=0,1,2 eval.episodes=20
ppo_lstm_pendulum_novel__obs_norm_only|hparams=ppo_lstm_pendulum_novel env.normalize_reward=false seed=0,1,2 eval.episodes=20
a2c_lunarlander|hparams=a2c_lunarlander eval.every_steps=100000 seed=0,1,2,3,4 eval.episodes=20
ppo_halfcheetah|hparams=ppo_halfcheetah eval.every_steps=100000 seed=0,1,2 eval.episodes=20
ppo_bipedalwalker|hparams=ppo_bipedalwalker eval.every_steps=500000 seed=0,1,2 eval.episodes=20
ppo_bipedalwalker__zoo_v3|hparams=ppo_bipedalwalker algo.learning_rate=3e-4 algo.clip_range=0.18 algo.ent_coef=0.0 eval.every_steps=500000 seed=0 eval.episodes=20
ppo_frozenlake|hparams=ppo_frozenlake seed=0,1,2
ppo_frozenlake_slippery|hparams=ppo_frozenlake_slippery seed=0,1,2
ppo_minigrid_doorkey|hparams=ppo_minigrid_doorkey seed=0,1,2
ppo_minigrid_doorkey__cnn_auto|hparams=ppo_minigrid_doorkey network.encoder=auto seed=0,1,2
ppo_frozenlake_seeds_3_5|hparams=ppo_frozenlake seed=3,4,5
ppo_frozenlake_slippery_seeds_3_5|hparams=ppo_frozenlake_slippery seed=3,4,5
ppo_minigrid_doorkey_seeds_3_5|hparams=ppo_minigrid_doorkey seed=3,4,5
ppo_taxi|hparams=ppo_taxi seed=1,2,3
ppo_taxi_nomask|hparams=ppo_taxi env.action_mask=none seed=1,2,3
breakout_10m_no_warmup|hparams=ppo_minatar_mlp env.id=MinAtar/Breakout-v1 algo.lr_warmup=0 eval.every_steps=500000 seed=0,1,2
spaceinvaders_10m_no_warmup|hparams=ppo_minatar_mlp env.id=MinAtar/SpaceInvaders-v1 algo.lr_warmup=0 eval.every_steps=500000 seed=0,1,2
breakout_pgx_20m|hparams=ppo_minatar_mlp env=minatar_pgx env.id=MinAtar/Breakout-v1 total_steps=20000000 seed=0,1
breakout_pgx_20m__gamma_099|hparams=ppo_minatar_mlp env=minatar_pgx env.id=MinAtar/Breakout-v1 total_steps=20000000 seed=0,1 algo.gamma=0.99
breakout_pgx_20m__gamma_099_pgx_batch|hparams=ppo_minatar_mlp env=minatar_pgx env.id=MinAtar/Breakout-v1 total_steps=20000000 seed=0,1 algo.gamma=0.99 env.num_envs=4096 algo.n_steps=128 algo.batch_size=4096 algo.n_epochs=3 algo.learning_rate=3e-4
breakout_pgx_20m__pgx_settings|hparams=ppo_minatar_mlp env=minatar_pgx env.id=MinAtar/Breakout-v1 total_steps=20000000 seed=0 algo.gamma=0.99 env.num_envs=4096 algo.n_steps=128 algo.batch_size=4096 algo.n_epochs=3 algo.learning_rate=3e-4 network.encoder=cnn network.cnn.channels=[32] network.cnn.kernels=[2] network.cnn.strides=[1] network.cnn.features=64 network.hidden_sizes=[64,64] network.activation=tanh network.init=lecun_normal
ppo_minatar_breakout_3m|hparams=ppo_minatar env.id=MinAtar/Breakout-v1 total_steps=3000000 eval.every_steps=250000 seed=0
ppo_lstm_minatar_breakout_3m|hparams=ppo_lstm_minatar env.id=MinAtar/Breakout-v1 total_steps=3000000 eval.every_steps=250000 seed=0
breakout_3m|hparams=ppo_minatar_mlp algo.lr_warmup=0.05 env.id=MinAtar/Breakout-v1 total_steps=3000000 eval.every_steps=250000 seed=0,1
breakout_3m__init_lecun|hparams=ppo_minatar_mlp algo.lr_warmup=0.05 env.id=MinAtar/Breakout-v1 total_steps=3000000 eval.every_steps=250000 seed=0,1 network.init=lecun_normal
breakout_3m__vf_coef_025|hparams=ppo_minatar_mlp algo.lr_warmup=0.05 env.id=MinAtar/Breakout-v1 total_steps=3000000 eval.every_steps=250000 seed=0,1 algo.vf_coef=0.25
breakout_3m__no_vf_clip|hparams=ppo_minatar_mlp algo.lr_warmup=0.05 env.id=MinAtar/Breakout-v1 total_steps=3000000 eval.every_steps=250000 seed=0,1 algo.clip_range_vf=null
breakout_3m__gamma_099|hparams=ppo_minatar_mlp algo.lr_warmup=0.05 env.id=MinAtar/Breakout-v1 total_steps=3000000 eval.every_steps=250000 seed=0,1 algo.gamma=0.99
breakout_3m__no_warmup|hparams=ppo_minatar_mlp env.id=MinAtar/Breakout-v1 total_steps=3000000 eval.every_steps=250000 seed=0,1 algo.lr_warmup=0
breakout_3m__envs_128|hparams=ppo_minatar_mlp algo.lr_warmup=0.05 env.id=MinAtar/Breakout-v1 total_steps=3000000 eval.every_steps=250000 seed=0,1 env.num_envs=128 algo.n_steps=64
breakout_3m__gymnax_blines|hparams=ppo_minatar_mlp env.id=MinAtar/Breakout-v1 total_steps=3000000 eval.every_steps=250000 seed=0,1 network.init=lecun_normal algo.vf_coef=0.25 algo.lr_warmup=0
a2c_atari_breakout|hparams=a2c_atari env.id=ALE/Breakout-v5 seed=0 env.threads=1
ppo_lstm_atari_breakout|hparams=ppo_lstm_atari env.id=ALE/Breakout-v5 seed=0 env.threads=1
ppo_atari_breakout|hparams=ppo_atari env.id=ALE/Breakout-v5 seed=0 env.threads=1
ppo_atari_pong|hparams=ppo_atari env.id=ALE/Pong-v5 seed=0 env.threads=1
a2c_lunarlander__base|hparams=a2c_lunarlander algo.ent_coef=1e-5 algo.max_grad_norm=0.5 eval.every_steps=100000 seed=0,1,2 eval.episodes=20
a2c_lunarlander__lr_half|hparams=a2c_lunarlander algo.ent_coef=1e-5 algo.max_grad_norm=0.5 algo.learning_rate=4.15e-4 eval.every_steps=100000 seed=0,1,2 eval.episodes=20
a2c_lunarlander__envs_16|hparams=a2c_lunarlander algo.ent_coef=1e-5 algo.max_grad_norm=0.5 env.num_envs=16 eval.every_steps=100000 seed=0,1,2 eval.episodes=20
a2c_lunarlander__rmsprop_tf|hparams=a2c_lunarlander algo.ent_coef=1e-5 algo.max_grad_norm=0.5 algo.optimizer._target_=rlexp.algos.optim.RMSpropTFLike eval.every_steps=100000 seed=0,1,2 eval.episodes=20
a2c_lunarlander__normadv|hparams=a2c_lunarlander algo.ent_coef=1e-5 algo.max_grad_norm=0.5 algo.normalize_advantage=true eval.every_steps=100000 seed=0,1,2 eval.episodes=20
a2c_lunarlander__ent_1e3|hparams=a2c_lunarlander algo.max_grad_norm=0.5 algo.ent_coef=0.001 eval.every_steps=100000 seed=0,1,2 eval.episodes=20
a2c_lunarlander__ent_1e2|hparams=a2c_lunarlander algo.max_grad_norm=0.5 algo.ent_coef=0.01 eval.every_steps=100000 seed=0,1,2 eval.episodes=20
a2c_lunarlander__vf_025|hparams=a2c_lunarlander algo.ent_coef=1e-5 algo.max_grad_norm=0.5 algo.vf_coef=0.25 eval.every_steps=100000 seed=0,1,2 eval.episodes=20
a2c_lunarlander__gamma_099|hparams=a2c_lunarlander algo.ent_coef=1e-5 algo.max_grad_norm=0.5 algo.gamma=0.99 eval.every_steps=100000 seed=0,1,2 eval.episodes=20
a2c_lunarlander__nsteps_16|hparams=a2c_lunarlander algo.ent_coef=1e-5 algo.max_grad_norm=0.5 algo.n_steps=16 eval.every_steps=100000 seed=0,1,2 eval.episodes=20
a2c_lunarlander__grad_02|hparams=a2c_lunarlander algo.ent_coef=1e-5 algo.max_grad_norm=0.2 eval.every_steps=100000 seed=0,1,2 eval.episodes=20
a2c_lunarlander__hidden_256|hparams=a2c_lunarlander algo.ent_coef=1e-5 algo.max_grad_norm=0.5 network.hidden_sizes=[256,256] eval.every_steps=100000 seed=0,1,2 eval.episodes=20
a2c_lunarlander__ent_1e3_grad_02|hparams=a2c_lunarlander algo.ent_coef=0.001 algo.max_grad_norm=0.2 eval.every_steps=100000 seed=0,1,2 eval.episodes=20
a2c_lunarlander__ent_1e2_grad_02|hparams=a2c_lunarlander algo.ent_coef=0.01 algo.max_grad_norm=0.2 eval.every_steps=100000 seed=0,1,2,3,4 eval.episodes=20
ppo_connect_four_selfplay|hparams=ppo_connect_four_selfplay seed=1,2,3
ppo_connect_four_selfplay__pure_selfplay|hparams=ppo_connect_four_selfplay selfplay.latest_share=0.5 selfplay.opponents=[pool] algo.learning_rate=3e-4 algo.n_epochs=4 seed=1
ppo_simple_spread|hparams=ppo_simple_spread seed=1,2,3
ppo_simple_spread__global_state|hparams=ppo_simple_spread env.critic_input=global_state seed=1,2,3
ppo_simple_adversary|hparams=ppo_simple_adversary seed=1,2,3
connect_four_20k|env=connect_four selfplay.snapshot_every=2 total_steps=20480 seed=1
optuna_pruned|+sweep=ppo_optuna_pruning hydra.sweeper.storage=sqlite:///outputs/multirun/results/optuna.db
optuna_unpruned|+sweep=ppo_optuna_pruning hydra/sweeper/pruner=none hydra.sweeper.study_name=ppo_cartpole_unpruned hydra.sweeper.storage=sqlite:///outputs/multirun/results/optuna.db
"

wanted=" $* "
while IFS='|' read -r row overrides; do
  [ -z "$row" ] && continue
  [ $# -gt 0 ] && [[ "$wanted" != *" $row "* ]] && continue
  # shellcheck disable=SC2086
  python -m rlexp.cli.train -m $overrides progress=false \
    hydra/launcher=joblib "hydra.launcher.n_jobs=${N_JOBS:-2}" "hydra.sweep.dir=outputs/multirun/results/$row"
done <<< "$ROWS"
