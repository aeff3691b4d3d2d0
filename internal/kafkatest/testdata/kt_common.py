"""Shared helpers for the kafkatest client scripts.

Every script prints one JSON object per line on stdout, which the Go suite
parses, and exits non-zero with a one-line reason on stderr when it fails.
"""

import json
import sys
import time


def emit(**obj):
    """Prints one JSON line and flushes it, so that Go sees it at once."""
    print(json.dumps(obj, sort_keys=True), flush=True)


def fail(msg):
    """Exits 1 with msg on stderr."""
    print(msg, file=sys.stderr, flush=True)
    sys.exit(1)


def text(b):
    """Decodes a key or value for JSON; None stays None."""
    if b is None:
        return None
    if isinstance(b, bytes):
        return b.decode("utf-8", "replace")
    return b


def parse_tps(specs):
    """Parses topic:partition:start:end (end exclusive) into a dict."""
    out = {}
    for s in specs:
        topic, part, start, end = s.rsplit(":", 3)
        out[(topic, int(part))] = (int(start), int(end))
    return out


def parse_offsets(spec):
    """Parses "0:10,1:17" into {0: 10, 1: 17}."""
    out = {}
    if spec:
        for item in spec.split(","):
            p, o = item.split(":")
            out[int(p)] = int(o)
    return out


def stdin_lines():
    """Returns the values to produce: one per stdin line."""
    return [l.rstrip("\n") for l in sys.stdin.read().splitlines()]


class Deadline:
    """A wall-clock budget for a poll loop."""

    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self):
        return max(0.0, self.end - time.monotonic())

    def passed(self):
        return time.monotonic() >= self.end


class Ranges:
    """Tracks consumption of (topic, partition) ranges [start, end).

    A range is done once its record at end-1 has been seen; an empty range
    (start >= end) is done at once.
    """

    def __init__(self, tps):
        self.tps = tps
        self.last = {tp: None for tp in tps}

    def see(self, topic, partition, offset):
        tp = (topic, partition)
        if tp in self.last and (self.last[tp] is None or offset > self.last[tp]):
            self.last[tp] = offset

    def done(self):
        return all(
            start >= end or (self.last[tp] is not None and self.last[tp] >= end - 1)
            for tp, (start, end) in self.tps.items()
        )

    def progress(self):
        return ", ".join(
            "%s/%d at %s of [%d,%d)" % (t, p, self.last[(t, p)], s, e)
            for (t, p), (s, e) in sorted(self.tps.items())
            if not (s >= e or (self.last[(t, p)] is not None and self.last[(t, p)] >= e - 1))
        )
