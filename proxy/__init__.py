"""proxy package (see DESIGN.md)."""
