"""Stand-ins for the services a city runs outside citybrain, at the wire: a real HTTP server on
127.0.0.1 in a daemon thread that hands each POSTed JSON body to a function and sends back what
it answers. The stand-ins (tests/sms_gateway.py, tests/identity_service.py) only decide the
answers; our code talks to them over real sockets."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

# (status, JSON body or None): what the service answers a request with.
Answer = tuple[int, dict[str, Any] | None]
# The body and the Authorization header of a request.
Respond = Callable[[dict[str, Any], str | None], Answer]


class WireServer:
    """A local HTTP server answering POSTs with ``respond``; ``url`` once started."""

    def __init__(self, respond: Respond, path: str) -> None:
        self.respond = respond
        self.path = path
        self.url = ""
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        """Listen on a free port of 127.0.0.1; returns the URL to post to."""
        respond = self.respond

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                status, answer = respond(body, self.headers.get("Authorization"))
                self.send_response(status)
                if answer is not None:
                    self.send_header("Content-Type", "application/json")
                self.end_headers()
                if answer is not None:
                    self.wfile.write(json.dumps(answer).encode())

            def log_message(self, format: str, *args: object) -> None:
                return  # quiet: no request lines in the tests' output

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@dataclass(eq=False)
class StandIn:
    """What a stand-in shares: ``start`` serves its ``_answer`` at ``PATH`` and records it in
    ``RUNNING`` (so a test finds the session's stand-in), ``stop`` undoes both.

    ``refuse_with``: an HTTP status to answer instead (a service that is down or refuses).
    ``meanwhile``: run once, after a request arrived and before it is answered: the moment our
    code waits on the service, for a test to let something else happen then."""

    PATH: ClassVar[str] = "/"
    RUNNING: ClassVar[list[Any]] = []
    refuse_with: int | None = None
    meanwhile: Callable[[], None] | None = None
    url: str = ""
    _server: WireServer | None = None

    def _answer(self, body: dict[str, Any], authorization: str | None) -> Answer:
        raise NotImplementedError

    def _serve(self, body: dict[str, Any], authorization: str | None) -> Answer:
        if self.refuse_with is not None:
            return self.refuse_with, None
        answer = self._answer(body, authorization)
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()
        return answer

    def start(self) -> None:
        """Listen on a free port of 127.0.0.1 in a daemon thread."""
        self._server = WireServer(self._serve, self.PATH)
        self.url = self._server.start()
        self.RUNNING.append(self)

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.stop()
        if self in self.RUNNING:
            self.RUNNING.remove(self)
