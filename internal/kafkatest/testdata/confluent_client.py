"""confluent-kafka-python (Debian python3-confluent-kafka, librdkafka) side of
the kafkatest suite.

Run with /usr/bin/python3. Subcommands print JSON lines (see kt_common.py):
  metadata  brokers and one topic's partitions from AdminClient.list_topics
  produce   stdin lines as records, one per line (optionally idempotent)
  consume   assigned ranges topic:partition:start:end, from start
  group     a subscribed group member: --stop commits offsets and exits,
            --end reads from the committed offsets to the ends
  member    a long-lived group member for rebalance tests: prints its
            assignment after every change and every record it consumes,
            commits each record synchronously, and leaves the group when
            stdin closes
  since     a subscribed group member that starts at the first record at or
            after --since-ms (offsets_for_times in on_assign), processes
            --count records, commits the offset after the last and exits
  admin     create or delete a topic through AdminClient
  configs   alter a topic's configs (AlterConfigs) and print them as described
"""

import argparse
import sys
import threading
import time

from kt_common import Deadline, Ranges, emit, fail, parse_offsets, parse_tps, stdin_lines, text

try:
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError as e:  # the Go side checks this first; keep the reason clear anyway
    fail("import confluent_kafka: %s (install Debian package python3-confluent-kafka: make test-deps)" % e)

CLIENT_ID = "kafkatest-confluent"


def record(m, **extra):
    emit(topic=m.topic(), partition=m.partition(), offset=m.offset(), key=text(m.key()),
         value=text(m.value()), **extra)


def base_conf(a):
    return {"bootstrap.servers": a.bootstrap, "client.id": CLIENT_ID}


def cmd_metadata(a):
    ad = AdminClient(base_conf(a))
    d = Deadline(a.timeout)
    while True:
        md = ad.list_topics(timeout=max(d.left(), 1))
        t = md.topics.get(a.topic)
        if (t is not None and t.error is None and t.partitions) or d.passed():
            break
        time.sleep(0.05)
    emit(brokers=[{"id": b.id, "host": b.host, "port": b.port} for b in md.brokers.values()],
         topics=sorted(md.topics),
         partitions=sorted(t.partitions) if t is not None else [],
         leaders={str(p.id): p.leader for p in t.partitions.values()} if t is not None else {},
         error=str(t.error) if t is not None and t.error is not None else None)


def cmd_produce(a):
    values = stdin_lines()
    conf = base_conf(a)
    conf.update({"acks": a.acks, "compression.type": a.compression, "linger.ms": 5,
                 "enable.idempotence": a.idempotent})
    errors = []
    conf["error_cb"] = lambda err: errors.append("client error: %s" % err) if err.fatal() else None
    delivered = [0]

    def on_delivery(err, msg):
        if err is not None:
            errors.append("delivery: %s" % err)
        else:
            delivered[0] += 1

    p = Producer(conf)
    d = Deadline(a.timeout)
    for v in values:
        while True:
            try:
                p.produce(a.topic, value=v.encode(), on_delivery=on_delivery)
                break
            except BufferError:
                if d.passed():
                    fail("confluent produce: local queue full until the deadline")
                p.poll(0.1)
    left = p.flush(timeout=d.left())
    if errors:
        fail("confluent produce %s: %d of %d failed, first: %s" % (a.compression, len(errors), len(values), errors[0]))
    if left or delivered[0] != len(values):
        fail("confluent produce %s: %d of %d delivered, %d still queued at the deadline"
             % (a.compression, delivered[0], len(values), left))
    emit(produced=delivered[0])


def poll_loop(c, r, d, keep=None):
    last_err = None
    while not r.done() and not d.passed():
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            last_err = m.error()
            continue
        if keep is not None and not keep(m):
            continue
        record(m)
        r.see(m.topic(), m.partition(), m.offset())
    return last_err


def cmd_consume(a):
    tps = parse_tps(a.tp)
    conf = base_conf(a)
    conf.update({"group.id": "kafkatest-assign-only", "enable.auto.commit": False})
    c = Consumer(conf)
    try:
        c.assign([TopicPartition(t, p, start) for (t, p), (start, _) in tps.items()])
        r = Ranges(tps)
        err = poll_loop(c, r, Deadline(a.timeout))
        if not r.done():
            fail("confluent consume: deadline passed; %s; last error %s" % (r.progress(), err))
    finally:
        c.close()


def group_conf(a):
    conf = base_conf(a)
    conf.update({"group.id": a.group, "enable.auto.commit": False, "auto.offset.reset": "earliest",
                 "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
    return conf


def cmd_group(a):
    stop, end = parse_offsets(a.stop), parse_offsets(a.end)
    c = Consumer(group_conf(a))
    try:
        c.subscribe([a.topic])
        r = Ranges({(a.topic, p): (0, o) for p, o in (stop or end).items()})
        # In --stop mode, records at or past the stop are fetched but not
        # processed: the commit below says where to resume.
        keep = (lambda m: m.offset() < stop.get(m.partition(), 0)) if stop else None
        err = poll_loop(c, r, Deadline(a.timeout), keep)
        if not r.done():
            fail("confluent group %s: deadline passed; %s; last error %s" % (a.group, r.progress(), err))
        if stop:
            c.commit(offsets=[TopicPartition(a.topic, p, o) for p, o in stop.items()], asynchronous=False)
            emit(committed={str(p): o for p, o in stop.items()})
    finally:
        c.close()


def cmd_member(a):
    conf = group_conf(a)
    if a.assignor:
        conf["partition.assignment.strategy"] = a.assignor
    c = Consumer(conf)
    owned = set()

    def on_assign(_, parts):
        owned.update(p.partition for p in parts)
        emit(event="assignment", partitions=sorted(owned))

    def on_revoke(_, parts):
        owned.difference_update(p.partition for p in parts)
        emit(event="assignment", partitions=sorted(owned))

    stop = threading.Event()

    def wait_stdin():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    c.subscribe([a.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    d = Deadline(a.timeout)
    try:
        while not stop.is_set() and not d.passed():
            m = c.poll(0.1)
            if m is None:
                continue
            if m.error():
                emit(event="error", error=str(m.error()))
                continue
            record(m, event="record")
            try:
                c.commit(message=m, asynchronous=False)
            except KafkaException as e:
                emit(event="commit_error", error=str(e))
    finally:
        c.close()
    emit(event="closed")
    if not stop.is_set():
        fail("confluent member %s: ran until the deadline without being stopped" % a.group)


def cmd_since(a):
    c = Consumer(group_conf(a))

    def on_assign(consumer, parts):
        for p in parts:
            p.offset = a.since_ms
        consumer.assign(consumer.offsets_for_times(parts, timeout=10))

    try:
        c.subscribe([a.topic], on_assign=on_assign)
        d = Deadline(a.timeout)
        done, last, err = 0, None, None
        while done < a.count and not d.passed():
            m = c.poll(0.1)
            if m is None:
                continue
            if m.error():
                err = m.error()
                continue
            record(m)
            last = m
            done += 1
        if done < a.count:
            fail("confluent since %s: deadline passed after %d of %d records; last error %s" % (a.group, done, a.count, err))
        c.commit(message=last, asynchronous=False)
        emit(committed={str(last.partition()): last.offset() + 1})
    finally:
        c.close()


def cmd_configs(a):
    from confluent_kafka.admin import ConfigResource

    ad = AdminClient(base_conf(a))
    d = Deadline(a.timeout)
    if a.set:
        res = ConfigResource("topic", a.topic, set_config=dict(kv.split("=", 1) for kv in a.set))
        ad.alter_configs([res], request_timeout=max(d.left(), 1))[res].result(timeout=max(d.left(), 1))
    res = ConfigResource("topic", a.topic)
    described = ad.describe_configs([res], request_timeout=max(d.left(), 1))[res].result(timeout=max(d.left(), 1))
    emit(configs={k: v.value for k, v in described.items()})


def cmd_admin(a):
    ad = AdminClient(base_conf(a))
    d = Deadline(a.timeout)
    if a.action == "create":
        cfg = dict(kv.split("=", 1) for kv in a.config)
        fs = ad.create_topics([NewTopic(a.topic, num_partitions=a.partitions, replication_factor=1, config=cfg)],
                              request_timeout=max(d.left(), 1))
    else:
        fs = ad.delete_topics([a.topic], request_timeout=max(d.left(), 1))
    fs[a.topic].result(timeout=max(d.left(), 1))
    want = a.action == "create"
    while True:
        listed = a.topic in ad.list_topics(timeout=max(d.left(), 1)).topics
        if listed == want or d.passed():
            break
        time.sleep(0.05)
    emit(action=a.action, topic=a.topic, listed=listed)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--timeout", type=float, default=25, help="seconds before giving up")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("metadata")
    s.add_argument("--topic", required=True)
    s = sub.add_parser("produce")
    s.add_argument("--topic", required=True)
    s.add_argument("--compression", default="none", choices=["none", "gzip", "snappy", "lz4", "zstd"])
    s.add_argument("--acks", default="all")
    s.add_argument("--idempotent", action="store_true")
    s = sub.add_parser("consume")
    s.add_argument("--tp", action="append", required=True, help="topic:partition:start:end")
    s = sub.add_parser("group")
    s.add_argument("--group", required=True)
    s.add_argument("--topic", required=True)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--stop", help="p:o,...: process offsets below o, commit o, exit")
    g.add_argument("--end", help="p:o,...: read until offset o-1 of each partition")
    s = sub.add_parser("member")
    s.add_argument("--group", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--assignor", default="", help="partition.assignment.strategy")
    s = sub.add_parser("since")
    s.add_argument("--group", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--since-ms", type=int, required=True)
    s.add_argument("--count", type=int, required=True)
    s = sub.add_parser("configs")
    s.add_argument("--topic", required=True)
    s.add_argument("--set", action="append", default=[], help="key=value")
    s = sub.add_parser("admin")
    s.add_argument("action", choices=["create", "delete"])
    s.add_argument("--topic", required=True)
    s.add_argument("--partitions", type=int, default=1)
    s.add_argument("--config", action="append", default=[], help="key=value")
    a = ap.parse_args()
    try:
        globals()["cmd_" + a.cmd](a)
    except SystemExit:
        raise
    except Exception as e:
        fail("confluent %s: %r" % (a.cmd, e))


if __name__ == "__main__":
    main()
