"""The migration worker's closed error hierarchy. Catalog and storage errors keep their own types
(`catalog.errors`, `node.errors`): the worker retries those, and stops on these."""

from __future__ import annotations


class MigrationError(Exception):
    """Root of every error the worker raises on purpose."""


class Diverged(MigrationError):
    """Verify found the target different from the frozen source: the move must not switch."""


class FenceLeaked(MigrationError):
    """Writes went on landing on the frozen source (a store whose fence is not atomic with them,
    FerretDB's): the freeze is aborted and tried again, as one over its limit is."""


class Unmovable(MigrationError):
    """The queue cannot be moved as recorded (gone from the source, or placed elsewhere)."""


class OwnershipLost(MigrationError):
    """This worker no longer owns the migration (its lease expired, or another worker wrote the
    record since): it must stop acting on it at once."""


class CancelArrived(MigrationError):
    """A cancel was recorded while the machine was about to pass the point of no return: the
    switch must not happen; the machine cancels instead."""
