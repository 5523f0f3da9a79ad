"""HTTP API of data-subject requests."""

from litestar import Router

dsr_router = Router(path="/", route_handlers=[])
