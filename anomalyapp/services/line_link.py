"""The link to the production line: each verdict goes to the configured sinks, and nothing is lost.

``LineLink.submit`` writes one outbox row per sink into the project's records database (one transaction) and
wakes the senders; it never touches the network. One background thread per sink sends its rows in order,
marks each sent once the sink confirmed it (MQTT: the broker's PUBACK; webhook: a 2xx answer; OPC UA: the
nodes written) and, when a send fails, tries the same row again after a wait that doubles up to
``LineSettings.retry_max_s``. Rows survive a crash or a restart: a new ``LineLink`` on the project sends them.

Delivery is at-least-once. A row whose confirmation was lost (the broker died after receiving it, before its
PUBACK reached us; MQTT QoS 1 itself may redeliver) is sent again, with the same ``message_id``: a receiver
keeps the first message of each id and drops repeats. After that, messages arrive in ``sequence`` order.

The sinks use the protocols' own libraries: paho-mqtt, asyncua (OPC UA) and urllib (HTTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from anomalyapp.core.errors import AppError, DataError
from anomalyapp.core.line import (
    LineSettings,
    LineVerdict,
    MqttSettings,
    OpcUaClientSettings,
    OpcUaServerSettings,
    WebhookSettings,
    message_payload,
)
from anomalyapp.store.outbox import OutboxState
from anomalyapp.store.records import RecordStore

__all__ = [
    "LineLink", "LineSettings", "LineVerdict", "SinkState", "LineSendError", "OPCUA_NODES", "LINE_SETTINGS_KEY",
    "load_line_settings", "save_line_settings", "outbox_states", "describe",
]

log = logging.getLogger(__name__)

LINE_SETTINGS_KEY = "line_settings"  # records setting: the line settings in force, as JSON
FIRST_RETRY_S = 0.2
MQTT_ACK_TIMEOUT_S = 10.0
MARK_EVERY_S = 0.2  # delivered rows are marked sent in batches at least this often (a crash resends them)

#: The OPC UA server's variables (string node ids in the project's namespace): name -> (type, meaning).
OPCUA_NODES = {
    "LastVerdict": ("String", "the last part's verdict: OK, NG, Review or Error"),
    "LastScore": ("Double", "the last part's normalised score (threshold 0.5)"),
    "LastPartId": ("String", "the last part's id"),
    "PartCounter": ("Int64", "parts judged since the server started; changes with every new verdict"),
    "NgCounter": ("Int64", "NG parts since the server started"),
    "Heartbeat": ("Int64", "counts up every second while the app runs"),
    "ModelVersion": ("String", "the model version that judged the last part"),
}


class LineSendError(AppError):
    """A message that a sink did not accept (not connected, refused, no confirmation in time)."""


@dataclass(frozen=True)
class SinkState:
    """One sink as the window and ``line status`` show it."""

    name: str
    connected: bool
    backlog: int
    last_error: str | None
    last_sent_at: datetime | None


# -- settings --------------------------------------------------------------------------------------------------


def load_line_settings(project_root: str | os.PathLike, store: RecordStore | None = None) -> LineSettings:
    """The project's line settings in force (kept in its records, where only a supervisor changes them)."""
    own = store is None
    store = store or RecordStore.for_project(project_root)
    try:
        text = store.get_setting(LINE_SETTINGS_KEY)
    finally:
        if own:
            store.close()
    if not text:
        return LineSettings()
    try:
        data = json.loads(text)
    except ValueError:
        raise DataError(f"line settings of {project_root} are damaged: not JSON") from None
    return LineSettings.from_dict(data)


def save_line_settings(project_root: str | os.PathLike, settings: LineSettings, actor) -> bool:
    """Put ``settings`` in force: a project setting, so ``actor`` must be allowed to change settings
    (``PermissionDenied`` otherwise); audited with the old and new value. Returns False when unchanged.

    A copy goes into ``project.json`` (its ``line`` section) for reading and for moving the project."""
    from anomalyapp.services.project import open_project
    from anomalyapp.services.records import RecordsService

    settings = LineSettings.from_dict(settings.to_dict())  # validated as it will be read back
    project = open_project(project_root)
    text = json.dumps(settings.to_dict(), sort_keys=True, separators=(",", ":"))
    with RecordsService(project_root) as records:
        changed = records.set_setting(LINE_SETTINGS_KEY, None if settings == LineSettings() else text, actor)
    if project.line != settings:
        project.line = settings
        project.save()
    return changed


def outbox_states(project_root: str | os.PathLike, sinks) -> list[OutboxState]:
    """Each sink's queue in the project's outbox (backlog, last error, last delivery), without sending."""
    with RecordStore.for_project(project_root, verify=False) as store:
        return [store.outbox_state(sink) for sink in sinks]


# -- sinks -----------------------------------------------------------------------------------------------------


class _Sink:
    """One destination. ``start`` and ``send`` run on the sink's sender thread; ``connected`` anywhere."""

    name = ""
    where = ""

    def start(self) -> None:
        pass

    def send(self, payload: str) -> None:
        """Deliver ``payload``, returning only once the destination confirmed it; ``LineSendError`` if not."""
        raise NotImplementedError

    @property
    def connected(self) -> bool:
        return False

    @property
    def connection_error(self) -> str | None:
        return None

    def close(self) -> None:
        pass


class MqttSink(_Sink):
    """Publishes each payload to the topic with QoS 1 and waits for the broker's PUBACK. paho's own loop
    thread keeps the connection and reconnects."""

    name = "mqtt"

    def __init__(self, settings: MqttSettings, retry_max_s: float):
        import paho.mqtt.client as mqtt

        self.settings = settings
        self.where = f"mqtt://{settings.host}:{settings.port}/{settings.topic}"
        self._error: str | None = None
        client_id = settings.client_id or f"anomalyapp-{uuid.uuid4().hex[:12]}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if settings.username:
            password = os.environ.get(settings.password_env) if settings.password_env else None
            self.client.username_pw_set(settings.username, password)
        if settings.tls:
            self.client.tls_set()
        self.client.reconnect_delay_set(min_delay=FIRST_RETRY_S, max_delay=max(FIRST_RETRY_S, retry_max_s))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self._error = None if not reason_code.is_failure else f"broker refused the connection: {reason_code}"

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._error = f"disconnected from {self.settings.host}:{self.settings.port} ({reason_code})"

    def start(self) -> None:
        self.client.connect_async(self.settings.host, self.settings.port, keepalive=30)
        self.client.loop_start()

    def send(self, payload: str) -> None:
        if not self.client.is_connected():
            raise LineSendError(self._error or f"not connected to {self.settings.host}:{self.settings.port}")
        info = self.client.publish(self.settings.topic, payload.encode(), qos=1)
        try:
            info.wait_for_publish(MQTT_ACK_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:
            raise LineSendError(f"publish failed: {exc}") from None
        if not info.is_published():
            raise LineSendError(f"no PUBACK from {self.settings.host}:{self.settings.port} in {MQTT_ACK_TIMEOUT_S:g} s")

    @property
    def connected(self) -> bool:
        return self.client.is_connected()

    @property
    def connection_error(self) -> str | None:
        if self.connected:
            return None
        return self._error or f"not connected to {self.settings.host}:{self.settings.port}"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # urllib would repeat a redirected POST as a GET without the body: report the 3xx instead


class WebhookSink(_Sink):
    """POSTs each payload as JSON; only a 2xx answer means delivered (a redirect is an error, not followed;
    environment proxies are not used: the receiver is on the line's network)."""

    name = "webhook"

    def __init__(self, settings: WebhookSettings):
        self.settings = settings
        self.where = settings.url
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
        self._ok: bool | None = None

    def send(self, payload: str) -> None:
        message_id = json.loads(payload).get("message_id", "")
        request = urllib.request.Request(self.settings.url, data=payload.encode(), method="POST", headers={
            "Content-Type": "application/json", "X-Message-Id": message_id})
        try:
            with self._opener.open(request, timeout=self.settings.timeout_s) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            self._ok = True  # reachable, but refused
            raise LineSendError(f"{self.settings.url} answered HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            self._ok = False
            reason = getattr(exc, "reason", exc)
            raise LineSendError(f"cannot reach {self.settings.url}: {reason}") from None
        self._ok = True
        if not 200 <= status < 300:
            raise LineSendError(f"{self.settings.url} answered HTTP {status}")

    @property
    def connected(self) -> bool:
        return bool(self._ok)


class _AsyncSink(_Sink):
    """A sink built on asyncio (asyncua): its own event loop in its own thread."""

    def __init__(self):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"line-{self.name}-loop", daemon=True)
        self._thread.start()

    def _call(self, coroutine, timeout: float):
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise LineSendError(f"{self.where}: no answer in {timeout:g} s") from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._aclose(), 5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    async def _aclose(self) -> None:
        pass


class OpcUaServerSink(_AsyncSink):
    """The app as an OPC UA server: each payload updates the ``OPCUA_NODES`` variables (read-only for
    clients), and ``Heartbeat`` counts every second. A PLC polls or subscribes to them. Anonymous, without
    encryption: for a line's closed network."""

    name = "opcua"

    def __init__(self, settings: OpcUaServerSettings):
        self.settings = settings
        self.where = settings.endpoint
        self._server = None
        self._nodes: dict = {}
        self._counts = {"PartCounter": 0, "NgCounter": 0}
        self._running = False
        self._error: str | None = None
        super().__init__()

    def start(self) -> None:
        try:
            self._call(self._astart(), 30)
        except Exception as exc:  # a port in use, a bad address
            self._error = f"cannot start the OPC UA server at {self.settings.endpoint}: {exc}"
            raise LineSendError(self._error) from None

    async def _astart(self) -> None:
        from asyncua import Server, ua

        server = Server()
        await server.init()
        server.set_endpoint(self.settings.endpoint)
        server.set_server_name("anomalyapp line link")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        index = await server.register_namespace(self.settings.namespace)
        folder = await server.nodes.objects.add_object(ua.NodeId("AnomalyApp", index), "AnomalyApp")
        initial = {"String": "", "Double": 0.0, "Int64": 0}
        for name, (kind, _meaning) in OPCUA_NODES.items():
            self._nodes[name] = await folder.add_variable(
                ua.NodeId(name, index), name, ua.Variant(initial[kind], getattr(ua.VariantType, kind)))
        await server.start()
        self._server = server
        self._running = True
        self._heartbeat = asyncio.ensure_future(self._beat())

    async def _beat(self) -> None:
        from asyncua import ua

        beats = 0
        while True:
            await asyncio.sleep(1)
            beats += 1
            await self._nodes["Heartbeat"].write_value(ua.Variant(beats, ua.VariantType.Int64))

    async def _write(self, data: dict) -> None:
        from asyncua import ua

        self._counts["PartCounter"] += 1
        self._counts["NgCounter"] += data.get("verdict") == "NG"
        score = data.get("score")
        values = {"LastVerdict": data.get("verdict", ""), "LastScore": float("nan") if score is None else float(score),
                  "LastPartId": data.get("part_id", ""), "ModelVersion": str(data.get("model_version", "")),
                  **self._counts}  # the counters last: a PLC that watches them then reads a complete part
        for name, value in values.items():
            await self._nodes[name].write_value(ua.Variant(value, getattr(ua.VariantType, OPCUA_NODES[name][0])))

    def send(self, payload: str) -> None:
        if not self._running:
            raise LineSendError(self._error or "the OPC UA server is not running")
        self._call(self._write(json.loads(payload)), 10)

    @property
    def connected(self) -> bool:
        return self._running

    @property
    def connection_error(self) -> str | None:
        return self._error

    async def _aclose(self) -> None:
        self._running = False
        if getattr(self, "_heartbeat", None) is not None:
            self._heartbeat.cancel()
        if self._server is not None:
            await self._server.stop()


class OpcUaClientSink(_AsyncSink):
    """The app as an OPC UA client writing each verdict to a PLC's nodes (``OpcUaClientSettings.nodes``), each
    value in the node's own data type; ``sequence`` is written last, so a PLC that watches it reads a
    complete part. A failed write drops the connection; the next try connects again."""

    name = "opcua_client"

    def __init__(self, settings: OpcUaClientSettings):
        self.settings = settings
        self.where = settings.endpoint
        self._client = None
        self._types: dict = {}
        super().__init__()

    async def _connect(self):
        from asyncua import Client

        if self._client is None:
            client = Client(self.settings.endpoint, timeout=5)
            await client.connect()
            self._client = client
        return self._client

    async def _write(self, data: dict) -> None:
        from asyncua import ua

        values = {"verdict": data.get("verdict", ""), "ng": data.get("verdict") == "NG", "score": data.get("score"),
                  "part_id": data.get("part_id", ""), "sequence": data.get("sequence", 0)}
        try:
            client = await self._connect()
            for field in sorted(self.settings.nodes, key=lambda f: f == "sequence"):
                node = client.get_node(self.settings.nodes[field])
                if field not in self._types:
                    self._types[field] = await node.read_data_type_as_variant_type()
                value = values[field]
                kind = self._types[field]
                if kind in (ua.VariantType.Double, ua.VariantType.Float):
                    value = float("nan") if value is None else float(value)
                elif kind is not ua.VariantType.Boolean and kind is not ua.VariantType.String and value is not None:
                    value = int(value) if not isinstance(value, str) else value
                await node.write_value(ua.DataValue(ua.Variant(value, kind)))
        except Exception as exc:
            await self._aclose()
            raise LineSendError(f"{self.settings.endpoint}: {type(exc).__name__}: {exc}") from None

    def send(self, payload: str) -> None:
        self._call(self._write(json.loads(payload)), 15)

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def _aclose(self) -> None:
        client, self._client = self._client, None
        self._types.clear()
        if client is not None:
            with contextlib.suppress(Exception):
                await client.disconnect()


def _make_sinks(settings: LineSettings) -> list[_Sink]:
    made = {"mqtt": lambda: MqttSink(settings.mqtt, settings.retry_max_s),
            "opcua": lambda: OpcUaServerSink(settings.opcua_server),
            "opcua_client": lambda: OpcUaClientSink(settings.opcua_client),
            "webhook": lambda: WebhookSink(settings.webhook)}
    return [made[name]() for name in settings.sinks]


# -- the link --------------------------------------------------------------------------------------------------


class _Sender:
    """One sink's thread: sends its outbox rows in order, retrying the head row until it goes."""

    def __init__(self, store: RecordStore, sink: _Sink, retry_max_s: float):
        self.store, self.sink, self.retry_max_s = store, sink, retry_max_s
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.last_error: str | None = None
        self.thread = threading.Thread(target=self._run, name=f"line-{sink.name}", daemon=True)

    def _run(self) -> None:
        try:
            self.sink.start()
        except Exception as exc:
            self.last_error = str(exc)
            log.warning("line link %s: %s", self.sink.name, exc)
        wait = FIRST_RETRY_S
        while not self.stopping.is_set():
            self.wake.clear()  # before reading: a submit from now on wakes the next wait
            try:
                batch = self.store.pending_line_messages(self.sink.name)
            except AppError as exc:
                self.last_error = str(exc)
                self.stopping.wait(wait)
                continue
            if not batch:
                self.wake.wait(1.0)  # also picks up rows another process added
                continue
            sent, marked_at = [], time.monotonic()
            for message in batch:
                if self.stopping.is_set():
                    break
                try:
                    self.sink.send(message.payload)
                except Exception as exc:  # noqa: BLE001 - a sink's failure must not end its thread
                    error = str(exc) or type(exc).__name__
                    if not isinstance(exc, AppError):
                        log.warning("line link %s: sending failed", self.sink.name, exc_info=True)
                    self.last_error = error
                    self._mark_sent(sent)
                    sent = []
                    with contextlib.suppress(AppError):
                        self.store.mark_line_message_failed(message.id, error)
                    self.stopping.wait(wait)
                    wait = min(wait * 2, self.retry_max_s)
                    break
                self.last_error = None
                wait = FIRST_RETRY_S
                sent.append(message.id)
                if time.monotonic() - marked_at > MARK_EVERY_S:
                    self._mark_sent(sent)
                    sent, marked_at = [], time.monotonic()
            self._mark_sent(sent)

    def _mark_sent(self, row_ids: list[int]) -> None:
        if not row_ids:
            return
        try:
            self.store.mark_line_messages_sent(row_ids)
        except AppError as exc:  # sent but not marked: they go again (at-least-once)
            self.last_error = str(exc)


class LineLink:
    """A project's link to the line; see the module's description. Open with ``LineLink.open``."""

    def __init__(self, project_root: str | os.PathLike, settings: LineSettings, project_name: str | None = None):
        self.root = Path(project_root)
        self.settings = settings
        self.project_name = project_name or self.root.name
        self._store = RecordStore.for_project(self.root, verify=False)
        self._closed = False
        try:
            self._store.prune_sent_line_messages()
            self._senders = [_Sender(self._store, sink, settings.retry_max_s) for sink in _make_sinks(settings)]
        except BaseException:
            self._store.close()
            raise
        for sender in self._senders:
            sender.thread.start()

    @classmethod
    def open(cls, project_root: str | os.PathLike, settings: LineSettings | None = None) -> LineLink:
        """Start the link: a sender thread per configured sink (settings: the project's, by default). Rows
        left in the outbox by an earlier run are sent first."""
        if settings is None:
            settings = load_line_settings(project_root)
        return cls(project_root, settings)

    @property
    def sinks(self) -> tuple[str, ...]:
        return tuple(sender.sink.name for sender in self._senders)

    def submit(self, verdict: LineVerdict) -> str | None:
        """Queue ``verdict`` for every sink (one transaction in the project's records) and wake the senders;
        never waits on the network. Returns the message id (None: no sink configured)."""
        message_id = self.queue(verdict)
        self.wake()
        return message_id

    def queue(self, verdict: LineVerdict, store: RecordStore | None = None) -> str | None:
        """Queue ``verdict`` for every sink without waking the senders. With ``store`` (the caller's connection to
        the same records, inside its transaction) the rows commit or roll back with the caller's own writes, so
        a verdict recorded is a verdict queued even if the process dies right after; call ``wake`` after the
        commit. Returns the message id (None: no sink configured)."""
        if self._closed:
            raise AppError(f"the line link of {self.root} is closed")
        if not self._senders:
            return None
        message_id = uuid.uuid4().hex
        verdict_json = verdict.to_json()
        (store or self._store).enqueue_line_messages(
            self.sinks, lambda sequence: (message_id, message_payload(verdict_json, message_id, sequence)))
        return message_id

    def wake(self) -> None:
        """Tell the senders that rows are waiting (they also look every second on their own)."""
        for sender in self._senders:
            sender.wake.set()

    def state(self) -> list[SinkState]:
        """Each sink's connection, backlog (rows not yet confirmed), last error and last delivery."""
        states = []
        for sender in self._senders:
            queue = self._store.outbox_state(sender.sink.name)
            connected = sender.sink.connected
            healthy = connected and queue.backlog == 0
            error = None if healthy else (sender.last_error or sender.sink.connection_error or queue.last_error)
            states.append(SinkState(sender.sink.name, connected, queue.backlog, error, queue.last_sent_at))
        return states

    def wait_until_sent(self, timeout: float) -> bool:
        """Block until every sink's backlog is empty (True) or ``timeout`` seconds passed (False); for the
        command line and tests, never the GUI thread."""
        deadline = time.monotonic() + timeout
        while True:
            if all(state.backlog == 0 for state in self.state()):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def close(self, timeout: float = 5) -> None:
        """Stop the senders (a row being sent finishes or stays queued) and close the sinks."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        for sender in self._senders:
            sender.stopping.set()
            sender.wake.set()
        for sender in self._senders:
            sender.thread.join(max(0.0, deadline - time.monotonic()))
        for sender in self._senders:
            with contextlib.suppress(Exception):
                sender.sink.close()
        self._store.close()

    def __enter__(self) -> LineLink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def describe(settings: LineSettings) -> list[str]:
    """One line per configured sink, for ``line status`` and the window."""
    lines = []
    if settings.mqtt:
        lines.append(f"mqtt: {settings.mqtt.host}:{settings.mqtt.port} topic {settings.mqtt.topic} (QoS 1"
                     f"{', TLS' if settings.mqtt.tls else ''})")
    if settings.opcua_server:
        lines.append(f"opcua: server at {settings.opcua_server.endpoint}, namespace {settings.opcua_server.namespace}")
    if settings.opcua_client:
        nodes = ", ".join(f"{k}={v}" for k, v in settings.opcua_client.nodes.items())
        lines.append(f"opcua_client: writes {nodes} at {settings.opcua_client.endpoint}")
    if settings.webhook:
        lines.append(f"webhook: POST {settings.webhook.url} (timeout {settings.webhook.timeout_s:g} s)")
    return lines

