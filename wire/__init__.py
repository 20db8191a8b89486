"""The Zaqar wire contract, shared by node and proxy: what a request and an answer look like on the
wire (error bodies, limits, validation of names, headers and parameters, header names). It imports
only the ground floor; the proxy imports node code through nothing else."""
