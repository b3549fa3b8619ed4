"""The switch's log as JSON lines (`pyswitch run --log-json`), for a collector that reads objects, not prose.

Every record becomes one line, one object:

    {"time": "2026-12-01T14:30:00.123Z", "level": "INFO", "logger": "pyswitch.lb", "message": "..."}

and an event (pyswitch/events.py) adds its kind, number and fields, with the event's own time:

    {"time": ..., "level": "INFO", "logger": "pyswitch.events", "message": "event backend_down ...",
     "event": "backend_down", "seq": 7, "fields": {"vip": "web", "backend": "192.0.2.11:8080", ...}}

A traceback (log.exception) goes into "exc" as text, so a line never spans two.  What bypasses logging (the
interpreter's own last words on a crash) is not JSON.
"""
from __future__ import annotations

import datetime
import json
import logging
import sys

TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class JsonLinesFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "event", None)
        when = event["time"] if event else _utc(record.created)
        out = {"time": when, "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if event:
            out.update(event=event["kind"], seq=event["seq"], fields=event["fields"])
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        # default=str: a message argument is already text; this only guards fields a hook forgot to convert.
        return json.dumps(out, default=str)


def _utc(created: float) -> str:
    moment = datetime.datetime.fromtimestamp(created, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def configure(verbose: bool = False, json_lines: bool = False, stream=None) -> None:
    """The root logger for `pyswitch run`: DEBUG with --verbose, else INFO; text or JSON lines, to stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLinesFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
