"""The warning signs' labelled benchmark: rlexp.analysis.signs_benchmark (see its docstring)."""

from rlexp.analysis.signs_benchmark import main

if __name__ == "__main__":
    main()
