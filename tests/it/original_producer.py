"""The original project's producer, as a user of it would run it against ppctl.

Declares the queue as the original's bin/amqp_setup.py does (a plain durable classic
queue, no arguments), then publishes each demand as its task_producer does: the
WorkDemand body {"add_up_to": N, "done": false}, delivery_mode 2, and no message_id
(amiquip's and pika's defaults). Confirms are on only so the test knows every message is
in the queue; they change nothing in the messages. Reads one JSON job on stdin:

  {"url": "amqp://...", "queue": "q", "demands": [2, 5, ...], "raw": ["not json", ...]}
      -> prints {"published": N}
"""

import json
import sys

import pika


def main():
    job = json.load(sys.stdin)
    params = pika.URLParameters(job["url"])
    params.socket_timeout = 10
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.queue_declare(queue=job["queue"], durable=True)
    channel.confirm_delivery()
    bodies = [json.dumps({"add_up_to": n, "done": False}) for n in job["demands"]]
    bodies += job.get("raw", [])
    for body in bodies:
        channel.basic_publish(
            exchange="",
            routing_key=job["queue"],
            body=body,
            properties=pika.BasicProperties(delivery_mode=2),
        )
    connection.close()
    json.dump({"published": len(bodies)}, sys.stdout)


if __name__ == "__main__":
    main()
