"""Local stand-ins of Sinch's and Twilio's SMS REST APIs for the messaging tests: each
checks the documented request (method, path, authentication, content type, body fields)
as the provider would, answers like it, and records what it saw."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

NUMBER = "+4741234567"  # a valid Norwegian mobile number
PLAN = "jd63jf88477ll123ab4567cd89012ef3"
SINCH_TOKEN = "sinch-token-5e1b0c77a2"
ACCOUNT = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "twilio-token-9f3d11aa40"
SERVICE = "MG" + "fedcba9876543210" * 2
TEXT = "Someone is waiting in room Consultations"
# Short client timeouts for the outage tests; the stand-in sleeps well past them.
SHORT = httpx.Timeout(1.0, connect=1.0)


@dataclass
class StandIn:
    """A provider stand-in: ``kind`` is "sinch" or "twilio"; ``status``/``delay`` make it
    fail like an outage would."""

    kind: str
    url: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)
    status: int | None = None
    delay: float = 0.0


def make_handler(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            # The client may have given up (a timeout test): the answer has nowhere to go.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        def do_GET(self) -> None:
            self.answer(405, {"message": "method not allowed"})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            stand_in.seen.append({"path": self.path, "headers": dict(self.headers), "body": raw})
            if stand_in.delay:
                time.sleep(stand_in.delay)
            if stand_in.status is not None:
                self.answer(stand_in.status, {"message": "service unavailable"})
                return
            if stand_in.kind == "sinch":
                self.sinch(raw)
            else:
                self.twilio(raw)

        def sinch(self, raw: bytes) -> None:
            # POST /xms/v1/{service_plan_id}/batches, Authorization: Bearer, JSON.
            if self.path != f"/xms/v1/{PLAN}/batches":
                return self.answer(404, {"code": "not_found"})
            if self.headers.get("Authorization") != f"Bearer {SINCH_TOKEN}":
                return self.answer(401, {"code": "unauthorized", "text": "Invalid token"})
            if self.headers.get("Content-Type") != "application/json":
                return self.answer(415, {"code": "unsupported_media_type"})
            body = json.loads(raw)
            if set(body) != {"from", "to", "body"} or not isinstance(body["to"], list) or not body["body"]:
                return self.answer(400, {"code": "syntax_invalid_json"})
            if not all(isinstance(n, str) and n.startswith("+") for n in body["to"]):
                return self.answer(400, {"code": "syntax_constraint_violation"})
            self.answer(201, {"id": "01FC66621XXXXX119Z8PMV1QPQ", "to": body["to"], "type": "mt_text"})

        def twilio(self, raw: bytes) -> None:
            # POST /2010-04-01/Accounts/{sid}/Messages.json, HTTP Basic sid:token, form.
            if self.path != f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json":
                return self.answer(404, {"code": 20404, "message": "not found"})
            expected = "Basic " + base64.b64encode(f"{ACCOUNT}:{TWILIO_TOKEN}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                return self.answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
            if self.headers.get("Content-Type") != "application/x-www-form-urlencoded":
                return self.answer(400, {"code": 20001, "message": "form expected"})
            form = {key: values[0] for key, values in parse_qs(raw.decode(), strict_parsing=True).items()}
            senders = {"From", "MessagingServiceSid"} & set(form)
            if "To" not in form or "Body" not in form or len(senders) != 1 or set(form) - {"To", "Body"} != senders:
                return self.answer(400, {"code": 21604, "message": "bad parameters", "status": 400})
            self.answer(201, {"sid": "SM" + "0" * 32, "to": form["To"], "status": "queued"})

    return Handler


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(kind: str) -> StandIn:
        stand_in = StandIn(kind)
        server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(stand_in))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
        return stand_in

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
