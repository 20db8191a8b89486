"""migrate package (see DESIGN.md)."""
