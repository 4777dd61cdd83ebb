"""The Email building block (Layotto's ``EmailService``): components that send mail.

A component receives a :class:`Mail` the runtime layer already validated (every address parsed,
no line breaks in headers) and answers the message's id. Templates are the component's: it
renders ``template_id`` with the request's parameters (:meth:`EmailComponent.render`).

A third-party package adds a provider with one line of its pyproject::

    [project.entry-points."layotto.components.email"]
    my-provider = "my_package.mail:MyEmailComponent"
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

from layotto.server.components.base import Component


@dataclass(frozen=True)
class Mail:
    """One message: addresses as ``Name <user@host>`` or ``user@host``; ``text`` and/or ``html``
    bodies (both: a multipart/alternative message); ``priority`` 1 (highest) .. 5, or 0 for none;
    ``bcc`` recipients get the message without appearing in its headers."""

    sender: str
    to: tuple[str, ...]
    subject: str = ""
    text: str | None = None
    html: str | None = None
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    priority: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rendered:
    """A rendered template: its plain-text and/or HTML body."""

    text: str | None = None
    html: str | None = None


class EmailComponent(Component):
    #: the sender used when a request names none ("" when the component has no default)
    default_sender: str = ""

    @abstractmethod
    async def send(self, mail: Mail, message_id: str) -> None:
        """Send ``mail`` with the Message-ID ``<message_id@...>``.

        Raises DeliveryRefused (the server refused it for good, nothing was sent),
        BackendUnavailable (not reachable, or a temporary refusal: retry later).
        """

    @abstractmethod
    def render(self, template_id: str, params: Mapping[str, str]) -> Rendered:
        """The template's bodies with ``params`` filled in.

        Raises InvalidArgument naming ``template.template_id`` (no such template) or
        ``template.template_params`` (a parameter the template uses is missing).
        """
