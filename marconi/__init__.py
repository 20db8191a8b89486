"""Cross-cutting pieces shared by every process: logging, metrics, the CLI."""
