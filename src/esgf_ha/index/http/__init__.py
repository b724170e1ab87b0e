"""The index node's HTTP layer, one module per concern: esg-search (`search`), publication
(`writes` for the shared gate, `publication` for `/api/v1`, `ws` for `/esg-search/ws/*`), the
replication feed (`replication`) and operations (`operations`). `index.app` assembles them."""
