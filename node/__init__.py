"""A Zaqar API server over one partition's storage."""
