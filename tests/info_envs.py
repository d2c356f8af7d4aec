"""FrozenLake (4x4, not slippery) whose info says whether the episode has succeeded (reached
the goal): ``is_success`` at every step, True only on the step that reaches it. Used as
env.id=info_envs:RlexpFrozenLakeSuccess-v0."""

import gymnasium as gym


class IsSuccess(gym.Wrapper):
    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, "is_success": False}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "is_success": bool(terminated and reward > 0)}


def make_frozenlake_success(**kwargs):
    kwargs.setdefault("is_slippery", False)
    return IsSuccess(gym.make("FrozenLake-v1", **kwargs))


if "RlexpFrozenLakeSuccess-v0" not in gym.registry:
    gym.register("RlexpFrozenLakeSuccess-v0", entry_point=make_frozenlake_success, max_episode_steps=100)
