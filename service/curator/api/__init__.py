"""HTTP layer: routers, dependencies and the one error shape."""
