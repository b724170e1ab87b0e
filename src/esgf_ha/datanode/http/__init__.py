"""The data node's HTTP layer, one module per concern: `files` (THREDDS fileServer), `catalogs`
(XML catalogs and their HTML views), `opendap` (dodsC) and `operations` (health, metrics).
`datanode.app` assembles them."""
