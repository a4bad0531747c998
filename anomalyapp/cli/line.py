"""The line command group: set a project's link to the line, show its state, send a test verdict.

``line set`` changes a project setting, so it acts as a supervisor of the project (ANOMALYAPP_USER or the OS
login name, as every command line that changes a project) and is audited.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from anomalyapp.cli.common import EXIT_NOT_SENT, EXIT_OK, Parser, command_line_user
from anomalyapp.core.errors import AppError


def add_parsers(commands) -> None:
    line = commands.add_parser("line", help="send verdicts to the line: MQTT, OPC UA, webhook (set, status, test)")
    actions = line.add_subparsers(dest="line_command", metavar="ACTION", parser_class=Parser, required=True)

    change = actions.add_parser("set", help="change where the project's verdicts go (supervisor; audited)")
    change.add_argument("project", type=Path, help="project folder")
    change.add_argument("--mqtt", metavar="HOST[:PORT]", help="MQTT broker (port 1883 unless given)")
    change.add_argument("--topic", help="MQTT topic for the verdicts (default anomalyapp/verdicts)")
    change.add_argument("--client-id", help="MQTT client id (default: a random one per run)")
    change.add_argument("--username", help="MQTT user name")
    change.add_argument("--password-env", metavar="VARIABLE",
                        help="environment variable holding the MQTT password (the password itself is never saved)")
    change.add_argument("--tls", action="store_true", help="MQTT over TLS")
    change.add_argument("--opcua-server", metavar="opc.tcp://HOST:PORT",
                        help="serve the verdict nodes at this address (e.g. opc.tcp://0.0.0.0:4840)")
    change.add_argument("--opcua-namespace", help="namespace URI of those nodes (default urn:anomalyapp:line)")
    change.add_argument("--opcua-client", metavar="opc.tcp://HOST:PORT", help="write each verdict to this PLC")
    change.add_argument("--opcua-node", action="append", metavar="FIELD=NODEID", default=[],
                        help="a PLC node the client writes, e.g. 'ng=ns=3;s=Gate.Reject' (quoted: ; ends a shell "
                             "command; fields: verdict, ng, score, part_id, sequence); repeat for more")
    change.add_argument("--webhook", metavar="URL", help="POST each verdict as JSON to this http(s) URL")
    change.add_argument("--webhook-timeout", type=float, metavar="S", help="webhook timeout in seconds (default 5)")
    change.add_argument("--retry-max", type=float, metavar="S", help="longest wait between tries (default 5 s)")
    change.add_argument("--off", action="append", default=[], choices=("mqtt", "opcua-server", "opcua-client",
                                                                       "webhook", "all"),
                        help="stop sending to this sink (repeat for more; 'all': every sink)")

    status = actions.add_parser("status", help="each sink's settings, backlog and last error")
    status.add_argument("project", type=Path, help="project folder")

    test = actions.add_parser("test", help="send a test verdict to every sink and wait for it")
    test.add_argument("project", type=Path, help="project folder")
    test.add_argument("--wait", type=float, default=15.0, metavar="S", help="how long to wait (default 15 s)")


def _check_project(root: Path) -> None:
    from anomalyapp.services.project import PROJECT_FILE

    if not (root / PROJECT_FILE).is_file():
        raise AppError(f"{root} is not an anomalyapp project ({PROJECT_FILE} is missing)")


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "1883")
    if not host or not port.isdigit():
        raise AppError(f"--mqtt {text!r}: use HOST or HOST:PORT")
    return host, int(port)


def changed_settings(current, args):
    """``current`` with the options of ``line set`` applied; validated (a ``DataError`` names the option)."""
    from anomalyapp.core.line import LineSettings

    data = current.to_dict()
    off = set(args.off)
    for sink in ("mqtt", "opcua-server", "opcua-client", "webhook"):
        if sink in off or "all" in off:
            data.pop(sink.replace("-", "_"), None)
    if args.mqtt:
        host, port = _host_port(args.mqtt)
        data["mqtt"] = {**data.get("mqtt", {}), "host": host, "port": port}
    mqtt_options = {"topic": args.topic, "client_id": args.client_id, "username": args.username,
                    "password_env": args.password_env, "tls": True if args.tls else None}
    if any(value is not None for value in mqtt_options.values()):
        if "mqtt" not in data:
            raise AppError("MQTT options need a broker: add --mqtt HOST[:PORT]")
        data["mqtt"].update({key: value for key, value in mqtt_options.items() if value is not None})
    if args.opcua_server:
        data["opcua_server"] = {**data.get("opcua_server", {}), "endpoint": args.opcua_server}
    if args.opcua_namespace:
        data.setdefault("opcua_server", {})["namespace"] = args.opcua_namespace
    if args.opcua_client or args.opcua_node:
        client = data.get("opcua_client", {"nodes": {}})
        if args.opcua_client:
            client["endpoint"] = args.opcua_client
        for item in args.opcua_node:
            field, sep, node_id = item.partition("=")
            if not sep or not node_id:
                raise AppError(f"--opcua-node {item!r}: use FIELD=NODEID, e.g. ng=ns=3;s=Gate.Reject")
            client["nodes"] = {**client.get("nodes", {}), field.strip(): node_id.strip()}
        data["opcua_client"] = client
    if args.webhook:
        data["webhook"] = {**data.get("webhook", {}), "url": args.webhook}
    if args.webhook_timeout is not None:
        if "webhook" not in data:
            raise AppError("--webhook-timeout needs a webhook: add --webhook URL")
        data["webhook"]["timeout_s"] = args.webhook_timeout
    if args.retry_max is not None:
        data["retry_max_s"] = args.retry_max
    return LineSettings.from_dict(data)


def _acting_user(root: Path):
    from anomalyapp.services.records import RecordsService

    with RecordsService(root) as records:
        return command_line_user(records)


def _line(args) -> int:
    from anomalyapp.services import line_link

    root = args.project
    _check_project(root)
    if args.line_command == "set":
        settings = changed_settings(line_link.load_line_settings(root), args)
        changed = line_link.save_line_settings(root, settings, _acting_user(root))
        print("line settings changed" if changed else "line settings unchanged")
        for line in line_link.describe(settings) or ["no sinks: verdicts are not sent to the line"]:
            print(f"  {line}")
        return EXIT_OK
    settings = line_link.load_line_settings(root)
    if args.line_command == "status":
        return _status(root, settings)
    return _test(root, settings, args.wait)


def _status(root: Path, settings) -> int:
    from anomalyapp.services.line_link import describe, outbox_states

    if not settings.sinks:
        print("no sinks: verdicts are not sent to the line (anomalyapp line set PROJECT --mqtt HOST ...)")
        return EXIT_OK
    for description, queue in zip(describe(settings), outbox_states(root, settings.sinks), strict=True):
        sent = queue.last_sent_at.astimezone().isoformat(timespec="seconds") if queue.last_sent_at else "never"
        print(description)
        print(f"  backlog {queue.backlog}, last sent {sent}, last error: {queue.last_error or 'none'}")
    return EXIT_OK


def _test(root: Path, settings, wait_s: float) -> int:
    from anomalyapp.core.line import LineVerdict
    from anomalyapp.services.line_link import LineLink
    from anomalyapp.services.project import open_project

    if not settings.sinks:
        raise AppError(f"{root} sends verdicts nowhere: set a sink first (anomalyapp line set {root} --mqtt HOST)")
    now = dt.datetime.now(dt.UTC)
    verdict = LineVerdict(part_id=f"test-{now:%Y%m%dT%H%M%S}", file_name="", verdict="OK", score=0.0, raw_score=0.0,
                          model_version="test", inspected_at=now.isoformat(timespec="milliseconds"), overlay=None,
                          project=open_project(root).name)
    with LineLink.open(root, settings) as link:
        link.submit(verdict)
        delivered = link.wait_until_sent(wait_s)
        states = link.state()
    for state in states:
        outcome = "sent" if state.backlog == 0 else f"NOT sent ({state.last_error or 'no answer'})"
        print(f"{state.name}: {outcome}; backlog {state.backlog}")
    if not delivered:
        print(f"the test verdict {verdict.part_id} waits in the outbox; it goes when the sink is back", flush=True)
        return EXIT_NOT_SENT
    return EXIT_OK


COMMANDS = {"line": _line}
