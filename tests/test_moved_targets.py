"""Runs saved before the package layout change name the old ``_target_`` paths in their
saved config (.hydra/config.yaml, which resume composes from) and in their checkpoints'
config (which rlexp-eval builds from). Both must still work.

rlexp-train and rlexp-eval run their main() in this process (conftest.run_cli_in_process: the
same code from main() on; the old targets are mapped by name, rlexp.builders.MOVED_TARGETS)."""

import torch
import yaml

from conftest import run_cli_in_process

OLD, NEW = "rlexp.policies.ActorCritic", "rlexp.networks.ActorCritic"
#: the logger's target before rlexp/run/ existed
OLD_LOGGER, NEW_LOGGER = "rlexp.logger.TensorBoardLogger", "rlexp.run.logger.TensorBoardLogger"


def rlexp_eval(*args):
    return run_cli_in_process(*map(str, args), module="rlexp.cli.evaluate")


def as_saved_before_the_move(run_dir):
    """Rewrite a run's saved configs the way rlexp 0.1 wrote them (network target rlexp.policies; one
    logger node with its _target_ at logger._target_, from before several loggers could be chosen)."""
    saved = run_dir / ".hydra" / "config.yaml"
    cfg = yaml.safe_load(saved.read_text())
    assert cfg["network"]["_target_"] == NEW and cfg["logger"]["tensorboard"]["_target_"] == NEW_LOGGER
    as_old(cfg)
    saved.write_text(yaml.safe_dump(cfg))
    for path in (run_dir / "checkpoints").glob("*.pt"):
        state = torch.load(path, weights_only=True)
        as_old(state["config"])
        torch.save(state, path)


def as_old(cfg: dict) -> None:
    cfg["network"]["_target_"] = OLD
    cfg["logger"] = {**cfg["logger"]["tensorboard"], "_target_": OLD_LOGGER}
    del cfg["callbacks"]  # a key those runs did not have


def test_a_run_saved_with_old_targets_evaluates_and_resumes(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli_in_process("total_steps=2048", "progress=false", "eval.episodes=3", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    before = rlexp_eval(run_dir, "episodes=3")
    assert before.returncode == 0, before.stderr

    as_saved_before_the_move(run_dir)
    after = rlexp_eval(run_dir, "episodes=3")
    assert after.returncode == 0, after.stderr
    assert after.stdout.split(" (")[0] == before.stdout.split(" (")[0]  # the same return, from the same weights

    resumed = run_cli_in_process(f"resume={run_dir}", "total_steps=4096", "progress=false")
    assert resumed.returncode == 0, resumed.stderr
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["global_step"] == 4096
    assert state["config"]["network"]["_target_"] == OLD  # the run's own saved config, as it was composed
    assert (run_dir / "tb").is_dir()  # the old logger target built today's TensorBoard logger
