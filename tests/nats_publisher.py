#!/usr/bin/env python3
"""Publishes CloudEvents to the rotation ledger as a partner service would.

It uses the CloudEvents SDK to build the events and nats-py to publish them
through JetStream on `rotation.in.<partnership>`, each with `Nats-Msg-Id`
set to the event id, alternating structured mode (the event as a JSON body)
and binary mode (attributes in `ce-` headers, the data as the body). Events
are published one after another, each acknowledged by JetStream before the
next, so that their order is the order of the ledger's log.

Prints the id of every event published, one per line, in order.

    python tests/nats_publisher.py --url nats://127.0.0.1:4222 \
        --partnership stoke --people 50
"""

import argparse
import asyncio
import sys
import uuid

import nats

try:  # cloudevents 2.x keeps the 1.x API under `v1`
    from cloudevents.v1.conversion import to_binary, to_structured
    from cloudevents.v1.http import CloudEvent
except ImportError:  # cloudevents 1.x
    from cloudevents.conversion import to_binary, to_structured
    from cloudevents.http import CloudEvent


def cloud_event(partnership, event_type, subject, data):
    attributes = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "urn:service:python-jobcentre",
        "type": f"jobrotation.{event_type}",
        "subject": subject,
        "time": "2025-03-03T09:00:00Z",
        "partnership": partnership,
        "datacontenttype": "application/json",
    }
    return CloudEvent(attributes, data)


def events(partnership, people):
    """A partnership, then jobseekers, each registered and mentored."""
    yield cloud_event(
        partnership,
        "partnership.registered",
        f"partnership/{partnership}",
        {
            "name": "Python Job Rotation",
            "areas": ["E06000021"],
            "members": [{"organisation": "Python Jobcentre", "kind": "jobcentre"}],
        },
    )
    for _ in range(people):
        person = f"person/{uuid.uuid4()}"
        yield cloud_event(
            partnership,
            "participant.registered",
            person,
            {
                "role": "jobseeker",
                "unemployed_since": "2024-06-01",
                "benefit": "universal_credit",
                "profile": {"birth_year": 1984, "sex": "female"},
            },
        )
        yield cloud_event(
            partnership,
            "jobseeker.mentoring_session",
            person,
            {"minutes": 30, "mentor": "employer"},
        )


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--partnership", required=True)
    parser.add_argument("--people", type=int, default=10)
    args = parser.parse_args()

    nc = await nats.connect(args.url)
    js = nc.jetstream()
    subject = f"rotation.in.{args.partnership}"
    for n, event in enumerate(events(args.partnership, args.people)):
        binary = n % 2 == 1
        headers, body = to_binary(event) if binary else to_structured(event)
        headers = {k: str(v) for k, v in headers.items()}
        headers["Nats-Msg-Id"] = event["id"]
        await js.publish(subject, body, headers=headers)
        print(event["id"], flush=True)
    await nc.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as error:  # the test shows what went wrong
        print(f"nats_publisher: {error!r}", file=sys.stderr)
        sys.exit(1)
