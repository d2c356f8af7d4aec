"""The one error type a user should see as a single line instead of a traceback."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is wrong.

    ``key`` is the name of the offending setting relative to the object that checked
    it (``clip_range``); whoever built that object from a config group prefixes the
    group (``algo.clip_range``) with :meth:`under`.
    """

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)  # no key: a message that names no single setting

    #: keys given from the top of the run config (a network that finds the env's space
    #: unusable names ``env.id`` or ``env.obs_keys``): :meth:`under` leaves them as they are
    ABSOLUTE = ("env.", "algo.", "network.")

    def under(self, group: str) -> "ConfigError":
        if self.key.startswith(self.ABSOLUTE):
            return self
        return ConfigError(f"{group}.{self.key}", self.message)


def require(condition: bool, key: str, message: str) -> None:
    """Raise ``ConfigError(key, message)`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(key, message)


class TrainingError(RuntimeError):
    """Training cannot go on (a loss, gradient or parameter became NaN/Inf)."""
