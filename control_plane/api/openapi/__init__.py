"""The OpenAPI 3.1 document of the management API, generated from the route table, and
``docs/api.md`` rendered from it (``python -m control_plane.api.openapi --markdown``)."""

from control_plane.api.openapi.document import DEFAULT_TEMPLATE, main, openapi_document, routes

__all__ = ["DEFAULT_TEMPLATE", "main", "openapi_document", "routes"]
