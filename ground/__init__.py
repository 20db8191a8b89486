"""The ground floor: what every process shares (logging, metrics, request ids, settings read from
the environment, shared type aliases). It imports none of the project's other packages."""
