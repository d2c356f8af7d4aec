"""What a run stores and computes on: rollout storage, returns and GAE as pure functions,
observation trees."""
