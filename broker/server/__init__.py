"""The trio + h2 edge: listener, one nursery per connection, routing, metrics."""

from __future__ import annotations

from .listener import Server, serve, server_ssl_context
from .metrics import ServerMetrics

__all__ = ["Server", "ServerMetrics", "serve", "server_ssl_context"]
