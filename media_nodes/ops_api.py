"""Ops API of a region's media nodes: list, cordon, drain."""

from litestar import Router

ops_router = Router(path="/", route_handlers=[])
