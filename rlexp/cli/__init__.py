"""Entry points: rlexp-train, rlexp-eval, rlexp-export, and the Hydra callbacks the launchers use."""
