"""The simulated world of synthetic customers: the domain code beneath the data_generation and evaluation pipelines.

- ``params``: the world's parameters (event types, the parent-to-child tree, rates, the propensity walk);
- ``simulator``: the vectorised simulator of experience events and conversions;
- ``ids``: emails, ECIDs and event ids of the simulated people;
- ``tables``: the simulated people as the platform's flat event and profile rows;
- ``oracle``: the simulator's true conversion probability after a cutoff, by Monte Carlo re-simulation;
- ``original``: what Adobe's original simulator produced, the reference of the ``cmle`` mode.

Nothing here depends on Kedro or on the pipelines.
"""
