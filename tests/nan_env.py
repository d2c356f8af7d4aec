"""A CartPole whose reward turns NaN after 300 steps (per sub-env); used as env.id=nan_env:NanCartPole-v0."""

import gymnasium as gym


class NanRewardAfter(gym.Wrapper):
    def __init__(self, env, after: int = 300):
        super().__init__(env)
        self.after, self.steps = after, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        return obs, float("nan") if self.steps > self.after else reward, terminated, truncated, info


def make_nan_cartpole(after: int = 300, **kwargs):
    return NanRewardAfter(gym.make("CartPole-v1", **kwargs), after)


if "NanCartPole-v0" not in gym.registry:
    gym.register("NanCartPole-v0", entry_point=make_nan_cartpole)
