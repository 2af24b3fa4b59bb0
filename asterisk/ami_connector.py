#!/usr/bin/env python3
"""The AMI-based connector an administrator would otherwise run, for asterisk/bench.sh's `ami`
mode: a panoramisk (asyncio AMI client) session subscribed to call events that posts one `end`
webhook per call when the call's last channel hangs up.

    ami_connector.py --ami 127.0.0.1:25038 --user bench --secret bench \
        --url http://127.0.0.1:25199/a1 --seconds 60

Per call (linkedid) it counts live channels (Newchannel +1, Hangup -1), keeps the last
DialEnd's DialStatus, and when the count reaches zero sends
GET <url>?id=<linkedid>&event=end&status=<dialstatus>&t=<hangup time, unix ms>, on one
keep-alive HTTP/1.1 connection (requests go out in order, one at a time, like a simple
connector would). The hangup time is the Hangup event's own Timestamp (manager.conf
timestampevents = yes), so the receiver's end delay includes AMI's own delay.
"""

import argparse
import asyncio
import sys
import time
from urllib.parse import quote, urlsplit

from panoramisk import Manager


class KeepAliveGet:
    """Sequential GETs over one persistent connection (reconnects when the server closes)."""

    def __init__(self, url):
        u = urlsplit(url)
        self.host, self.port, self.path = u.hostname, u.port or 80, u.path or "/"
        self.queue = asyncio.Queue()
        self.reader = self.writer = None
        self.sent = self.failed = 0

    async def _connect(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def _get(self, query):
        if self.writer is None:
            await self._connect()
        req = (f"GET {self.path}?{query} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
               "User-Agent: ami-connector\r\n\r\n").encode()
        self.writer.write(req)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length:
            await self.reader.readexactly(length)
        if close:
            self.writer.close()
            self.writer = None

    async def run(self):
        while True:
            query = await self.queue.get()
            for _ in range(3):
                try:
                    await self._get(query)
                    self.sent += 1
                    break
                except (OSError, asyncio.IncompleteReadError):
                    if self.writer is not None:
                        self.writer.close()
                    self.writer = None
                    await asyncio.sleep(0.1)
            else:
                self.failed += 1


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ami", default="127.0.0.1:5038")
    ap.add_argument("--user", default="bench")
    ap.add_argument("--secret", default="bench")
    ap.add_argument("--url", required=True)
    ap.add_argument("--seconds", type=float, default=60)
    args = ap.parse_args()
    host, port = args.ami.rsplit(":", 1)

    http = KeepAliveGet(args.url)
    calls = {}  # linkedid -> [live channels, dialstatus]

    manager = Manager(host=host, port=int(port), username=args.user, secret=args.secret,
                      ping_delay=3600, ping_interval=3600)

    @manager.register_event("Newchannel")
    def on_new(_, ev):
        c = calls.setdefault(ev.Linkedid, [0, ""])
        c[0] += 1

    @manager.register_event("DialEnd")
    def on_dial_end(_, ev):
        c = calls.get(ev.Linkedid)
        if c is not None:
            c[1] = ev.DialStatus or c[1]

    @manager.register_event("Hangup")
    def on_hangup(_, ev):
        c = calls.get(ev.Linkedid)
        if c is None:
            return
        c[0] -= 1
        if c[0] > 0:
            return
        del calls[ev.Linkedid]
        try:
            t = int(float(ev.Timestamp) * 1000)
        except (TypeError, ValueError, AttributeError):
            t = int(time.time() * 1000)
        http.queue.put_nowait(
            f"id={quote(ev.Linkedid)}&event=end&status={quote(c[1] or 'NOANSWER')}&t={t}")

    sender = asyncio.ensure_future(http.run())
    await manager.connect()
    await asyncio.sleep(args.seconds)
    sender.cancel()
    manager.close()
    print(f"ami connector: sent {http.sent}, failed {http.failed}, calls open {len(calls)}",
          file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
