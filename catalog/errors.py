"""The catalog's closed error hierarchy; etcd's exceptions are translated in `catalog.etcd`."""


class CatalogError(Exception):
    """Root of every error the catalog raises on purpose."""


class Conflict(CatalogError):
    """A compare-and-swap lost: the key changed (or exists, or is gone) since it was read."""


class NotFound(CatalogError):
    pass


class CatalogUnavailable(CatalogError):
    """etcd did not answer in time; a write may still have committed (writes are idempotent)."""


class Refused(CatalogError):
    """The operation breaks a catalog rule (removing a partition that owns queues, say)."""


class LeaseExpired(CatalogError):
    """The lease is gone (expired, or revoked): the keys bound to it have been deleted."""


class Compacted(CatalogError):
    """A watch asked for history the store no longer keeps; reload from a snapshot."""
