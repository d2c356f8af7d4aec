"""Tools that read finished runs or measure training: results tables and plots, sweep
reports, benchmarks against SB3, the GPU benchmark and the update profiler. Nothing on the
training path imports this package."""
