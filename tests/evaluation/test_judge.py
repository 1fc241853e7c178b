"""The optional LLM judge against an OpenAI-compatible endpoint on loopback."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from evaluation.errors import EvaluationError
from evaluation.judge import Judge
from evaluation.qa import QAItem


class _Endpoint(BaseHTTPRequestHandler):
    """Answers /v1/models and /v1/chat/completions like an OpenAI-compatible server would."""

    requests: list = []

    def log_message(self, *args):
        pass

    def _send(self, payload):
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send({"object": "list", "data": [{"id": "judge-1", "object": "model", "created": 0, "owned_by": "t"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        user = body["messages"][-1]["content"]
        accepted = user.split("Accepted answers: ")[1].split("\n")[0].split(" | ") if "Accepted" in user else []
        candidate = user.split("Candidate answer: ")[1].split("\n")[0]
        verdict = "CORRECT" if any(a in candidate for a in accepted) else "INCORRECT"
        self._send({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": verdict}}]})


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


ITEM = QAItem(id="q1", question="When did it open?", answers=("March 2019",))


def test_judge_scores_with_the_endpoints_first_model_at_temperature_zero(endpoint):
    judge = Judge(endpoint)
    assert judge.score(ITEM, "It opened in March 2019 [1].") == 1.0
    assert judge.score(ITEM, "It opened in 2018.") == 0.0
    sent = _Endpoint.requests[-1]
    assert sent["model"] == "judge-1" and sent["temperature"] == 0


def test_unreachable_judge_is_a_user_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EvaluationError, match="judge http://127.0.0.1"):
        Judge(f"http://127.0.0.1:{port}", timeout=2).score(ITEM, "x")
