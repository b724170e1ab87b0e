"""Who may read a data root: restricted roots need a token with `esgf:download`."""

from __future__ import annotations

from starlette.requests import Request

from esgf_ha.common.auth import AuthError, TokenVerifier
from esgf_ha.datanode.service import DataNode

SCOPE = "esgf:download"


class Access:
    def __init__(self, node: DataNode, verifier: TokenVerifier | None) -> None:
        self.node = node
        self.verifier = verifier

    def check(self, request: Request, root: str) -> None:
        if root not in self.node.restricted:
            return
        if self.verifier is None:  # settings refuse this; kept as a safe default
            raise AuthError("no token verifier configured")
        self.verifier.verify(request.headers.get("authorization"), SCOPE)
