"""Where the time of a training step goes (collection, GAE, update, top operators): python scripts/profile_update.py --help"""

from rlexp.analysis.profiling import main

if __name__ == "__main__":
    main()
