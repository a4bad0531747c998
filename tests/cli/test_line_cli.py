"""``anomalyapp line set / status / test`` as a user runs them, against a real project and a local webhook."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from argon2 import PasswordHasher

from anomalyapp.services import auth
from anomalyapp.services import project as projects
from anomalyapp.services.records import RecordsService
from cli_helpers import assert_clean_error, run_cli


def make_project(tmp_path):
    fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # tests only
    root = tmp_path / "line3"
    projects.create_project(root, "line 3", single_user="boss", hasher=fast)
    with RecordsService(root, hasher=fast) as records:
        records.auth.add_user(records.auth.local_user("boss"), "olga", "Aa1-operator-password", auth.OPERATOR)
    return root


def test_line_set_status_and_test(tmp_path, monkeypatch):
    root = make_project(tmp_path)
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/verdicts"
    try:
        monkeypatch.setenv("ANOMALYAPP_USER", "olga")
        assert_clean_error(run_cli("line", "set", root, "--webhook", url), "operator olga may not")

        monkeypatch.setenv("ANOMALYAPP_USER", "boss")
        assert_clean_error(run_cli("line", "set", root, "--mqtt", "plc:99999"), "mqtt.port", "65535")
        assert_clean_error(run_cli("line", "set", root, "--topic", "a/b"), "--mqtt")
        assert_clean_error(run_cli("line", "set", tmp_path, "--webhook", url), "not an anomalyapp project")

        result = run_cli("line", "set", root, "--webhook", url, "--mqtt", "plc.line3", "--topic", "line3/verdicts")
        assert result.returncode == 0, result.stderr
        assert "line settings changed" in result.stdout and "plc.line3:1883 topic line3/verdicts" in result.stdout

        result = run_cli("line", "set", root, "--off", "mqtt")  # the broker does not exist: test the webhook only
        assert result.returncode == 0, result.stderr
        result = run_cli("line", "test", root, "--wait", "20")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "webhook: sent; backlog 0" in result.stdout
        assert len(received) == 1 and received[0]["project"] == "line 3" and received[0]["model_version"] == "test"

        result = run_cli("line", "status", root)
        assert result.returncode == 0, result.stderr
        assert f"webhook: POST {url}" in result.stdout and "backlog 0" in result.stdout
    finally:
        server.shutdown()
        server.server_close()
    with RecordsService(root) as records:
        actions = [(e.subject, e.user_id) for e in records.audit_log("setting:line_settings")]
    assert len(actions) == 2  # set, then the MQTT sink switched off; the refused attempts left nothing
