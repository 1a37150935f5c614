"""Side-by-side benchmarks: ``python -m katbench.bench op|block``.

Every number comes from one run on one device, so ratios compare like with like. Speed targets
are checked here, never by timed unit tests.
"""
