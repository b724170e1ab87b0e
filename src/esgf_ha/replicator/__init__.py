"""The data replicator: copies the files of selected datasets from other data nodes, checks
them against their published checksums, and publishes the copies as replicas."""
