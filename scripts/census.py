"""Every registered environment: policy built, one rollout, one update (rlexp.analysis.census).

    python scripts/census.py --out docs/census.md
"""

from rlexp.analysis.census import main

if __name__ == "__main__":
    main()
