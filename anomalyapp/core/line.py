"""What the app tells the production line about one part: the verdict message and its JSON payload.

One ``LineVerdict`` per inspected part goes to every configured sink (MQTT, OPC UA, webhook) through the
project's outbox (``services.line_link``). Delivery is at-least-once, so each message sent carries a
``message_id`` that stays the same on every retry: a receiver drops a message whose id it has already seen.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from urllib.parse import urlsplit

from anomalyapp.core.errors import DataError
from anomalyapp.core.verdicts import Verdict

__all__ = [
    "LineVerdict", "message_payload", "PAYLOAD_SCHEMA", "LineSettings", "MqttSettings", "OpcUaServerSettings",
    "OpcUaClientSettings", "WebhookSettings", "SINKS", "OPCUA_CLIENT_FIELDS",
]

#: Bumped when a field of the payload changes meaning or goes away (adding a field does not bump it).
PAYLOAD_SCHEMA = 1


@dataclass(frozen=True)
class LineVerdict:
    """The verdict of one part as the line sees it.

    ``part_id`` is what the line knows the part by (the image's stem unless the station says otherwise);
    ``score`` is normalised (threshold 0.5), ``raw_score`` the detector's own; ``inspected_at`` is ISO 8601
    UTC; ``overlay`` is a path or URL to the heat-map overlay image, or None.
    """

    part_id: str
    file_name: str
    verdict: str
    score: float
    raw_score: float
    model_version: str
    inspected_at: str
    overlay: str | None
    project: str

    def __post_init__(self):
        if self.verdict not in {v.value for v in Verdict}:
            raise DataError(f"line verdict for part {self.part_id!r}: unknown verdict {self.verdict!r}")

    def to_dict(self) -> dict:
        # NaN is not JSON: an unreadable image (verdict Error) has no score, sent as null.
        data = asdict(self)
        for key in ("score", "raw_score"):
            value = data[key]
            data[key] = None if value is None or math.isnan(value) else float(value)
        return data

    def to_json(self) -> str:
        """The payload: compact JSON with sorted keys."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> LineVerdict:
        """The verdict in a payload (extra keys such as ``message_id`` are ignored); bad text is a ``DataError``."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise DataError(f"line verdict payload is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise DataError("line verdict payload is not a JSON object")
        names = [f.name for f in fields(cls)]
        missing = [name for name in names if name not in data]
        if missing:
            raise DataError(f"line verdict payload lacks {', '.join(missing)}")
        values = {name: data[name] for name in names}
        for key in ("score", "raw_score"):
            values[key] = math.nan if values[key] is None else float(values[key])
        return cls(**values)


def message_payload(verdict_json: str, message_id: str, sequence: int) -> str:
    """The JSON sent to a sink: the verdict's fields plus ``message_id`` (stable across retries: drop repeats),
    ``sequence`` (the outbox's order, rising per project) and ``schema``."""
    data = json.loads(verdict_json)
    data.update(message_id=message_id, sequence=sequence, schema=PAYLOAD_SCHEMA)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


# -- the line's settings (saved with the project; changed by a supervisor, audited) -------------------------

#: The sinks, in the order they are listed; also the outbox's ``sink`` values.
SINKS = ("mqtt", "opcua", "opcua_client", "webhook")
#: What an OPC UA client can write to a PLC's nodes: {field: what it holds}.
OPCUA_CLIENT_FIELDS = {
    "verdict": "the verdict text (OK, NG, Review, Error)",
    "ng": "True when the verdict is NG (a reject gate's boolean)",
    "score": "the normalised score (Double; threshold 0.5)",
    "part_id": "the part's id (String)",
    "sequence": "the message's sequence number (Int64), rising",
}


def _fail(where: str, reason: str):
    raise DataError(f"line settings: {where}: {reason}")


def _text(data: dict, key: str, where: str, default=None, required: bool = False) -> str | None:
    value = data.get(key, default)
    if value is None:
        if required:
            _fail(f"{where}.{key}", "is missing")
        return None
    if not isinstance(value, str) or not value.strip():
        _fail(f"{where}.{key}", f"must be non-empty text, not {value!r}")
    return value.strip()


def _number(data: dict, key: str, where: str, default: float, low: float, high: float, integer: bool = False):
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        _fail(f"{where}.{key}", f"must be a{'n integer' if integer else ' number'}, not {value!r}")
    if not low <= value <= high:
        _fail(f"{where}.{key}", f"must be from {low:g} to {high:g}, not {value!r}")
    return value


def _only(data, known: set[str], where: str) -> dict:
    if not isinstance(data, dict):
        _fail(where, f"must be an object, not {type(data).__name__}")
    unknown = sorted(set(data) - known)
    if unknown:
        _fail(where, f"unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return data


@dataclass(frozen=True)
class MqttSettings:
    """An MQTT broker and topic; QoS 1. The password is never saved: ``password_env`` names the environment
    variable that holds it on the station."""

    host: str
    port: int = 1883
    topic: str = "anomalyapp/verdicts"
    client_id: str = ""
    username: str | None = None
    password_env: str | None = None
    tls: bool = False

    @classmethod
    def from_dict(cls, data) -> MqttSettings:
        where = "mqtt"
        data = _only(data, {f.name for f in fields(cls)}, where)
        topic = _text(data, "topic", where, cls.topic)
        if any(c in topic for c in "+#\0"):
            _fail(f"{where}.topic", f"{topic!r} holds a wildcard (+ or #); a verdict goes to one topic")
        tls = data.get("tls", False)
        if not isinstance(tls, bool):
            _fail(f"{where}.tls", f"must be true or false, not {tls!r}")
        client_id = data.get("client_id", "")
        if not isinstance(client_id, str):
            _fail(f"{where}.client_id", f"must be text, not {client_id!r}")
        return cls(host=_text(data, "host", where, required=True), port=_number(data, "port", where, 1883, 1, 65535, True),
                   topic=topic, client_id=client_id.strip(), username=_text(data, "username", where),
                   password_env=_text(data, "password_env", where), tls=tls)


@dataclass(frozen=True)
class OpcUaServerSettings:
    """The app as an OPC UA server a PLC polls (nodes: see ``services.line_link.OPCUA_NODES``)."""

    endpoint: str = "opc.tcp://0.0.0.0:4840"
    namespace: str = "urn:anomalyapp:line"

    @classmethod
    def from_dict(cls, data) -> OpcUaServerSettings:
        where = "opcua_server"
        data = _only(data, {f.name for f in fields(cls)}, where)
        return cls(endpoint=_opc_endpoint(data, where, cls.endpoint),
                   namespace=_text(data, "namespace", where, cls.namespace))


@dataclass(frozen=True)
class OpcUaClientSettings:
    """The app as an OPC UA client writing each verdict to a PLC's nodes: {field: node id}, the fields from
    ``OPCUA_CLIENT_FIELDS`` (e.g. {"ng": "ns=3;s=Gate.Reject", "sequence": "ns=3;s=Gate.Seq"})."""

    endpoint: str
    nodes: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data) -> OpcUaClientSettings:
        where = "opcua_client"
        data = _only(data, {f.name for f in fields(cls)}, where)
        nodes = _only(data.get("nodes", {}), set(OPCUA_CLIENT_FIELDS), f"{where}.nodes")
        if not nodes:
            _fail(f"{where}.nodes", f"name at least one node to write ({', '.join(OPCUA_CLIENT_FIELDS)})")
        for key in nodes:
            _text(nodes, key, f"{where}.nodes")
        return cls(endpoint=_opc_endpoint(data, where, None), nodes={k: v.strip() for k, v in nodes.items()})


@dataclass(frozen=True)
class WebhookSettings:
    """An HTTP(S) URL that receives each verdict as a POST of JSON; any 2xx answer means delivered."""

    url: str
    timeout_s: float = 5.0

    @classmethod
    def from_dict(cls, data) -> WebhookSettings:
        where = "webhook"
        data = _only(data, {f.name for f in fields(cls)}, where)
        url = _text(data, "url", where, required=True)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            _fail(f"{where}.url", f"{url!r} is not an http:// or https:// URL with a host")
        return cls(url=url, timeout_s=float(_number(data, "timeout_s", where, 5.0, 0.1, 120)))


def _opc_endpoint(data: dict, where: str, default: str | None) -> str:
    endpoint = _text(data, "endpoint", where, default, required=True)
    parts = urlsplit(endpoint)
    if parts.scheme != "opc.tcp" or not parts.hostname:
        _fail(f"{where}.endpoint", f"{endpoint!r} is not an opc.tcp://HOST:PORT address")
    try:
        _ = parts.port  # urlsplit checks the port only when asked
    except ValueError:
        _fail(f"{where}.endpoint", f"{endpoint!r} has a bad port")
    return endpoint


@dataclass(frozen=True)
class LineSettings:
    """Where a project's verdicts go; each sink optional. ``retry_max_s``: the longest wait between two tries
    of a sink that fails (waits double from a fifth of a second up to it)."""

    mqtt: MqttSettings | None = None
    opcua_server: OpcUaServerSettings | None = None
    opcua_client: OpcUaClientSettings | None = None
    webhook: WebhookSettings | None = None
    retry_max_s: float = 5.0

    @property
    def sinks(self) -> tuple[str, ...]:
        """The configured sinks' names, in ``SINKS`` order."""
        present = {"mqtt": self.mqtt, "opcua": self.opcua_server, "opcua_client": self.opcua_client,
                   "webhook": self.webhook}
        return tuple(name for name in SINKS if present[name] is not None)

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, data) -> LineSettings:
        """Settings from their saved form; anything wrong is a ``DataError`` naming the key and the reason."""
        data = _only(data if data is not None else {}, {f.name for f in fields(cls)}, "line")
        parts = {"mqtt": MqttSettings, "opcua_server": OpcUaServerSettings, "opcua_client": OpcUaClientSettings,
                 "webhook": WebhookSettings}
        values = {key: kind.from_dict(data[key]) for key, kind in parts.items() if data.get(key) is not None}
        return cls(**values, retry_max_s=float(_number(data, "retry_max_s", "line", 5.0, 0.05, 3600)))
