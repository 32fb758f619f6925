"""The shipped benchmark specs, one YAML file per benchmark (installed as ``prefbench.benchmark_specs``)."""
