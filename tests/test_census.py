"""One representative of each environment family through the census path (policy built by
network=auto, one rollout, one update); the whole census is scripts/census.py."""

import pytest

from rlexp.analysis.census import Entry, family_of, registered_ids, report, run_one

REPRESENTATIVES = {
    "classic_control": "Acrobot-v1",
    "toy_text": "Blackjack-v1",             # Tuple(Discrete, Discrete, Discrete) observations
    "box2d": "CarRacing-v3",                # 96x96x3 pixels, Box actions
    "mujoco": "InvertedPendulum-v5",
    "ale_py": "ALE/Pong-v5",                # 210x160x3 pixels
    "minigrid": "MiniGrid-DoorKey-5x5-v0",  # Dict with a text mission, left out
}
ENCODERS = {"Blackjack-v1": "DictEncoder", "CarRacing-v3": "CnnEncoder", "ALE/Pong-v5": "CnnEncoder",
            "MiniGrid-DoorKey-5x5-v0": "DictEncoder"}


@pytest.mark.parametrize("family, env_id", REPRESENTATIVES.items())
def test_a_representative_of_each_family_runs(family, env_id):
    ids = registered_ids([family])
    if env_id not in ids:
        pytest.skip(f"{family} is not installed (pip install -e '.[dev]' brings it)")
    assert family_of(env_id) == family
    entry = run_one(env_id)
    assert entry.ok, entry.detail
    assert entry.detail.endswith(f"({ENCODERS.get(env_id, 'FlattenEncoder')})")


def test_report_counts_and_lists_what_did_not_run():
    entries = [Entry("A-v0", "toy_text", True, 1.0, "Discrete -> Discrete (OneHotEncoder)"),
               Entry("B-v0", "toy_text", False, 0.5, "ImportError: needs x | y"),
               Entry("C-v0", "box2d", True, 2.0, "Box -> Box (CnnEncoder)")]
    text = report(entries)
    assert text.startswith("**2 of 3** registered environments")
    assert "| toy_text | 1 | 2 | 2 |" in text and "| box2d | 1 | 1 | 2 |" in text
    assert "| B-v0 | toy_text | ImportError: needs x / y |" in text
