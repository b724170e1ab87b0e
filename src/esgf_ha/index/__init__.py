"""The index node: durable record store, in-memory facet index, ESGF search and publish APIs."""
