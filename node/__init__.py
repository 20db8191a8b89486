"""The queue node (floor 3): a Zaqar API server over one partition's storage (`api/`, `storage/`).
It needs no etcd: a single node over SQLite is a complete queue service."""
