"""Pieces shared by every service: TLS, tokens, logging, metrics, the HTTP server runner."""
