"""Latency on the line: from a part's image appearing in the hot folder to its verdict recorded, and to the verdict
published on an MQTT broker, at steady part rates.

    .venv/bin/python tools/bench_line.py [--rates 1 5 20] [--seconds 30] [--write rename|inplace] [--json FILE]

A PatchCore model with EfficientNet-Lite0 at 224 px is trained on the demo line; a project holds it, with an MQTT
sink to an amqtt broker run as its own process on 127.0.0.1 (as a broker on the line would be). For each rate a
writer drops the demo's test images into the watched folder at that steady rate, as camera software does
(``rename``: written into the folder under a hidden temporary name, then renamed; ``inplace``: written
under its final name, so the watch waits for the size to settle), while ``anomalyapp``'s hot folder inspects,
records and hands each verdict to the line link. A subscriber on the broker notes when each verdict arrives.

Printed per rate: parts written, inspected, dropped; latency file appeared -> verdict recorded and -> verdict
received from the broker, median and 99th percentile; and whether the station held the rate (no drops, and the
backlog did not grow: the last tenth of the parts no slower than the first).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_BROKER = """
import asyncio, sys
from amqtt.broker import Broker
async def serve(port):
    broker = Broker({"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
                     "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}})
    await broker.start()
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(serve(int(sys.argv[1])))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Subscriber:
    """An MQTT client on the broker noting when each part's verdict arrives."""

    def __init__(self, port: int, topic: str):
        import paho.mqtt.client as mqtt

        self.arrived: dict[str, float] = {}
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-subscriber")
        self.client.on_connect = lambda client, *a: client.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self.subscribed.wait(20):
            raise RuntimeError("the bench's subscriber could not subscribe on the broker")

    def _message(self, client, userdata, message) -> None:
        now = time.time()
        part = json.loads(message.payload)["part_id"]
        self.arrived.setdefault(part, now)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def run_rate(project, images: list[Path], rate: float, seconds: float, write: str, subscriber, queue_limit: int):
    from anomalyapp.core.cancel import CancelToken
    from anomalyapp.services.hot_folder import WatchOutcome, WatchSettings, open_line_link, watch_folder
    from anomalyapp.services.inference import InferenceSession
    from anomalyapp.services.records import RecordsService

    inbox = project.root.parent / f"inbox-{rate:g}pps"
    inbox.mkdir()
    records = RecordsService(project.root)
    user = records.auth.local_user(os.environ.get("ANOMALYAPP_USER") or __import__("getpass").getuser())
    session = InferenceSession(project.model_path, device="cpu")
    session.predict_path(images[0])  # warm: the first call builds caches
    link = open_line_link(project.root)
    token = CancelToken()
    outcomes: dict[str, WatchOutcome] = {}
    job = watch_folder(session, records, user, WatchSettings(inbox, queue_limit=queue_limit), token,
                       line=link, project_name="bench")

    def drive():
        for item in job:
            if isinstance(item, WatchOutcome):
                outcomes[Path(item.file_name).stem] = item

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    time.sleep(1.0)  # the watch's first scan and observer are up
    appeared: dict[str, float] = {}
    count = max(1, round(rate * seconds))
    cpu_before = time.process_time()
    start = time.monotonic()
    for index in range(count):
        delay = start + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        part = f"part-{rate:g}-{index:05d}"
        data = images[index % len(images)].read_bytes()
        if write == "rename":
            temporary = inbox / f".{part}.png.tmp"  # hidden: the watch leaves it alone until the rename
            temporary.write_bytes(data)
            os.replace(temporary, inbox / f"{part}.png")
        else:
            (inbox / f"{part}.png").write_bytes(data)
        appeared[part] = time.time()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        settled = [p for p in appeared if p in outcomes]
        if len(settled) == count and all(p in subscriber.arrived for p in settled
                                          if outcomes[p].state == "done"):
            break
        time.sleep(0.1)
    cpu_seconds = time.process_time() - cpu_before
    token.cancel()
    thread.join(30)
    link.close()
    records.close()
    done = [p for p in appeared if p in outcomes and outcomes[p].state == "done"]
    recorded = [outcomes[p].finished_at - appeared[p] for p in done]
    noticed = [outcomes[p].seen_at - appeared[p] for p in done]
    published = [subscriber.arrived[p] - appeared[p] for p in done if p in subscriber.arrived]
    quarter = max(1, len(recorded) // 4)
    dropped = sum(1 for p in appeared if p in outcomes and outcomes[p].state == "dropped")
    # Held: every part inspected, and the latency did not keep growing (a queue that grows is a rate not held).
    held = dropped == 0 and len(done) == count and \
        statistics.median(recorded[-quarter:]) <= statistics.median(recorded[:quarter]) + 0.5
    return {
        "rate": rate, "seconds": seconds, "written": count, "inspected": len(done), "dropped": dropped,
        "published": len(published), "load_average": os.getloadavg()[0],
        # this process's CPU time per part inspected (watch, model, records, link, and the writer): what a part
        # costs the station whatever else runs beside it
        "cpu_ms_per_part": 1000 * cpu_seconds / len(done) if done else None,
        "noticed_median_ms": 1000 * statistics.median(noticed) if noticed else None,
        "recorded_median_ms": 1000 * statistics.median(recorded) if recorded else None,
        "recorded_p99_ms": 1000 * _percentile(recorded, 99) if recorded else None,
        "published_median_ms": 1000 * statistics.median(published) if published else None,
        "published_p99_ms": 1000 * _percentile(published, 99) if published else None,
        "held": held,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[1, 5, 20])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--write", choices=("rename", "inplace"), default="rename")
    parser.add_argument("--queue", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    tmp = Path(tempfile.mkdtemp(prefix="anomalyapp-benchline-"))
    os.environ.setdefault("ANOMALYAPP_CONFIG_DIR", str(tmp / "config"))
    os.environ.setdefault("ANOMALYAPP_DATA_DIR", str(tmp / "data"))
    import getpass
    import shutil

    from anomalyapp.core.line import LineSettings, MqttSettings
    from anomalyapp.core.types import drain
    from anomalyapp.data.demo import generate_demo
    from anomalyapp.services import project as projects
    from anomalyapp.services.device import cpu_name
    from anomalyapp.services.line_link import save_line_settings
    from anomalyapp.services.records import RecordsService
    from anomalyapp.services.training import TrainRequest, train

    data = generate_demo(tmp / "demo_line", seed=0, n_train=20)
    model = drain(train(TrainRequest(data=data, out=tmp / "model", device="cpu", image_size=224))).model_path
    project = projects.create_project(tmp / "project", "bench", data / "train" / "good", single_user=getpass.getuser())
    shutil.copytree(model, project.models_dir / "lite0")
    project.current_model = "lite0"
    project.save()
    port, topic = _free_port(), "anomalyapp/bench"
    with RecordsService(project.root) as records:
        user = records.auth.local_user(getpass.getuser())
    save_line_settings(project.root, LineSettings(mqtt=MqttSettings(host="127.0.0.1", port=port, topic=topic,
                                                                     client_id="bench-station")), user)
    broker = subprocess.Popen([sys.executable, "-c", _BROKER, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        if broker.stdout.readline().strip() != "ready":
            raise RuntimeError("the amqtt broker did not start")
        subscriber = Subscriber(port, topic)
        images = sorted((data / "test").rglob("*.png"))
        rows = []
        for rate in args.rates:
            row = run_rate(project, images, rate, args.seconds, args.write, subscriber, args.queue)
            rows.append(row)
            print(f"{rate:g} parts/s for {args.seconds:g} s ({args.write}): {row['inspected']}/{row['written']} "
                  f"inspected, {row['dropped']} dropped; appeared -> recorded median {row['recorded_median_ms']:.0f} ms,"
                  f" p99 {row['recorded_p99_ms']:.0f} ms; -> published median {row['published_median_ms']:.0f} ms, "
                  f"p99 {row['published_p99_ms']:.0f} ms (noticed after {row['noticed_median_ms']:.0f} ms); "
                  f"{'held' if row['held'] else 'NOT held'}; CPU {row['cpu_ms_per_part']:.0f} ms per part; "
                  f"load average {row['load_average']:.1f}", flush=True)
        subscriber.close()
    finally:
        broker.kill()
        broker.wait()
    result = {"cpu": cpu_name(), "cores": os.cpu_count(), "model": "PatchCore, EfficientNet-Lite0, 224 px",
              "write": args.write, "rows": rows}
    print(f"CPU: {result['cpu']}, {result['cores']} cores")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
