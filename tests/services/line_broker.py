"""A real MQTT broker (amqtt) for the line link tests, run as its own process so a test can kill it (-9).

``python line_broker.py PORT SUBSCRIBER_ID``: listens on 127.0.0.1:PORT and prints "ready". Every client is
anonymous; a client other than SUBSCRIBER_ID is refused until SUBSCRIBER_ID has subscribed, so a test's
subscriber is always listening before the app can publish to a (re)started broker: messages sent to an MQTT
topic nobody subscribes to are gone, which would make a restart test depend on who reconnects first.
"""

import asyncio
import sys

from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

SUBSCRIBER_ID = sys.argv[2] if len(sys.argv) > 2 else "test-subscriber"
SUBSCRIPTION_SETTLE_S = 0.2
_subscribed = False


class SubscriberFirst(BaseAuthPlugin):
    async def authenticate(self, *, session) -> bool:
        return session.client_id == SUBSCRIBER_ID or _subscribed


class NoteSubscription(BaseTopicPlugin):
    async def topic_filtering(self, *, session=None, topic=None, action=None) -> bool:
        if session is not None and session.client_id == SUBSCRIBER_ID and str(action) == "subscribe" and not _subscribed:
            # Let other clients in a moment after the subscription is asked for, not at once: the broker adds it
            # after this check, and a client let in before that could publish to a topic nobody holds yet (the
            # likely cause of a restart test that waited in vain for a verdict, once in many runs).
            asyncio.get_running_loop().call_later(SUBSCRIPTION_SETTLE_S, _let_others_in)
        return True


def _let_others_in() -> None:
    global _subscribed
    _subscribed = True


async def serve(port: int) -> None:
    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"__main__.SubscriberFirst": {}, "__main__.NoteSubscription": {}},
    })
    await broker.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
