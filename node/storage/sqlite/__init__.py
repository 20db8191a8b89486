"""The embedded SQLite driver: one file per partition, a module per controller.

`database` holds the connection and its group commits; `schema` the tables and the row helpers;
`queues`, `messages`, `claims` and `transfer` the controllers; `storage` puts them together.
"""

from node.storage.sqlite.database import sqlite_path
from node.storage.sqlite.storage import SqliteStorage

__all__ = ["SqliteStorage", "sqlite_path"]
