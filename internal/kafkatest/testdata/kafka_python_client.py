"""kafka-python (Debian python3-kafka) side of the kafkatest suite.

Run with /usr/bin/python3. Subcommands print JSON lines (see kt_common.py):
  metadata  topics and one topic's partitions as the client sees them
  produce   stdin lines as records, one per line
  consume   assigned ranges topic:partition:start:end, from start (seek)
  group     a subscribed group member: --stop commits offsets and exits,
            --end reads from the committed offsets to the ends
  since     a subscribed group member that starts at the first record at or
            after --since-ms (offsets_for_times, then seek), processes
            --count records, commits the offset after the last and exits
  admin     create or delete a topic through KafkaAdminClient
  configs   alter a topic's configs (AlterConfigs) and print them as described
  delete-groups  delete consumer groups (DeleteGroups)
"""

import argparse
import logging
import sys
import time

from kt_common import Deadline, Ranges, emit, fail, parse_offsets, parse_tps, stdin_lines, text

try:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic
    from kafka.structs import OffsetAndMetadata
except ImportError as e:  # the Go side checks this first; keep the reason clear anyway
    fail("import kafka: %s (install Debian package python3-kafka: make test-deps)" % e)

CLIENT_ID = "kafkatest-kafka-python"
# kafka-python waits up to 305s for a consumer request by default; above the
# 10s session timeout is all it needs.
REQUEST_TIMEOUT_MS = 15000


def record(m):
    emit(topic=m.topic, partition=m.partition, offset=m.offset, key=text(m.key), value=text(m.value))


def cmd_metadata(a):
    c = KafkaConsumer(bootstrap_servers=a.bootstrap, client_id=CLIENT_ID, group_id=None,
                      request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        d = Deadline(a.timeout)
        topics, parts = set(), None
        while True:
            topics = c.topics()  # a fresh metadata request for all topics
            parts = c.partitions_for_topic(a.topic)
            if (a.topic in topics and parts) or d.passed():
                break
            time.sleep(0.05)
        emit(topics=sorted(topics), partitions=sorted(parts or []))
    finally:
        c.close()


def cmd_produce(a):
    values = stdin_lines()
    comp = None if a.compression == "none" else a.compression
    d = Deadline(a.timeout)
    # max_block_ms bounds send() waiting for the topic's metadata (60s by
    # default), e.g. for a topic the broker does not auto-create.
    p = KafkaProducer(bootstrap_servers=a.bootstrap, client_id=CLIENT_ID, acks=a.acks,
                      compression_type=comp, linger_ms=5, request_timeout_ms=REQUEST_TIMEOUT_MS,
                      max_block_ms=int(d.left() * 1000))
    try:
        futures = [p.send(a.topic, value=v.encode()) for v in values]
        p.flush(timeout=d.left())
        for i, f in enumerate(futures):
            try:
                f.get(timeout=max(d.left(), 0.1))
            except Exception as e:
                fail("kafka-python produce %s record %d: %r" % (a.compression, i, e))
        emit(produced=len(values))
    finally:
        p.close(timeout=5)


def cmd_consume(a):
    tps = parse_tps(a.tp)
    c = KafkaConsumer(bootstrap_servers=a.bootstrap, client_id=CLIENT_ID, group_id=None,
                      enable_auto_commit=False, request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        c.assign([TopicPartition(t, p) for (t, p) in tps])
        for (t, p), (start, _) in tps.items():
            c.seek(TopicPartition(t, p), start)
        r, d = Ranges(tps), Deadline(a.timeout)
        while not r.done() and not d.passed():
            for msgs in c.poll(timeout_ms=200).values():
                for m in msgs:
                    record(m)
                    r.see(m.topic, m.partition, m.offset)
        if not r.done():
            fail("kafka-python consume: deadline passed; %s" % r.progress())
    finally:
        c.close()


def cmd_group(a):
    stop, end = parse_offsets(a.stop), parse_offsets(a.end)
    c = KafkaConsumer(bootstrap_servers=a.bootstrap, client_id=CLIENT_ID, group_id=a.group,
                      enable_auto_commit=False, auto_offset_reset="earliest",
                      session_timeout_ms=10000, heartbeat_interval_ms=500,
                      request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        c.subscribe([a.topic])
        limits = stop or end
        r = Ranges({(a.topic, p): (0, o) for p, o in limits.items()})
        d = Deadline(a.timeout)
        while not r.done() and not d.passed():
            for msgs in c.poll(timeout_ms=200).values():
                for m in msgs:
                    # In --stop mode, records at or past the stop are fetched
                    # but not processed: the commit below says where to resume.
                    if stop and m.offset >= stop.get(m.partition, 0):
                        continue
                    record(m)
                    r.see(m.topic, m.partition, m.offset)
        if not r.done():
            fail("kafka-python group %s: deadline passed; %s" % (a.group, r.progress()))
        if stop:
            c.commit({TopicPartition(a.topic, p): OffsetAndMetadata(o, "") for p, o in stop.items()})
            emit(committed={str(p): o for p, o in stop.items()})
    finally:
        c.close(autocommit=False)


def cmd_since(a):
    from kafka import ConsumerRebalanceListener

    c = KafkaConsumer(bootstrap_servers=a.bootstrap, client_id=CLIENT_ID, group_id=a.group,
                      enable_auto_commit=False, auto_offset_reset="latest",
                      session_timeout_ms=10000, heartbeat_interval_ms=500,
                      request_timeout_ms=REQUEST_TIMEOUT_MS)

    class BySince(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            pass

        def on_partitions_assigned(self, assigned):
            found = c.offsets_for_times({tp: a.since_ms for tp in assigned})
            for tp in assigned:
                ot = found.get(tp)
                if ot is None:
                    c.seek_to_end(tp)
                else:
                    c.seek(tp, ot.offset)

    try:
        c.subscribe([a.topic], listener=BySince())
        d = Deadline(a.timeout)
        done, last = 0, {}
        while done < a.count and not d.passed():
            for msgs in c.poll(timeout_ms=200).values():
                for m in msgs:
                    if done == a.count:
                        break
                    record(m)
                    last[m.partition] = m.offset + 1
                    done += 1
        if done < a.count:
            fail("kafka-python since %s: deadline passed after %d of %d records" % (a.group, done, a.count))
        c.commit({TopicPartition(a.topic, p): OffsetAndMetadata(o, "") for p, o in last.items()})
        emit(committed={str(p): o for p, o in last.items()})
    finally:
        c.close(autocommit=False)


def cmd_configs(a):
    from kafka.admin import ConfigResource, ConfigResourceType

    ad = KafkaAdminClient(bootstrap_servers=a.bootstrap, client_id=CLIENT_ID,
                          request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        if a.set:
            res = ConfigResource(ConfigResourceType.TOPIC, a.topic, configs=dict(kv.split("=", 1) for kv in a.set))
            resp = ad.alter_configs([res])
            for r in resp.resources:
                if r[0] != 0:
                    fail("kafka-python alter_configs %s: error %d %s" % (a.topic, r[0], r[1]))
        resp = ad.describe_configs([ConfigResource(ConfigResourceType.TOPIC, a.topic)])
        configs = {}
        for r in resp[0].resources:
            if r[0] != 0:
                fail("kafka-python describe_configs %s: error %d %s" % (a.topic, r[0], r[1]))
            for c in r[4]:
                configs[c[0]] = c[1]
        emit(configs=configs)
    finally:
        ad.close()


def cmd_delete_groups(a):
    ad = KafkaAdminClient(bootstrap_servers=a.bootstrap, client_id=CLIENT_ID,
                          request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        for group, err in ad.delete_consumer_groups(a.group):
            emit(group=group, error=err.__name__ if err.errno else None)
    finally:
        ad.close()


def cmd_admin(a):
    ad = KafkaAdminClient(bootstrap_servers=a.bootstrap, client_id=CLIENT_ID,
                          request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        d = Deadline(a.timeout)
        if a.action == "create":
            cfg = dict(kv.split("=", 1) for kv in a.config)
            ad.create_topics([NewTopic(a.topic, a.partitions, 1, topic_configs=cfg)],
                             timeout_ms=int(d.left() * 1000))
        else:
            ad.delete_topics([a.topic], timeout_ms=int(d.left() * 1000))
        want = a.action == "create"
        while True:
            listed = a.topic in ad.list_topics()
            if listed == want or d.passed():
                break
            time.sleep(0.05)
        emit(action=a.action, topic=a.topic, listed=listed)
    finally:
        ad.close()


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
    s = sub.add_parser("consume")
    s.add_argument("--tp", action="append", required=True, help="topic:partition:start:end")
    s = sub.add_parser("group")
    s.add_argument("--group", required=True)
    s.add_argument("--topic", required=True)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--stop", help="p:o,...: process offsets below o, commit o, exit")
    g.add_argument("--end", help="p:o,...: read until offset o-1 of each partition")
    s = sub.add_parser("since")
    s.add_argument("--group", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--since-ms", type=int, required=True)
    s.add_argument("--count", type=int, required=True)
    s = sub.add_parser("configs")
    s.add_argument("--topic", required=True)
    s.add_argument("--set", action="append", default=[], help="key=value")
    s = sub.add_parser("delete-groups")
    s.add_argument("--group", action="append", required=True)
    s = sub.add_parser("admin")
    s.add_argument("action", choices=["create", "delete"])
    s.add_argument("--topic", required=True)
    s.add_argument("--partitions", type=int, default=1)
    s.add_argument("--config", action="append", default=[], help="key=value")
    a = ap.parse_args()
    if a.cmd == "produce" and a.acks != "all":
        a.acks = int(a.acks)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    try:
        globals()["cmd_" + a.cmd.replace("-", "_")](a)
    except SystemExit:
        raise
    except Exception as e:
        fail("kafka-python %s: %r" % (a.cmd, e))


if __name__ == "__main__":
    main()
