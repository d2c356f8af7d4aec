"""PPO end to end on torch-native envs (GPU or CPU): python scripts/benchmark_gpu.py --help"""

from rlexp.analysis.benchmark_gpu import main

if __name__ == "__main__":
    main()
