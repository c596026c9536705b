"""The OpenAPI 3.1 document of the management API, generated from the route tables:
``spec`` (the ``@operation`` each handler carries), ``schemas`` (component schemas),
``security`` (schemes and 401/403/429 from the permission matrix), ``document`` (the
builder), ``markdown`` (``docs/api.md``) and ``cli`` (``python -m control_plane.api.openapi``).
"""
