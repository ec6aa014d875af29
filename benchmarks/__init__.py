"""Benchmark code run by ``scripts/bench_*.py``; not part of the installed package.

``scripts/bench_up.py`` (`lab up` against a floor of bare libvirt guests):

- :mod:`benchmarks.floor`: the floor's guests, and the probes that time any guests from the host;
- :mod:`benchmarks.sampler`: host memory and CPU sampled while the run goes on;
- :mod:`benchmarks.lab`: the `lab` commands measured, and what `lab up` reported (its
  progress events, read as JSON lines);
- :mod:`benchmarks.host`: free subnets, the libvirt pool's volumes, leftovers;
- :mod:`benchmarks.report`: the results, the summary table and the JSON;
- :mod:`benchmarks.up`: one run, with its cleanups.
"""
