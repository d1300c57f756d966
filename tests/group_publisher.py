#!/usr/bin/env python3
"""Publishes a simulated history to a ledger group as a partner service would.

It reads CloudEvents from a JSON Lines file (as `rotation-ledger simulate`
writes them) and publishes each, in order, through JetStream on
`rotation.in.<partnership>` with `Nats-Msg-Id` set to the event id. A
publish that times out or fails (a nats-server killed, a stream electing a
new leader) is sent again with the same id until JetStream acknowledges
it: the ledger answers a repeat `duplicate`, so retrying is always safe.

It listens on `rotation.receipts.>` from before the first publish and
writes every receipt it gets, one JSON object a line, with `received_ms`
(milliseconds since the Unix epoch) added, to `--receipts`. The id of every
event JetStream acknowledged goes to `--published`, one a line, in order,
with the time of its acknowledgement. Both files are flushed line by line,
so that a test can read them while this runs. It runs until every event
is published and `--linger` seconds have passed for the last receipts, or
until it is killed.

    python tests/group_publisher.py --urls nats://127.0.0.1:4222,... \
        --history history.jsonl --receipts receipts.jsonl \
        --published published.txt --rate 40
"""

import argparse
import asyncio
import json
import sys
import time

import nats
from nats.errors import ConnectionClosedError, NoRespondersError, TimeoutError
from nats.js.errors import APIError, NoStreamResponseError


def now_ms():
    return int(time.time() * 1000)


async def publish_until_stored(js, subject, body, event_id, attempts):
    """Publishes one event, retrying with the same id until it is stored."""
    headers = {"Nats-Msg-Id": event_id, "content-type": "application/cloudevents+json"}
    while True:
        attempts[0] += 1
        try:
            return await js.publish(subject, body, headers=headers, timeout=2.0)
        except (
            TimeoutError,
            NoRespondersError,
            NoStreamResponseError,
            ConnectionClosedError,
            APIError,
            asyncio.TimeoutError,
        ):
            # The stream may be electing a leader or the connection moving
            # to another server: the same id makes the retry harmless.
            await asyncio.sleep(0.2)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", required=True, help="comma-separated NATS URLs")
    parser.add_argument("--history", required=True, help="CloudEvents, JSON Lines")
    parser.add_argument("--receipts", required=True, help="where receipts are written")
    parser.add_argument("--published", required=True, help="where published ids are written")
    parser.add_argument("--rate", type=float, default=50.0, help="events a second, at most")
    parser.add_argument("--linger", type=float, default=5.0, help="seconds to listen at the end")
    args = parser.parse_args()

    with open(args.history, encoding="utf-8") as history:
        events = [json.loads(line) for line in history if line.strip()]

    receipts = open(args.receipts, "a", encoding="utf-8")
    published = open(args.published, "a", encoding="utf-8")

    async def on_receipt(message):
        try:
            receipt = json.loads(message.data)
        except ValueError:
            receipt = {"unparsed": message.data.decode("utf-8", "replace")}
        receipt["received_ms"] = now_ms()
        receipt["subject"] = message.subject
        receipts.write(json.dumps(receipt) + "\n")
        receipts.flush()

    nc = await nats.connect(
        servers=args.urls.split(","),
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
        connect_timeout=2,
    )
    await nc.subscribe("rotation.receipts.>", cb=on_receipt)
    await nc.flush()
    js = nc.jetstream()

    attempts = [0]
    start = time.monotonic()
    for n, event in enumerate(events):
        # Paced against the start, so that a stall is made up afterwards.
        due = start + n / args.rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        subject = f"rotation.in.{event['partnership']}"
        body = json.dumps(event, separators=(",", ":")).encode("utf-8")
        await publish_until_stored(js, subject, body, event["id"], attempts)
        published.write(f"{event['id']} {now_ms()}\n")
        published.flush()

    await asyncio.sleep(args.linger)
    await nc.drain()
    receipts.close()
    published.close()
    print(
        f"published {len(events)} events in {attempts[0]} attempts",
        file=sys.stderr,
        flush=True,
    )


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as error:  # the test shows what went wrong
        print(f"group_publisher: {error!r}", file=sys.stderr)
        sys.exit(1)
