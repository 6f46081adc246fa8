"""A tiny in-process HTTP stand-in for the two conditions a real node cannot be
made to produce on demand: a *slow* node (answers after a delay) and, for the
Qt-free client, a node that *refuses* a token. Everything else in these tests
talks to the real node (``running_node``).

It answers every ``…/similar`` request with one QIDO-shaped case whose study UID
is taken from the ``text`` parameter's first word when it is a UID (so a test can
tell answers apart), after ``delay_s`` seconds — or after ``slow_delay_s`` when
the text contains the word ``slow``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class StandIn:
    url: str
    delay_s: float = 0.0
    slow_delay_s: float = 1.5
    token: str | None = None  # when set, other tokens get 401
    requests: list[str] = field(default_factory=list)


def _case(uid: str) -> dict[str, object]:
    return {
        "0020000D": {"vr": "UI", "Value": [uid]},
        "00080061": {"vr": "CS", "Value": ["CT"]},
        "00110010": {"vr": "LO", "Value": ["PRECEDENT"]},
        "00111001": {"vr": "FD", "Value": [0.9]},
        "00111002": {"vr": "IS", "Value": [1]},
    }


@contextmanager
def stand_in(**options: object) -> Iterator[StandIn]:
    state = StandIn(url="", **options)  # type: ignore[arg-type]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, body: object, ctype: str) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (cancelled / timed out)
                pass

        def do_GET(self) -> None:
            state.requests.append(self.path)
            if state.token is not None and (
                    self.headers.get("Authorization") != f"Bearer {state.token}"):
                self._answer(401, {"type": "about:blank", "title": "Unauthorized",
                                   "status": 401, "detail": "invalid bearer token"},
                             "application/problem+json")
                return
            query = parse_qs(urlsplit(self.path).query)
            text = (query.get("text") or [""])[0]
            time.sleep(state.slow_delay_s if "slow" in text.split() else state.delay_s)
            first = text.split()[0] if text.split() else "1.2.3"
            uid = first if first.replace(".", "").isdigit() else "1.2.3"
            self._answer(200, [_case(uid)], "application/dicom+json")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
