"""Running agents inside a web app: an ASGI lifespan, a WSGI host, live views of queues.

See docs/web.md. ``lifespan`` (Starlette, FastAPI) runs the agents in the server's own event
loop; :class:`Host` (Dash, Flask) runs them in an event-loop thread it owns and hands the
app's threads live :class:`Tail` / :class:`Latest` views and a blocking send/signal/call.
"""

from .asgi import lifespan
from .hive import AgentFactory, WebHive
from .views import Latest, Tail
from .wsgi import Host

__all__ = ["AgentFactory", "Host", "Latest", "Tail", "WebHive", "lifespan"]
