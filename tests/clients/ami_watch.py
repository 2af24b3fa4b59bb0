#!/usr/bin/python3
"""A real AMI client (panoramisk, what AMI tooling uses) for the live tests.

    ami_watch.py PORT SECONDS EVENT [EVENT...]
        logs in, then prints each named event as one JSON object per line until every named
        event was seen once, or SECONDS passed
    ami_watch.py PORT status
        runs the WebhookStatus action and prints its WebhookSection events as JSON lines
"""
import asyncio
import json
import sys

from panoramisk import Manager


async def watch(port, seconds, names):
    seen = set()
    done = asyncio.Event()
    manager = Manager(host="127.0.0.1", port=port, username="rwtest", secret="rwtest",
                      ping_delay=0, reconnect_timeout=0.5)

    async def on_event(_manager, message):
        print(json.dumps(dict(message)), flush=True)
        seen.add(message.Event)
        if seen >= set(names):
            done.set()

    for name in names:
        manager.register_event(name, on_event)
    await manager.connect()
    print(json.dumps({"Event": "Ready"}), flush=True)
    try:
        await asyncio.wait_for(done.wait(), seconds)
    except asyncio.TimeoutError:
        pass
    manager.close()


async def status(port):
    manager = Manager(host="127.0.0.1", port=port, username="rwtest", secret="rwtest", ping_delay=0)
    await manager.connect()
    replies = await manager.send_action({"Action": "WebhookStatus"})
    for message in replies if isinstance(replies, list) else [replies]:
        print(json.dumps(dict(message)), flush=True)
    manager.close()


def main():
    port = int(sys.argv[1])
    if sys.argv[2] == "status":
        asyncio.run(status(port))
    else:
        asyncio.run(watch(port, float(sys.argv[2]), sys.argv[3:]))


if __name__ == "__main__":
    main()
