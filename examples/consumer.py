#!/usr/bin/env python3
"""Example asr-gateway consumer for RabbitMQ (Python 3.11, aio-pika).

Binds an exclusive queue to the gateway's topic exchange, prints every transcript, drops
redelivered events by their CloudEvents id and, with --stop-after N, sends a `stop` command
once a call has N final transcripts, then waits for that call's asr.session.ended.

    python3 -m pip install -r examples/requirements.txt
    python3 examples/consumer.py                          # every call, until --timeout
    python3 examples/consumer.py --call-id 1795334591.22  # one call, until it ends
    python3 examples/consumer.py --stop-after 3           # stop the first call with 3 finals

stdout: one line per transcript, then a one-line JSON summary (always the last line).
stderr: progress and errors. Exit status: 0 done; 1 error (broker unreachable, command
rejected or undeliverable, call ended too early); 2 timeout; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from dataclasses import dataclass, field

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

DEFAULT_URL = "amqp://guest:guest@127.0.0.1/"


class Failure(Exception):
    """Ends the run with exit status 1 and this message."""


@dataclass
class CallState:
    finals: int = 0
    partials: int = 0
    ended: bool = False


@dataclass
class Consumer:
    args: argparse.Namespace
    channel: aio_pika.abc.AbstractChannel | None = None
    seen_ids: set[str] = field(default_factory=set)
    duplicates: int = 0
    events: int = 0
    foreign: int = 0
    calls: dict[str, CallState] = field(default_factory=dict)
    # The call the summary is about: --call-id, else the first call to reach --stop-after.
    target: str | None = None
    command_id: str | None = None
    stop_sent: bool = False
    stop_ack: str | None = None
    done: asyncio.Future[None] | None = None

    def finish(self, error: Exception | None = None) -> None:
        if self.done is not None and not self.done.done():
            if error is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(error)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        async with message.process(ignore_processed=True):
            try:
                event = json.loads(message.body)
                event_id, kind, data = event["id"], event["type"], event["data"]
                call_id = event["subject"]
            except (ValueError, KeyError, TypeError) as e:
                log(f"skipping a message that is not a CloudEvent ({e}): {message.body[:200]!r}")
                return
            # At-least-once delivery: the same event may come again, always with the same id.
            if event_id in self.seen_ids:
                self.duplicates += 1
                return
            self.seen_ids.add(event_id)
            # Routing words are not unique ("1.2" and "1_2" share one): check the real call id.
            if self.args.call_id is not None and call_id != self.args.call_id:
                self.foreign += 1
                return
            self.events += 1
            try:
                await self.handle(kind, call_id, data)
            except Failure as e:
                self.finish(e)

    async def handle(self, kind: str, call_id: str, data: dict) -> None:
        call = self.calls.setdefault(call_id, CallState())
        if kind == "asr.transcript.partial":
            call.partials += 1
            out(f"{call_id} partial #{data['utterance']}: {data['text']}")
        elif kind == "asr.transcript.final":
            call.finals += 1
            latency = data.get("latency_ms")
            extra = f" ({latency} ms)" if latency is not None else ""
            out(f"{call_id} final #{data['utterance']}: {data['text']}{extra}")
            stop_after = self.args.stop_after
            if stop_after is not None and self.command_id is None and call.finals >= stop_after:
                self.target = call_id
                await self.send_stop(call_id)
        elif kind == "asr.session.ended":
            call.ended = True
            log(f"{call_id}: session ended ({data['cause']}, {call.finals} finals)")
            if call_id == self.target:
                if self.args.stop_after is not None and self.command_id is None:
                    raise Failure(
                        f"call {call_id} ended after {call.finals} final transcripts, "
                        f"before --stop-after {self.args.stop_after}"
                    )
                self.finish()
        elif kind in ("asr.command.accepted", "asr.command.rejected"):
            if self.command_id is not None and data.get("command_id") == self.command_id:
                self.stop_ack = "accepted" if kind == "asr.command.accepted" else "rejected"
                log(f"stop command {self.stop_ack}" + (f": {data['reason']}" if "reason" in data else ""))
                if self.stop_ack == "rejected" and not call.ended:
                    raise Failure(f"stop command for {call_id} rejected: {data.get('reason')}")
        elif kind == "asr.error":
            log(f"{call_id}: asr.error {data['code']}: {data['message']}")

    async def send_stop(self, call_id: str) -> None:
        assert self.channel is not None
        self.command_id = f"consumer-{uuid.uuid4()}"
        body = {"command": "stop", "command_id": self.command_id, "call_id": call_id}
        message = aio_pika.Message(
            json.dumps(body).encode(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=self.command_id,
        )
        queue = self.args.commands_queue
        try:
            # Default exchange: the routing key is the queue name. `mandatory` plus
            # on_return_raises turns "no such queue" into an error instead of a silent drop.
            await self.channel.default_exchange.publish(message, routing_key=queue, mandatory=True)
        except aio_pika.exceptions.PublishError as e:
            raise Failure(
                f"could not deliver the stop command to queue {queue!r} ({e}); "
                "is the gateway consuming commands from RabbitMQ?"
            ) from e
        self.stop_sent = True
        log(f"{call_id}: {self.calls[call_id].finals} finals; sent stop {self.command_id}")

    def summary(self) -> dict:
        target = self.calls.get(self.target) if self.target else None
        return {
            "call_id": self.target,
            "finals": target.finals if target else sum(c.finals for c in self.calls.values()),
            "finals_total": sum(c.finals for c in self.calls.values()),
            "partials_total": sum(c.partials for c in self.calls.values()),
            "events": self.events,
            "duplicates_skipped": self.duplicates,
            "other_calls_skipped": self.foreign,
            "stop_sent": self.stop_sent,
            "command_id": self.command_id,
            "stop_ack": self.stop_ack,
            "session_ended": bool(target and target.ended),
        }


def out(line: str) -> None:
    print(line, flush=True)


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def routing_word(call_id: str) -> str:
    """The call id as the gateway writes it into routing keys: every '.' becomes '_'."""
    return call_id.replace(".", "_")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--url",
        default=os.environ.get("AMQP_URL", DEFAULT_URL),
        help=f"AMQP URL (default: $AMQP_URL or {DEFAULT_URL})",
    )
    p.add_argument("--exchange", default="asr.events", help="events exchange ([events.rabbitmq] exchange)")
    p.add_argument("--routing-prefix", default="asr", help="[events.rabbitmq] routing_prefix")
    p.add_argument("--commands-queue", default="asr.commands", help="[commands.rabbitmq] queue")
    p.add_argument("--call-id", help="only this call (binds asr.<call>.#); exit when it ends")
    p.add_argument("--stop-after", type=int, metavar="N", help="send `stop` once a call has N final transcripts")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before giving up (0 = none; default 60)")
    args = p.parse_args(argv)
    if args.stop_after is not None and args.stop_after < 1:
        p.error("--stop-after must be at least 1")
    return args


async def run(args: argparse.Namespace) -> int:
    consumer = Consumer(args, target=args.call_id)
    consumer.done = asyncio.get_running_loop().create_future()
    try:
        connection = await asyncio.wait_for(aio_pika.connect(args.url), timeout=10)
    except Exception as e:  # noqa: BLE001 - any failure here means "cannot reach the broker"
        log(f"error: cannot connect to RabbitMQ at {args.url}: {e or type(e).__name__}")
        out(json.dumps(consumer.summary()))
        return 1
    exit_code = 0
    try:
        async with connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            consumer.channel = channel
            await channel.set_qos(prefetch_count=256)
            # Same declaration as the gateway's (durable topic): safe whoever comes first.
            exchange = await channel.declare_exchange(args.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
            queue = await channel.declare_queue("", exclusive=True)
            prefix = f"{args.routing_prefix}." if args.routing_prefix else ""
            binding = f"{prefix}{routing_word(args.call_id)}.#" if args.call_id else f"{prefix}#"
            await queue.bind(exchange, routing_key=binding)
            await queue.consume(consumer.on_message)
            log(f"consuming {args.exchange} with binding {binding!r}")
            try:
                await asyncio.wait_for(asyncio.shield(consumer.done), timeout=args.timeout or None)
            except asyncio.TimeoutError:
                exit_code = 2
                log(f"error: timeout after {args.timeout:g} s: {waiting_for(consumer)}")
            except Failure as e:
                exit_code = 1
                log(f"error: {e}")
    except aio_pika.exceptions.AMQPError as e:
        exit_code = 1
        log(f"error: RabbitMQ: {e}")
    out(json.dumps(consumer.summary()))
    return exit_code


def waiting_for(c: Consumer) -> str:
    args = c.args
    if args.stop_after is not None and c.command_id is None:
        best = max((s.finals for s in c.calls.values()), default=0)
        scope = f"call {args.call_id}" if args.call_id else "the call with the most"
        return f"{scope} has {best} of {args.stop_after} final transcripts; no stop sent"
    if c.target is not None:
        return f"asr.session.ended of call {c.target} not received"
    return "ran until the timeout (no --call-id or --stop-after)"


def main() -> int:
    args = parse_args(sys.argv[1:])
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
