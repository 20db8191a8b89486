"""The migration worker (floor 4): moves one queue between partitions as a persisted state machine
(`machine.py`), with idempotent steps (`steps.py`, `copy.py`, `verify.py`) and their dry-run twin
(`dryrun.py`), run under etcd leases (`worker.py`, `ownership.py`).

What the proxy's admin API shares with the worker sits one floor down, in the catalog, because the
proxy may not import this package: a migration's record and phases (`catalog/migrations.py`), the
registry that admits migrations under their limits (`catalog/registry.py`, `MigrationLimits`) and
the rebalance and drain planner (`catalog/planner.py`)."""
