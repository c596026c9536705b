"""The status page's templates (Jinja2, autoescaping on), loaded when a page first needs
one: a pod whose status page is never opened never imports Jinja2 (issue 20)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    import jinja2

__all__ = ["TEMPLATES", "Templates"]


class Templates:
    """The templates of one package folder, compiled on first use and kept."""

    def __init__(self, package: str, folder: str = "templates") -> None:
        self._package, self._folder = package, folder
        self._env: jinja2.Environment | None = None

    @property
    def env(self) -> jinja2.Environment:
        if self._env is None:
            import jinja2

            self._env = jinja2.Environment(
                loader=jinja2.PackageLoader(self._package, self._folder),
                autoescape=True,  # every registry string and Envoy message renders as text
                undefined=jinja2.StrictUndefined,
            )
        return self._env

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        return self.env.get_template(name).render(context)

    def response(self, name: str, context: Mapping[str, Any]) -> web.Response:
        """An HTML page of template ``name`` (UTF-8)."""
        return web.Response(
            text=self.render(name, context), content_type="text/html", charset="utf-8"
        )


TEMPLATES = web.AppKey("ui_templates", Templates)
