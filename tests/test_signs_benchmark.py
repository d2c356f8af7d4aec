"""The warning signs' benchmark (rlexp.analysis.signs_benchmark): a recorded run replays to the
signs that fired live, and the table counts false alarms and detections."""

from rlexp.analysis.signs_benchmark import record_run, replay, sign_table, table


def test_replaying_a_recording_gives_what_fired_during_the_run():
    # a critic that cannot learn, short: value_not_learning fires live at the first update past the warm-up
    run = record_run("critic_off", 0, "total_steps=12288", "eval.every_steps=0", "eval.episodes=2")
    assert run["fired_live"].get("value_not_learning") == 1
    assert set(replay(run)) == set(run["fired_live"])
    assert replay(run)["value_not_learning"] == 6  # 12 updates: past the warm-up (50%) from the 6th


def synthetic(case, label, meant, ev):
    updates = [{"metrics": {"train/explained_variance": v, "train/entropy": 0.6, "train/approx_kl": 0.001, "train/clip_fraction": 0.05},
                "progress": (i + 1) / len(ev), "rolling_return": float(i), "abs_reward": 1.0, "abs_value_target": 10.0, "normalized_rewards": False}
               for i, v in enumerate(ev)]
    return {"case": case, "label": label, "meant": meant, "seed": 0, "updates": updates}


def test_the_table_counts_false_alarms_and_detections():
    runs = [synthetic("healthy_run", "healthy", [], [0.0, 0.5, 0.9] + [0.0] * 17),
            synthetic("broken_critic", "fault", ["value_not_learning"], [0.01] * 20)]
    text = table(runs)
    assert "| healthy_run | healthy | 1 | - | 0: - | 0 of 1 with a false alarm |" in text
    assert "| broken_critic | fault | 1 | - | 0: value_not_learning@10 | 1 of 1 detected |" in text
    # with a threshold above what the healthy critic reached, the healthy run becomes a false alarm
    assert "1 of 1 with a false alarm" in table(runs, max_best_explained_variance=0.95)


def test_the_sign_table_counts_each_sign_over_all_cases():
    runs = [synthetic("healthy_run", "healthy", [], [0.0, 0.5, 0.9] + [0.0] * 17),
            synthetic("other_healthy", "healthy", [], [0.01] * 20),  # a false alarm of value_not_learning
            synthetic("broken_critic", "fault", ["value_not_learning"], [0.01] * 20),
            synthetic("broken_critic", "fault", ["value_not_learning"], [0.9] * 20)]  # missed
    text = sign_table(runs)
    assert "| value_not_learning | 1 of 2 | 1 of 2 (broken_critic) | 10-10 |" in text
    assert "| updates_too_large | 0 of 2 | 0 of 0 (-) | - |" in text
