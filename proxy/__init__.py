"""The routing proxy (floor 4): one endpoint for every API version, routing each queue to a node of
its partition through the catalog's cache; it speaks to nodes only over HTTP and shares their wire
contract (`wire/`), never their code."""
