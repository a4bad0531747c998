"""The link to the line with real parts: an amqtt broker in its own process (killed -9 and restarted), a paho
subscriber, a local HTTP server for the webhook, and asyncua clients and servers for OPC UA."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from anomalyapp.core.errors import DataError
from anomalyapp.core.line import (
    LineSettings,
    LineVerdict,
    MqttSettings,
    OpcUaClientSettings,
    OpcUaServerSettings,
    WebhookSettings,
)
from anomalyapp.services.line_link import LineLink
from anomalyapp.store.records import RecordStore

BROKER_SCRIPT = Path(__file__).with_name("line_broker.py")
SUBSCRIBER_ID = "test-subscriber"
TOPIC = "line3/verdicts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def verdict(n: int, verdict_text: str = "OK") -> LineVerdict:
    return LineVerdict(part_id=f"part-{n:03d}", file_name=f"part-{n:03d}.png", verdict=verdict_text,
                       score=0.1 + n / 1000, raw_score=2.0 + n, model_version="3", overlay=None,
                       inspected_at="2026-11-30T12:00:00Z", project="line 3")


class BrokerProcess:
    """amqtt in a child process on a fixed port: start, kill -9, start again on the same port."""

    def __init__(self, port: int):
        self.port, self.process = port, None

    def start(self) -> None:
        deadline = time.monotonic() + 20
        while True:  # the port may take a moment to be free again after a kill
            self.process = subprocess.Popen([sys.executable, str(BROKER_SCRIPT), str(self.port), SUBSCRIBER_ID],
                                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            if self.process.stdout.readline().strip() == "ready":
                return
            self.process.wait()
            assert time.monotonic() < deadline, "the test broker did not start"
            time.sleep(0.1)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


class Subscriber:
    """A paho client that (re)subscribes on every connect and keeps every payload received."""

    def __init__(self, port: int):
        self.messages: list[dict] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=SUBSCRIBER_ID, clean_session=True)
        self.client.on_connect = lambda client, *_: client.subscribe(TOPIC, qos=1)
        self.client.on_message = self._received
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.2)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def _received(self, client, userdata, message) -> None:
        with self.lock:
            self.messages.append(json.loads(message.payload))

    def unique(self) -> list[dict]:
        """What a receiver keeps: the first message of each message id, in arrival order."""
        seen, kept = set(), []
        with self.lock:
            for message in self.messages:
                if message["message_id"] not in seen:
                    seen.add(message["message_id"])
                    kept.append(message)
        return kept

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker():
    process = BrokerProcess(free_port())
    process.start()
    yield process
    process.stop()


@pytest.fixture
def subscriber(broker):
    client = Subscriber(broker.port)
    yield client
    client.close()


def mqtt_settings(port: int) -> LineSettings:
    return LineSettings(mqtt=MqttSettings(host="127.0.0.1", port=port, topic=TOPIC), retry_max_s=0.5)


def test_broker_killed_mid_run_every_verdict_arrives_once_in_order(tmp_path, broker, subscriber):
    with LineLink.open(tmp_path, mqtt_settings(broker.port)) as link:
        for n in range(10):
            link.submit(verdict(n))
        broker.kill()  # some of those may be in flight, unacknowledged
        wait_for(lambda: not link.state()[0].connected, what="the link to notice the broker is gone")
        for n in range(10, 20):
            link.submit(verdict(n, "NG"))
        state = link.state()[0]
        assert state.backlog >= 10 and state.last_error
        broker.start()  # same port
        for n in range(20, 25):
            link.submit(verdict(n))
        wait_for(lambda: len(subscriber.unique()) == 25, what="all 25 verdicts at the subscriber")
        wait_for(lambda: link.state()[0].backlog == 0, what="an empty backlog")

    kept = subscriber.unique()
    assert [m["part_id"] for m in kept] == [f"part-{n:03d}" for n in range(25)]
    sequences = [m["sequence"] for m in kept]
    assert sequences == sorted(sequences) and len(set(sequences)) == 25
    assert {m["verdict"] for m in kept[10:20]} == {"NG"}
    assert LineVerdict.from_json(json.dumps(kept[3])) == verdict(3)
    with RecordStore.for_project(tmp_path) as store:
        assert store.verify_ledger().intact  # the outbox is outside the ledger and leaves it intact


def test_backlog_waits_in_the_database_across_close_and_reopen(tmp_path):
    port = free_port()  # nothing listens there yet
    link = LineLink.open(tmp_path, mqtt_settings(port))
    for n in range(5):
        link.submit(verdict(n))
    wait_for(lambda: link.state()[0].last_error, what="a connection error")
    link.close()
    with RecordStore.for_project(tmp_path) as store:
        assert [m.payload for m in store.pending_line_messages("mqtt")] != []
        assert len(store.pending_line_messages("mqtt")) == 5

    broker = BrokerProcess(port)
    broker.start()
    subscriber = Subscriber(port)
    try:
        with LineLink.open(tmp_path, mqtt_settings(port)) as reopened:
            wait_for(lambda: len(subscriber.unique()) == 5, what="the 5 queued verdicts")
            wait_for(lambda: reopened.state()[0].backlog == 0, what="an empty backlog")
            assert reopened.state()[0].last_sent_at is not None
    finally:
        subscriber.close()
        broker.stop()
    assert [m["part_id"] for m in subscriber.unique()] == [f"part-{n:03d}" for n in range(5)]


class WebhookReceiver:
    """A local HTTP server: answers each POST with the next status of ``statuses`` (the last one repeats) and
    keeps the bodies; ``hold`` keeps a request waiting until set."""

    def __init__(self, statuses):
        self.statuses, self.bodies, self.hold = list(statuses), [], threading.Event()
        self.arrived = 0
        self.hold.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.arrived += 1
                receiver.hold.wait(30)
                receiver.bodies.append((json.loads(body), self.headers["X-Message-Id"]))
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):  # where a redirect leads: a client that follows it would see 200 here
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/verdicts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_verdict_queued_in_the_callers_transaction_commits_or_rolls_back_with_it(tmp_path):
    """The hot folder queues each verdict in the transaction that records it: no verdict recorded but never sent."""
    port = free_port()  # nothing listens: rows stay queued
    with LineLink.open(tmp_path, mqtt_settings(port)) as link, RecordStore.for_project(tmp_path) as store:
        with pytest.raises(RuntimeError), store.transaction():
            link.queue(verdict(0), store)
            raise RuntimeError("the inspection's record failed")
        assert store.pending_line_messages("mqtt") == []
        with store.transaction():
            link.queue(verdict(1), store)
        link.wake()
        assert [json.loads(m.payload)["part_id"] for m in store.pending_line_messages("mqtt")] == ["part-001"]


def test_webhook_500_or_redirect_keeps_the_row_and_a_slow_receiver_never_blocks_submit(tmp_path):
    receiver = WebhookReceiver([500, 302, 200])
    settings = LineSettings(webhook=WebhookSettings(url=receiver.url, timeout_s=10), retry_max_s=0.3)
    try:
        with LineLink.open(tmp_path, settings) as link:
            link.submit(verdict(0, "NG"))
            wait_for(lambda: len(receiver.bodies) >= 1, what="the first POST")
            wait_for(lambda: "HTTP 500" in (link.state()[0].last_error or ""), what="the 500 as the sink's error")
            assert link.state()[0].backlog >= 1  # refused: still in the outbox
            wait_for(lambda: link.state()[0].backlog == 0, what="the third try, answered 200")
            assert len(receiver.bodies) == 3  # the 302 was not taken for a delivery

            receiver.hold.clear()  # the receiver now sits on each request
            link.submit(verdict(1))
            wait_for(lambda: receiver.arrived == 4, what="the sender to be waiting on the receiver")
            for n in range(2, 6):
                link.submit(verdict(n))  # returns although the receiver holds the sender
            assert link.state()[0].backlog == 5
            receiver.hold.set()
            wait_for(lambda: link.state()[0].backlog == 0, what="the held verdicts")
    finally:
        receiver.close()
    ids = [body["message_id"] for body, _ in receiver.bodies]
    assert ids[0] == ids[1] == ids[2]  # the same message each try: a receiver drops the repeats
    assert [header for _, header in receiver.bodies] == ids
    assert [body["part_id"] for body, _ in receiver.bodies[2:]] == [f"part-{n:03d}" for n in range(6)]
    assert receiver.bodies[0][0]["verdict"] == "NG" and receiver.bodies[0][0]["project"] == "line 3"


def read_nodes(endpoint: str, namespace: str, names):
    async def read():
        from asyncua import Client

        async with Client(endpoint, timeout=5) as client:
            index = await client.get_namespace_index(namespace)
            return {name: await client.get_node(f"ns={index};s={name}").read_value() for name in names}

    return asyncio.run(read())


@pytest.mark.slow  # asyncua builds its server address space: about 3 s of CPU
def test_opcua_server_nodes_read_by_a_real_client(tmp_path):
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    settings = LineSettings(opcua_server=OpcUaServerSettings(endpoint=endpoint, namespace="urn:test:line3"))
    with LineLink.open(tmp_path, settings) as link:
        wait_for(lambda: link.state()[0].connected, what="the OPC UA server")
        link.submit(verdict(0, "NG"))
        link.submit(verdict(1, "OK"))
        wait_for(lambda: link.state()[0].backlog == 0, what="both verdicts on the nodes")
        names = ("LastVerdict", "LastScore", "LastPartId", "PartCounter", "NgCounter", "ModelVersion", "Heartbeat")
        first = read_nodes(endpoint, "urn:test:line3", names)
        assert first["LastVerdict"] == "OK" and first["LastPartId"] == "part-001"
        assert first["LastScore"] == pytest.approx(0.101)
        assert (first["PartCounter"], first["NgCounter"], first["ModelVersion"]) == (2, 1, "3")
        wait_for(lambda: read_nodes(endpoint, "urn:test:line3", ["Heartbeat"])["Heartbeat"] > first["Heartbeat"],
                 timeout=5, what="the heartbeat to count")


@pytest.mark.slow  # asyncua builds its server address space: about 3 s of CPU
def test_opcua_client_writes_to_a_plc_s_nodes(tmp_path):
    """A PLC stand-in: an asyncua server with writable nodes in its own thread; the link writes to them."""
    from asyncua import Server, ua

    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    loop, ready, values = asyncio.new_event_loop(), threading.Event(), {}
    stop = asyncio.Event()

    async def plc():
        server = Server()
        await server.init()
        server.set_endpoint(endpoint)
        index = await server.register_namespace("urn:test:plc")
        gate = await server.nodes.objects.add_object(index, "Gate")
        for name, initial, kind in (("Reject", False, ua.VariantType.Boolean), ("Seq", 0, ua.VariantType.Int32),
                                    ("Part", "", ua.VariantType.String)):
            node = await gate.add_variable(ua.NodeId(name, index), name, ua.Variant(initial, kind))
            await node.set_writable()
            values[name] = node
        async with server:
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(plc()), daemon=True)
    thread.start()
    assert ready.wait(20)
    try:
        nodes = {"ng": "ns=2;s=Reject", "sequence": "ns=2;s=Seq", "part_id": "ns=2;s=Part"}
        settings = LineSettings(opcua_client=OpcUaClientSettings(endpoint=endpoint, nodes=nodes))
        with LineLink.open(tmp_path, settings) as link:
            link.submit(verdict(7, "NG"))
            wait_for(lambda: link.state()[0].backlog == 0, what="the write to the PLC")

        def read(name):
            return asyncio.run_coroutine_threadsafe(values[name].read_value(), loop).result(5)

        assert (read("Reject"), read("Part")) == (True, "part-007") and read("Seq") > 0
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def test_settings_refuse_bad_input_with_one_line():
    for data, expected in (
        ({"mqtt": {"host": "plc", "port": 70000}}, "mqtt.port: must be from 1 to 65535"),
        ({"mqtt": {"host": "plc", "topic": "a/#"}}, "wildcard"),
        ({"webhook": {"url": "ftp://mes/x"}}, "not an http:// or https:// URL"),
        ({"opcua_server": {"endpoint": "tcp://0.0.0.0:4840"}}, "not an opc.tcp://HOST:PORT"),
        ({"opcua_client": {"endpoint": "opc.tcp://plc:4840", "nodes": {"colour": "ns=2;s=X"}}}, "unknown key 'colour'"),
        ({"mqtt": {"host": "plc"}, "smtp": {}}, "unknown key 'smtp'"),
    ):
        with pytest.raises(DataError, match=expected) as error:
            LineSettings.from_dict(data)
        assert "\n" not in str(error.value) and str(error.value).startswith("line settings: ")
    settings = LineSettings.from_dict({"mqtt": {"host": "plc", "port": 1884}, "webhook": {"url": "http://mes/x"}})
    assert settings.sinks == ("mqtt", "webhook") and LineSettings.from_dict(settings.to_dict()) == settings


def test_line_settings_are_a_supervisor_s_audited_project_setting(tmp_path):
    from argon2 import PasswordHasher

    from anomalyapp.services import auth
    from anomalyapp.services import project as projects
    from anomalyapp.services.line_link import LINE_SETTINGS_KEY, load_line_settings, save_line_settings
    from anomalyapp.services.records import RecordsService

    FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # tests only
    root = tmp_path / "line3"
    projects.create_project(root, "line 3", single_user="boss", hasher=FAST_HASHER)
    with RecordsService(root, hasher=FAST_HASHER) as records:
        boss = records.auth.local_user("boss")
        olga = records.auth.add_user(boss, "olga", "Aa1-operator-password", auth.OPERATOR)
    settings = LineSettings(mqtt=MqttSettings(host="plc.line3", port=1884, topic="line3/verdicts"),
                            webhook=WebhookSettings(url="http://mes.line3/verdicts"))

    with pytest.raises(auth.PermissionDenied, match="operator olga may not"):
        save_line_settings(root, settings, olga)
    assert load_line_settings(root) == LineSettings()

    assert save_line_settings(root, settings, boss) is True
    assert save_line_settings(root, settings, boss) is False  # unchanged: no new audit entry
    assert load_line_settings(root) == settings
    assert projects.open_project(root).line == settings  # the copy in project.json
    assert json.loads((root / "project.json").read_text())["line"]["mqtt"]["host"] == "plc.line3"
    with RecordsService(root) as records:
        entries = [e for e in records.audit_log(f"setting:{LINE_SETTINGS_KEY}")]
        assert len(entries) == 1 and entries[0].user_id == boss.id and "plc.line3" in entries[0].new_value
        assert records.verify().intact

    (root / "project.json").write_text(json.dumps({**json.loads((root / "project.json").read_text()),
                                                    "line": {"mqtt": {"host": "plc", "port": "x"}}}))
    with pytest.raises(DataError, match=r"project file .*project.json: line settings: mqtt.port: must be an integer"):
        projects.open_project(root)
