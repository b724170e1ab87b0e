"""The DNS load balancer: health checks of every site, and the zone answered or updated with
only the healthy ones, so clients of one name reach a working index or data node."""
