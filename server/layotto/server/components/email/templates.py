"""Mail templates from a directory, rendered by Jinja2 in its sandbox.

Template ``ID`` is the file ``ID.txt`` (plain text), ``ID.html`` (HTML, every parameter
HTML-escaped) or both (a multipart/alternative message). A parameter a template uses that the
request lacks is an error, never an empty string. Templates are compiled at start-up, so a syntax
error stops the runtime with the file named.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from layotto.server.components.base import ConfigError
from layotto.server.components.email import Rendered
from layotto.server.errors import InvalidArgument

SUFFIXES = (".txt", ".html")
#: a template id: letters, digits, ".", "_" and "-", not starting with "." (no path can escape)
_TEMPLATE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")


class TemplateDirectory:
    """The templates of one directory; ``where`` names the config key for errors."""

    def __init__(self, path: str, where: str) -> None:
        directory = Path(path)
        if not directory.is_dir():
            raise ConfigError(f"{where}: {path!r} is not a directory")
        self._env = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(directory),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html", "htm"), default=False),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        self._ids: set[str] = set()
        for file in sorted(directory.iterdir()):
            if file.suffix in SUFFIXES and _TEMPLATE_ID.fullmatch(file.stem):
                try:
                    self._env.get_template(file.name)
                except jinja2.TemplateSyntaxError as error:
                    raise ConfigError(f"{where}: {file}: line {error.lineno}: {error.message}") from None
                self._ids.add(file.stem)

    def ids(self) -> list[str]:
        return sorted(self._ids)

    def render(self, template_id: str, params: Mapping[str, str], component: str) -> Rendered:
        """The bodies of ``template_id``; InvalidArgument naming the request field at fault."""
        if template_id not in self._ids:
            choices = ", ".join(self.ids()) or "none"
            raise InvalidArgument(
                "template.template_id", f"component {component!r} has no template {template_id!r} (has: {choices})"
            )
        bodies: dict[str, str] = {}
        for suffix in SUFFIXES:
            name = template_id + suffix
            try:
                template = self._env.get_template(name)
            except jinja2.TemplateNotFound:
                continue
            try:
                bodies[suffix] = template.render(dict(params))
            except jinja2.UndefinedError as error:
                raise InvalidArgument("template.template_params", f"template {name!r}: {error.message}") from None
            except SecurityError as error:
                raise InvalidArgument("template.template_params", f"template {name!r}: unsafe: {error}") from None
        return Rendered(text=bodies.get(".txt"), html=bodies.get(".html"))
