"""One run: the trainer (the schedule), the collector (the one place a policy steps an env),
playing episodes, checkpoints, logging, TensorBoard records, warning signs, stopping, callbacks."""
