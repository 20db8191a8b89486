"""The catalog (floor 3): partitions, placements, pins and migrations in etcd behind one store
protocol (`store.py`; `etcd.py`, `memory.py`), placement rules (`catalog.py`), the watch-fed
placement cache (`cache.py`), and migration records, admission and planning (`migrations.py`,
`registry.py`, `planner.py`), which the proxy's admin API and the migration worker share."""
