"""TensorBoard output of a real run, read back the two ways a user reads it.

1. TensorBoard's own event reader (EventAccumulator): every tag of docs/architecture.md's
   "TensorBoard tags" table is there, on an x-axis of environment steps, and
   ``loss/total`` is the sum of the logged ``loss/*`` terms.
2. The real ``tensorboard`` server, started the way a user starts it, serves the
   same tags and values over its HTTP API.

One short Pendulum (continuous actions) run is shared by every test in the module.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import run_cli, run_cli_in_process  # tests/ is on sys.path (pytest rootdir conftest, no package)

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator", reason="tensorboard is not installed"
)

#: docs/architecture.md, "TensorBoard tags": what a PPO run must write
EXPECTED_TAGS = {
    "loss/policy",
    "loss/value",
    "loss/entropy",
    "loss/total",
    "train/approx_kl",
    "train/clip_fraction",
    "train/entropy",
    "train/explained_variance",
    "train/learning_rate",
    "train/grad_norm",
    "rollout/episode_return",
    "rollout/episode_length",
    "eval/return_mean",
    "eval/return_std",
    "time/sps",
}
#: written once per update (log_interval=1)
PER_UPDATE_TAGS = {t for t in EXPECTED_TAGS if t.split("/")[0] in ("loss", "train", "time")}
#: written only for updates whose rollout saw an episode finish
ROLLOUT_TAGS = {"rollout/episode_return", "rollout/episode_length"}
EVAL_TAGS = {"eval/return_mean", "eval/return_std"}
LOSS_TERMS = ("loss/policy", "loss/value", "loss/entropy")

TOTAL_STEPS = 4096  # 4 updates of 128 steps x 8 envs (Pendulum's defaults)
EVAL_EVERY = 2048
SERVER_START_TIMEOUT_S = 60
SERVER_DATA_TIMEOUT_S = 60
HTTP_TIMEOUT_S = 10
LOOPBACK = "127.0.0.1"


# -- the shared run -----------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("tb_run") / "run"
    proc = run_cli_in_process(
        "env=pendulum",
        f"total_steps={TOTAL_STEPS}",
        f"eval.every_steps={EVAL_EVERY}",
        "eval.episodes=2",
        # a non-zero entropy bonus so that loss/entropy is a real term of the sum checked below
        "algo.ent_coef=0.01",
        "log_interval=1",
        "device=cpu",
        "progress=false",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, f"rlexp.train failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert (run_dir / "summary.json").is_file(), f"no summary.json in {run_dir}"
    assert list((run_dir / "tb").glob("events.out.tfevents.*")), f"no event file in {run_dir / 'tb'}"
    return run_dir


@pytest.fixture(scope="module")
def summary(finished_run) -> dict:
    return json.loads((finished_run / "summary.json").read_text())


@pytest.fixture(scope="module")
def steps_per_update(finished_run) -> int:
    cfg = OmegaConf.load(finished_run / ".hydra" / "config.yaml")
    return int(cfg.algo.n_steps) * int(cfg.env.num_envs)


@pytest.fixture(scope="module")
def scalars(finished_run) -> dict[str, list]:
    """{tag: [ScalarEvent(wall_time, step, value), ...]} as TensorBoard's own reader sees it."""
    acc = event_accumulator.EventAccumulator(str(finished_run / "tb"), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()[event_accumulator.SCALARS]}


# -- 1. the event files ---------------------------------------------------------------
def test_run_writes_every_documented_tag_on_env_steps(scalars, summary, steps_per_update):
    missing = sorted(EXPECTED_TAGS - set(scalars))
    assert not missing, f"tags missing from the event files: {missing}; written: {sorted(scalars)}"

    total = summary["steps"]
    assert total == summary["updates"] * steps_per_update, summary
    assert total >= TOTAL_STEPS
    update_steps = [steps_per_update * k for k in range(1, summary["updates"] + 1)]

    for tag in sorted(EXPECTED_TAGS):
        events = scalars[tag]
        steps = [e.step for e in events]
        assert steps, f"{tag}: no values"
        assert all(b > a for a, b in zip(steps, steps[1:])), f"{tag}: steps not strictly increasing: {steps}"
        assert all(s % steps_per_update == 0 for s in steps), (
            f"{tag}: steps {steps} are not environment steps (multiples of n_steps*num_envs={steps_per_update})"
        )
        assert all(0 < s <= total for s in steps), f"{tag}: steps {steps} outside (0, {total}]"
        assert all(math.isfinite(e.value) for e in events), f"{tag}: non-finite values {[e.value for e in events]}"
        if tag in PER_UPDATE_TAGS:
            assert steps == update_steps, f"{tag}: expected one value per update at {update_steps}, got {steps}"
        if tag not in ROLLOUT_TAGS:
            # rollout/* appear only after updates that saw an episode finish, so their
            # last step depends on episode timing; every other tag ends at the last step
            assert steps[-1] == total, f"{tag}: last step {steps[-1]} != summary.json steps {total}"

    # evaluation: at the eval.every_steps marks and at the end, as summary.json records them
    eval_steps = [int(s) for s, _, _ in summary["eval_history"]]
    assert eval_steps == list(range(EVAL_EVERY, total + 1, EVAL_EVERY)), summary["eval_history"]
    for tag, column in (("eval/return_mean", 1), ("eval/return_std", 2)):
        assert [e.step for e in scalars[tag]] == eval_steps, tag
        logged = [e.value for e in scalars[tag]]
        recorded = [row[column] for row in summary["eval_history"]]
        assert logged == pytest.approx(recorded, rel=1e-6, abs=1e-4), f"{tag}: event file {logged} != summary.json {recorded}"
    assert scalars["eval/return_mean"][-1].value == pytest.approx(summary["eval_return_mean"], rel=1e-6, abs=1e-4)

    # a few values whose range is known
    assert all(0.0 <= e.value <= 1.0 for e in scalars["train/clip_fraction"])
    assert all(e.value >= 0.0 for e in scalars["train/learning_rate"])
    assert all(e.value >= 0.0 for e in scalars["train/grad_norm"])
    assert all(e.value > 0.0 for e in scalars["time/sps"])
    assert all(e.value >= 0.0 for e in scalars["eval/return_std"])
    assert all(0.0 < e.value <= 200.0 for e in scalars["rollout/episode_length"])  # Pendulum truncates at 200


def test_loss_total_is_the_sum_of_the_logged_terms(scalars):
    """rlexp logs the weighted terms of the objective, so they must add up to loss/total."""
    by_step = {tag: {e.step: e.value for e in scalars[tag]} for tag in (*LOSS_TERMS, "loss/total")}
    assert set(by_step["loss/total"]) == set(by_step["loss/policy"]) == set(by_step["loss/value"]) == set(by_step["loss/entropy"])
    assert any(v != 0.0 for v in by_step["loss/entropy"].values()), "loss/entropy is 0 everywhere although algo.ent_coef=0.01"
    for step, total in sorted(by_step["loss/total"].items()):
        terms = [by_step[tag][step] for tag in LOSS_TERMS]
        # float32 on disk and float32 means over the minibatch steps: relative to the terms' size
        tolerance = 1e-5 * sum(abs(t) for t in terms) + 1e-6
        assert abs(total - sum(terms)) <= tolerance, (
            f"step {step}: loss/total {total} != loss/policy + loss/value + loss/entropy = {sum(terms)} ({terms})"
        )


# -- 2. the real TensorBoard server ---------------------------------------------------
def _no_proxy_opener() -> urllib.request.OpenerDirector:
    # never route 127.0.0.1 through an http_proxy from the environment
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get_json(opener, base_url: str, path: str, **params: str):
    url = base_url + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with opener.open(url, timeout=HTTP_TIMEOUT_S) as response:
        assert response.status == 200, f"GET {url}: HTTP {response.status}"
        return json.loads(response.read().decode("utf-8"))


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _tensorboard_command() -> list[str]:
    # The console script of the interpreter running the tests, as a user's `tensorboard`;
    # a `tensorboard` elsewhere on PATH may belong to another Python, so fall back to -m.
    script = Path(sys.executable).parent / ("tensorboard.exe" if os.name == "nt" else "tensorboard")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "tensorboard.main"]


def _stop(proc: subprocess.Popen) -> None:
    """terminate, wait, kill as the fallback; also the data server it started (its own group)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group this test created with start_new_session
    except (AttributeError, ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait(timeout=15)


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "<no output>"


#: ports tried before concluding that this machine's free ports are being taken by others
PORT_ATTEMPTS = 5


def _start_tensorboard(logdir: Path, workdir: Path):
    """Start ``tensorboard --logdir ... --host 127.0.0.1 --port N``; return (proc, base_url).

    N is a port the OS has just handed out as free. The one thing this machine may do to
    a correct TensorBoard is give that port to another process before the server binds it:
    then the server says the port is in use, and another free port is tried; if every try
    meets a taken port, the test is skipped. Anything else (the command cannot start, the
    server exits, or it never answers) fails the test with the server's output.
    """
    opener = _no_proxy_opener()
    for attempt in range(PORT_ATTEMPTS):
        port = _free_loopback_port()
        base_url = f"http://{LOOPBACK}:{port}"
        out_path = workdir / f"tensorboard_{attempt}.log"
        tmp = workdir / f"tmp_{attempt}"
        tmp.mkdir()
        env = {**os.environ, "TMPDIR": str(tmp)}  # its .tensorboard-info and data-server files stay here
        cmd = [*_tensorboard_command(), "--logdir", str(logdir), "--host", LOOPBACK, "--port", str(port)]
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    _get_json(opener, base_url, "/data/runs")
                    return proc, base_url
                except (urllib.error.URLError, ConnectionError, socket.timeout, json.JSONDecodeError):
                    time.sleep(0.5)
        except BaseException:
            _stop(proc)
            raise
        running = proc.poll() is None
        _stop(proc)
        output = _tail(out_path)
        if running:
            pytest.fail(f"tensorboard did not answer on {base_url} within {SERVER_START_TIMEOUT_S}s: {' '.join(cmd)}\n{output}")
        if "already in use" not in output:
            pytest.fail(f"tensorboard exited before serving (exit {proc.returncode}): {' '.join(cmd)}\n{output}")
    pytest.skip(f"{PORT_ATTEMPTS} free ports in a row were taken by other processes before tensorboard bound them:\n{output}")


@pytest.fixture(scope="module")
def tensorboard_server(finished_run, tmp_path_factory):
    proc, base_url = _start_tensorboard(finished_run, tmp_path_factory.mktemp("tensorboard"))
    try:
        yield base_url
    finally:
        _stop(proc)


def test_tensorboard_server_serves_the_scalars(tensorboard_server, scalars):
    opener = _no_proxy_opener()
    runs = _get_json(opener, tensorboard_server, "/data/runs")
    assert runs == ["tb"], f"--logdir <run dir> should show one run, the tb/ folder; got {runs}"

    # the server answers before it has read the event files: poll, bounded, until it has
    deadline = time.monotonic() + SERVER_DATA_TIMEOUT_S
    served: dict = {}
    while True:
        served = _get_json(opener, tensorboard_server, "/data/plugin/scalars/tags")
        if EXPECTED_TAGS <= set(served.get("tb", {})) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    missing = sorted(EXPECTED_TAGS - set(served.get("tb", {})))
    assert not missing, f"tensorboard serves no {missing} after {SERVER_DATA_TIMEOUT_S}s; it serves {served}"

    for tag in sorted(EXPECTED_TAGS):
        # [[wall_time, step, value], ...]; 4 points are far below the server's downsampling
        points = _get_json(opener, tensorboard_server, "/data/plugin/scalars/scalars", run="tb", tag=tag)
        expected = scalars[tag]
        assert [int(step) for _, step, _ in points] == [e.step for e in expected], f"{tag}: steps differ"
        assert [value for _, _, value in points] == pytest.approx([e.value for e in expected], rel=1e-6, abs=1e-9), (
            f"{tag}: the server's values differ from EventAccumulator's"
        )
    eval_points = _get_json(opener, tensorboard_server, "/data/plugin/scalars/scalars", run="tb", tag="eval/return_mean")
    assert len(eval_points) == len(scalars["eval/return_mean"]) >= 2
