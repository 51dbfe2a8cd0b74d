"""A Faust worker that drains one topic of frames and reports events/s (bench helper).

Run by bench_framing in a subprocess: ``python -m tests.bench.faust_drain BOOTSTRAP TOPIC
EVENTS APP_ID``. It prints one JSON line with the time from the first message to the
last expected event, so Faust's start-up and group join are not counted.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import faust
import orjson

from streams.events import decode_frame


def main() -> None:
    bootstrap, topic_name, expected, app_id = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
        sys.argv[4]
    asyncio.set_event_loop(asyncio.new_event_loop())
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", store="memory://",
                    web_enabled=False, consumer_auto_offset_reset="earliest", topic_partitions=4,
                    broker_session_timeout=10.0)
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")
    seen = {"events": 0, "messages": 0, "first": 0.0}

    @app.agent(topic)
    async def drain(stream: faust.StreamT) -> None:
        async for value in stream:
            if not seen["first"]:
                seen["first"] = time.perf_counter()
            seen["messages"] += 1
            seen["events"] += len(decode_frame(value).events)
            if seen["events"] >= expected:
                elapsed = time.perf_counter() - seen["first"]
                print(orjson.dumps({"events": seen["events"], "messages": seen["messages"],
                                    "seconds": elapsed}).decode(), flush=True)
                os._exit(0)

    faust.Worker(app, loglevel=os.environ.get("DRAIN_LOG", "ERROR"), quiet=True,
                 redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
