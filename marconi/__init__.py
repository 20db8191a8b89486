"""The `marconi` command (floor 5): runs every process and speaks to the proxy's admin API.
It may import every package; none imports it."""
