"""rlexp vs Stable-Baselines3, same settings, A/B alternated: python scripts/benchmark.py --help"""

from rlexp.analysis.benchmark import main

if __name__ == "__main__":
    main()
