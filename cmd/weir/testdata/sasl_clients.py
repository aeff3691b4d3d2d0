"""Produce and consume over SASL with kafka-python and confluent-kafka.

usage: sasl_clients.py LIBRARY BOOTSTRAP PROTOCOL MECHANISM USER PASSWORD CAFILE TOPIC
Prints "ok N" after reading back the N records it produced, or the error
(with "AUTH_FAILED" when authentication was refused) and exits 1.
"""
import sys

lib, bootstrap, protocol, mech, user, password, cafile, topic = sys.argv[1:9]
values = [b"r1", b"r2", b"r3"]


def kafka_python():
    from kafka import KafkaProducer, KafkaConsumer
    from kafka.errors import KafkaError
    common = dict(bootstrap_servers=bootstrap, security_protocol=protocol, sasl_mechanism=mech,
                  sasl_plain_username=user, sasl_plain_password=password, request_timeout_ms=8000,
                  api_version_auto_timeout_ms=8000)
    if protocol == "SASL_SSL":
        common["ssl_cafile"] = cafile
        common["ssl_check_hostname"] = False
    try:
        p = KafkaProducer(max_block_ms=8000, **common)
        for v in values:
            p.send(topic, v).get(timeout=8)
        p.close()
        c = KafkaConsumer(topic, auto_offset_reset="earliest", **common)
        got = []
        for _ in range(40):
            for recs in c.poll(timeout_ms=500).values():
                got.extend(r.value for r in recs)
            if len(got) >= len(values):
                break
        c.close()
    except KafkaError as e:
        name = type(e).__name__
        print(("AUTH_FAILED " if "Authentication" in name or "NoBrokersAvailable" in name else "") + name + ": " + str(e))
        sys.exit(1)
    return got


def confluent():
    from confluent_kafka import Producer, Consumer, KafkaException
    conf = {"bootstrap.servers": bootstrap, "security.protocol": protocol, "sasl.mechanisms": mech,
            "sasl.username": user, "sasl.password": password}
    if protocol == "SASL_SSL":
        conf["ssl.ca.location"] = cafile
    errors = []
    conf["error_cb"] = lambda err: errors.append(err)
    p = Producer(dict(conf, **{"message.timeout.ms": 8000}))
    failed = []
    for v in values:
        p.produce(topic, v, callback=lambda err, msg: failed.append(err) if err else None)
    for _ in range(50):
        if p.flush(0.2) == 0 or any(e.code() == -169 for e in errors):
            break
    if failed or any(e.code() == -169 for e in errors):  # _AUTHENTICATION
        auth = any(e.code() == -169 for e in errors)
        print(("AUTH_FAILED " if auth else "") + str(failed or errors))
        sys.exit(1)
    c = Consumer(dict(conf, **{"group.id": "py-" + topic, "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    got = []
    for _ in range(40):
        m = c.poll(0.5)
        if m is None:
            if len(got) >= len(values):
                break
            continue
        if m.error():
            print(str(m.error()))
            sys.exit(1)
        got.append(m.value())
    c.close()
    return got


got = kafka_python() if lib == "kafka-python" else confluent()
if got != values:
    print("read back %r, want %r" % (got, values))
    sys.exit(1)
print("ok %d" % len(got))
