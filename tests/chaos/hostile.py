"""Publishes (or drains) AMQP messages that lapin cannot produce, for scenario 11.

lapin keeps short strings and long strings as Rust Strings, so it cannot send a
message_id that is not UTF-8 or a header whose long-string value is not UTF-8; RabbitMQ
accepts and delivers both. pika writes bytes as given. Reads one JSON job on stdin:

  {"mode": "publish", "url": "amqp://...", "queue": "q",
   "messages": [{"id": HEX|null, "headers": {NAME: {"S": HEX} | {"str": TEXT}},
                 "body": HEX}]}
      -> prints {"confirmed": N, "failed": [INDEX, ...]}
  {"mode": "drain", "url": "amqp://...", "queue": "q.dead"}
      -> prints [{"id": HEX|null, "tag": TEXT|null, "body_len": N}, ...]

Publishing is mandatory and confirmed: a nack or a return counts as failed.
"""

import json
import sys

import pika
import pika.data


class RawLongString(bytes):
    """A header value sent as an AMQP long string ('S') with its bytes unchanged."""


_encode_value = pika.data.encode_value


def _encode_raw(pieces, value):
    # pika encodes bytes as a byte array ('x') and str as UTF-8: neither is hostile.
    if isinstance(value, RawLongString):
        pieces.append(b"S" + len(value).to_bytes(4, "big"))
        pieces.append(bytes(value))
        return 5 + len(value)
    return _encode_value(pieces, value)


pika.data.encode_value = _encode_raw


def header_value(spec):
    if "S" in spec:
        return RawLongString(bytes.fromhex(spec["S"]))
    return spec["str"]


def publish(channel, queue, messages):
    channel.confirm_delivery()
    failed = []
    for index, message in enumerate(messages):
        props = pika.BasicProperties(
            delivery_mode=2,
            content_type="application/json",
            message_id=bytes.fromhex(message["id"]) if message.get("id") else None,
            headers={k: header_value(v) for k, v in message.get("headers", {}).items()}
            or None,
        )
        try:
            channel.basic_publish(
                "", queue, bytes.fromhex(message["body"]), props, mandatory=True
            )
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError):
            failed.append(index)
    return {"confirmed": len(messages) - len(failed), "failed": failed}


def as_hex(value):
    if value is None:
        return None
    return (value if isinstance(value, bytes) else value.encode("utf-8")).hex()


def drain(channel, queue):
    out = []
    while True:
        method, props, body = channel.basic_get(queue)
        if method is None:
            return out
        tag = (props.headers or {}).get("x-chaos-tag")
        if isinstance(tag, bytes):
            tag = tag.decode("utf-8", "replace")
        out.append({"id": as_hex(props.message_id), "tag": tag, "body_len": len(body)})
        channel.basic_ack(method.delivery_tag)


def main():
    job = json.load(sys.stdin)
    params = pika.URLParameters(job["url"])
    params.socket_timeout = 10
    params.blocked_connection_timeout = 30
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    if job["mode"] == "publish":
        result = publish(channel, job["queue"], job["messages"])
    else:
        result = drain(channel, job["queue"])
    connection.close()
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
