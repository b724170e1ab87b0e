"""esgf-ha: highly available ESGF search and download services."""

__version__ = "0.1.0"
