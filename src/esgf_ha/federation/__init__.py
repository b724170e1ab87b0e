"""A federation as one configuration: plan, start, supervise and report on the index nodes,
data nodes and DNS servers it names, locally, with Compose or on Kubernetes."""
