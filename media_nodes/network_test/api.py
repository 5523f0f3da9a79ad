"""HTTP API of the pre-call network test."""

from litestar import Router

network_test_router = Router(path="/", route_handlers=[])
