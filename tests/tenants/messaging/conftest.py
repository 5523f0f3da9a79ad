from tests.tenants.messaging.stand_ins import serve

__all__ = ["serve"]
