"""Errors of the data replicator."""

from __future__ import annotations


class ReplicatorError(Exception):
    """Something the replicator cannot do; the message says what and why."""


class SelectionError(ReplicatorError, ValueError):
    """A selection file or query that cannot be used."""


class IndexUnavailable(ReplicatorError):
    """The index could not be asked (after retries)."""


class PublishRefused(ReplicatorError):
    """The master refused our replica records."""


class ReceiveError(ReplicatorError):
    """A transfer broke off (network, TLS, timeout) before the whole response arrived."""


class SourceFailed(ReplicatorError):
    """One download attempt from one data node failed (the next source is tried)."""

    def __init__(self, host: str, reason: str, *, keep_partial: bool = True) -> None:
        """`keep_partial=False` when the source sent wrong bytes (not merely too few): it is
        then not tried again for this file, while a short read only moves to the next one."""
        super().__init__(f"{host}: {reason}")
        self.host = host
        self.reason = reason
        self.keep_partial = keep_partial
