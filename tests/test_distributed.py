"""One run on several processes (rlexp/run/distributed.py): torchrun and distributed.nproc on
gloo, two CPU processes. The collectives are checked against sums over the union of the
ranks' data; the runs against what a data-parallel run must keep (one run directory, equal
parameters, resume, a rank that dies)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rlexp.run import distributed
from rlexp.run.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
# 2 envs x 64 steps per rank: a global rollout of 256 steps, minibatches of 2 x 32
SMALL = ["progress=false", "eval.episodes=2", "env.num_envs=2", "algo.n_steps=64", "algo.batch_size=32", "algo.n_epochs=2",
         "logger.tensorboard.histogram_every=0"]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT)]), **extra)
    return env


def torchrun(cwd: Path, *overrides: str, nproc: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "rlexp.cli.train",
               *overrides]
    return subprocess.run(command, cwd=cwd, env=environment(), capture_output=True, text=True, timeout=timeout)


def rlexp_train(cwd: Path, *overrides: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlexp.cli.train", *overrides], cwd=cwd, env=environment(), capture_output=True,
                          text=True, timeout=timeout)


def only_run(cwd: Path) -> Path:
    runs = list((cwd / "outputs" / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(run / "tb"), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def console_lines(result: subprocess.CompletedProcess) -> list[str]:
    """What rlexp itself said on the console (not torchrun's or the elastic agent's lines)."""
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith(("rlexp-train", "[rank"))]


# -- the collectives, against the union of the ranks' data ------------------------------------
def _collectives(rank: int, store: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        dp = distributed.DataParallel(distributed.World(rank, 2, rank), "auto", torch.device("cpu"))
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)  # the same start on both ranks
        data = torch.arange(24, dtype=torch.float32).reshape(8, 3) / 10
        targets = torch.linspace(-1, 1, 16).reshape(8, 2)
        mine = slice(0, 3) if rank == 0 else slice(3, 8)  # 3 samples on rank 0, 5 on rank 1
        loss = (model(data[mine]) - targets[mine]).pow(2).mean()
        model.zero_grad()
        loss.backward()
        dp.average_gradients(model.parameters(), n=len(data[mine]))
        averaged = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        (model(data) - targets).pow(2).mean().backward()  # the loss over all 8 samples, in one process
        union = [p.grad.clone() for p in model.parameters()]

        x = torch.tensor([1.0, 2.0, 4.0]) if rank == 0 else torch.tensor([-3.0, 0.5])
        mean, std = dp.mean_std(x)
        count = dp.minibatch_count(100 if rank == 0 else 90, batch_size=32)  # (100 + 90) / 64 -> 3

        from gymnasium.wrappers.utils import RunningMeanStd

        start = RunningMeanStd(shape=(2,))
        start.update(np.array([[0.0, 1.0], [2.0, 3.0]]))
        previous = {"mean": torch.as_tensor(start.mean), "var": torch.as_tensor(start.var), "count": float(start.count)}
        own = np.array([[1.0, -1.0], [5.0, 2.0], [0.5, 0.5]]) if rank == 0 else np.array([[10.0, 4.0]])
        grown = RunningMeanStd(shape=(2,))
        grown.mean, grown.var, grown.count = start.mean.copy(), start.var.copy(), start.count
        grown.update(own)
        merged = distributed.merge_moments({"mean": torch.as_tensor(grown.mean), "var": torch.as_tensor(grown.var), "count": float(grown.count)},
                                           previous, dp._sum)
        torch.save({"averaged": averaged, "union": union, "mean": float(mean), "std": float(std), "count": count,
                    "merged": {k: (v.numpy() if torch.is_tensor(v) else v) for k, v in merged.items()},
                    "flags": dp.flags(rank == 1, False), "checksums": dp.parameter_checksums(model)}, f"{out}{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_the_collectives_equal_sums_over_the_union_of_the_ranks_data(tmp_path):
    torch.multiprocessing.spawn(_collectives, args=(str(tmp_path / "store"), str(tmp_path / "rank")), nprocs=2)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    for result in results:
        # each rank's gradient of its own mean, weighted by its 3 or 5 samples: the gradient of the mean over all 8
        for averaged, union in zip(result["averaged"], result["union"]):
            torch.testing.assert_close(averaged, union, rtol=1e-6, atol=1e-7)
        values = np.array([1.0, 2.0, 4.0, -3.0, 0.5])
        assert result["mean"] == pytest.approx(values.mean()) and result["std"] == pytest.approx(values.std(ddof=1))
        assert result["count"] == 3
        # the statistics one RunningMeanStd holds after the first two rows and then both ranks' rows
        from gymnasium.wrappers.utils import RunningMeanStd

        one = RunningMeanStd(shape=(2,))
        for rows in ([[0.0, 1.0], [2.0, 3.0]], [[1.0, -1.0], [5.0, 2.0], [0.5, 0.5]], [[10.0, 4.0]]):
            one.update(np.array(rows))
        np.testing.assert_allclose(result["merged"]["mean"], one.mean, rtol=1e-9)
        np.testing.assert_allclose(result["merged"]["var"], one.var, rtol=1e-9)
        assert result["merged"]["count"] == pytest.approx(one.count, rel=1e-12)
        # which, gymnasium's prior of 1e-4 samples of mean 0 aside, are the six rows' moments
        everything = np.array([[0.0, 1.0], [2.0, 3.0], [1.0, -1.0], [5.0, 2.0], [0.5, 0.5], [10.0, 4.0]])
        np.testing.assert_allclose(result["merged"]["mean"], everything.mean(axis=0), rtol=1e-4)
        assert result["flags"] == [True, False]  # rank 1's stop reaches rank 0
    assert results[0]["checksums"] == results[1]["checksums"] and len(set(results[0]["checksums"])) == 1


def test_the_checksum_sees_one_changed_value():
    model = torch.nn.Linear(4, 3)
    before = distributed.checksum(model)
    assert distributed.checksum(model) == before
    with torch.no_grad():
        model.bias[1] = torch.nextafter(model.bias[1], torch.tensor(10.0))  # one bit of one value
    assert distributed.checksum(model) != before


# -- runs -------------------------------------------------------------------------------------
def test_torchrun_trains_one_run_in_one_directory_with_equal_parameters(tmp_path):
    result = torchrun(tmp_path, *SMALL, "total_steps=768", "seed=3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["outputs"] and [p.name for p in (tmp_path / "outputs").iterdir()] == ["runs"]
    run = only_run(tmp_path)  # no per-rank ${now:...} directories
    assert {p.name for p in run.iterdir()} == {".hydra", "train.log", "rank1.log", "tb", "checkpoints", "summary.json"}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 768 and summary["updates"] == 3 and summary["world_size"] == 2 and summary["status"] == "finished"
    train_log = (run / "train.log").read_text()
    assert "on 2 ranks: global batch 256 = 2 x 128 steps, minibatches of 2 x 32" in train_log
    assert "rank 1 of 2: pid" in (run / "rank1.log").read_text() and "[rank 1]" not in train_log
    # the parameters' checksums agreed after every update (the run stops otherwise)
    assert [step for step, _ in scalars(run, "distributed/param_checksum")] == [256, 512, 768]
    # the episodes of both ranks are counted: 2 x 2 envs of CartPole over 768 steps finish dozens
    assert summary["episodes"] > 20
    assert load_checkpoint(run)["world_size"] == 2


def test_each_rank_plays_its_own_episodes_and_all_stop_together(tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (tmp_path / "run").mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "rlexp.cli.train", *SMALL,
               "env.id=dp_helpers:SeedRecorder-v0", "env.make_kwargs={}", "seed=10", "total_steps=100000", "eval.every_steps=512",
               "eval.stop_at=5"]
    result = subprocess.run(command, cwd=tmp_path / "run", env=environment(RLEXP_TEST_SEEDS=str(seeds)), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # the training envs: rank 0 seeds 10 and 11, rank 1 12 and 13, one pid each; evaluation (rank 0) its own 10_010...
    by_seed: dict[int, set[str]] = {}
    for path in seeds.iterdir():
        _, seed, _, pid = path.name.split("-")
        by_seed.setdefault(int(seed), set()).add(pid)
    training = {seed: pids for seed, pids in by_seed.items() if 10 <= seed < 10_000}  # (0: a probe env made at start-up)
    assert sorted(training) == [10, 11, 12, 13]
    assert training[10] == training[11] and training[12] == training[13] and training[10] != training[12]
    # rank 0's evaluation reached eval.stop_at (5: any policy) at its first evaluation; rank 1 stopped with it
    summary = json.loads((only_run(tmp_path / "run") / "summary.json").read_text())
    assert summary["stopped_by"] == "PeriodicEvaluation" and summary["steps"] == 512 and summary["status"] == "finished"


def test_ranks_that_drift_apart_stop_the_run_naming_the_rank(tmp_path):
    result = torchrun(tmp_path, *SMALL, "total_steps=1024", "callbacks=[{_target_: dp_helpers.NudgeParameters, after: 1}]")
    assert result.returncode != 0
    assert "rank 1's parameters differ from rank 0's after update 2" in result.stderr, result.stderr[-3000:]


@pytest.mark.slow  # 20 s; resume under torchrun stays in the default suite (test_resume_refuses_another_number_of_ranks...)
def test_distributed_nproc_starts_the_ranks_itself_and_resume_continues_the_curves(tmp_path):
    result = rlexp_train(tmp_path, *SMALL, "distributed.nproc=2", "total_steps=512", "checkpoint.every_updates=1")
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(tmp_path)
    assert "distributed.nproc=2: starting 2 ranks" in (run / "train.log").read_text()
    assert json.loads((run / "summary.json").read_text())["world_size"] == 2

    # the saved config says distributed.nproc=2, so resume starts two ranks again
    result = rlexp_train(tmp_path, f"resume={run}", "total_steps=1024")
    assert result.returncode == 0, result.stderr[-3000:]
    assert only_run(tmp_path) == run
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 1024 and summary["updates"] == 4
    steps = [step for step, _ in scalars(run, "train/approx_kl")]
    assert steps == [256, 512, 768, 1024]  # no step twice, none missing
    assert "resuming at step 512" in (run / "train.log").read_text()


def test_resume_refuses_another_number_of_ranks_in_one_line_and_continues_under_torchrun(tmp_path):
    assert torchrun(tmp_path, *SMALL, "total_steps=256").returncode == 0
    run = only_run(tmp_path)
    before = (run / "checkpoints" / "last.pt").read_bytes()
    result = rlexp_train(tmp_path, f"resume={run}", "total_steps=512")  # one process this time
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "rlexp-train: error: resume: this run trained on 2 process(es) and resumes on the same number "
        "(torchrun --nproc_per_node=2 or distributed.nproc=2); this launch has 1"]
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    # under torchrun with two ranks it continues, the curves without a step twice
    result = torchrun(tmp_path, f"resume={run}", "total_steps=512")
    assert result.returncode == 0, result.stderr[-3000:]
    assert only_run(tmp_path) == run and json.loads((run / "summary.json").read_text())["steps"] == 512
    assert [step for step, _ in scalars(run, "train/approx_kl")] == [256, 512]
    assert [step for step, _ in scalars(run, "distributed/param_checksum")] == [256, 512]


def test_a_killed_rank_ends_the_run_in_one_line_and_keeps_the_checkpoint(tmp_path):
    command = [sys.executable, "-m", "rlexp.cli.train", *SMALL, "distributed.nproc=2", "total_steps=10000000", "checkpoint.every_updates=1",
               "eval.every_steps=100000000"]
    process = subprocess.Popen(command, cwd=tmp_path, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        pid = None
        while time.monotonic() < deadline and pid is None:
            time.sleep(0.5)
            runs = list((tmp_path / "outputs" / "runs").glob("*"))
            if runs and (runs[0] / "checkpoints" / "last.pt").is_file() and (runs[0] / "rank1.log").is_file():
                for line in (runs[0] / "rank1.log").read_text().splitlines():
                    if "rank 1 of 2: pid" in line:
                        pid = int(line.split("pid ")[1].split(",")[0])
        assert pid is not None, "the run never wrote a checkpoint"
        time.sleep(1.0)  # a few more updates and checkpoints
        os.kill(pid, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1
    said = console_lines(subprocess.CompletedProcess(command, 1, stdout, stderr))
    assert len(said) == 1 and said[0].startswith("rlexp-train: error: rank 1 of 2 was killed by SIGKILL"), stdout[-2000:] + stderr[-3000:]
    assert "Traceback" not in stderr and "Error executing job" not in stderr, stderr[-3000:]
    run = only_run(tmp_path)
    state = load_checkpoint(run)  # intact: written whole or not at all
    assert state["updates"] >= 1 and state["world_size"] == 2
    # rank 0 says why in train.log and writes its failed summary, though the launcher stops it
    # as soon as it sees rank 1 gone (rlexp/run/trainer.py: the failure is written under the stop request)
    assert "rank 0 lost contact with the other ranks" in (run / "train.log").read_text()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "lost contact with the other ranks" in summary["error"]


def test_the_numpy_fast_path_is_refused_on_several_ranks(tmp_path):
    result = torchrun(tmp_path, *SMALL, "total_steps=256", "fast_cpu=true")
    assert result.returncode != 0
    assert "rlexp-train: error: fast_cpu: the numpy fast path trains in one process" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_ranks_and_one_process_with_the_same_global_batch_both_solve_cartpole(tmp_path, seed):
    """hparams=ppo_cartpole (8 envs, minibatches of 256) in one process against 2 ranks of 4 envs
    and minibatches of 128: the same global batch; both reach 500."""
    common = ["hparams=ppo_cartpole", f"seed={seed}", "progress=false", "fast_cpu=false", "eval.episodes=20"]
    for where in ("one", "two"):
        (tmp_path / where).mkdir()
    one = rlexp_train(tmp_path / "one", *common, timeout=1200)
    two = rlexp_train(tmp_path / "two", *common, "distributed.nproc=2", "env.num_envs=4", "algo.batch_size=128", timeout=1200)
    for result, where in ((one, "one"), (two, "two")):
        assert result.returncode == 0, result.stderr[-3000:]
        summary = json.loads((only_run(tmp_path / where) / "summary.json").read_text())
        assert summary["best_eval_return"] >= 500, (where, summary["eval_history"])


@pytest.mark.ray
def test_a_local_ray_instance_places_torchrun_and_trains_one_run(tmp_path):
    pytest.importorskip("ray")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "ray_torchrun.py"), "--address", "local", "--nodes", "1",
                             "--nproc-per-node", "2", "--", *SMALL, "total_steps=512"],
                            cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    summary = json.loads((only_run(tmp_path) / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 512


def test_rlexp_train_under_torchrun_points_at_the_module(monkeypatch, tmp_path):
    import rlexp

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(rlexp.ConfigError, match=r"^distributed: rlexp.train trains in one process; under torchrun run the module"):
        rlexp.train(["total_steps=64"], run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
