"""Log output for the long-running commands: text for people, JSON lines for log
pipelines (``--log-format json`` or ``AGENTSTORY_LOG_FORMAT=json``).

One JSON object per line, on stdout: ``ts`` (UTC, ISO 8601 with milliseconds), ``level``,
``logger``, ``message``, ``pid``, and ``exc`` (the formatted traceback) when there is one,
so a multi-line traceback or Faust's tables stay one record for Loki, Elasticsearch or
CloudWatch instead of one record per line.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any

import orjson

__all__ = ["FORMATS", "JsonFormatter", "configure_logging", "faust_logging_config"]

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(doc, default=str).decode()


def configure_logging(level: str, log_format: str = "text") -> None:
    """The root logger for a command (before anything logs)."""
    handler = logging.StreamHandler(sys.stdout if log_format == "json" else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


def faust_logging_config(level: str, log_format: str) -> dict[str, Any] | None:
    """For Faust's Worker (it replaces the root handlers at start): None keeps Faust's
    own text format; JSON gets the formatter above."""
    if log_format != "json":
        return None
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json",
                                 "stream": "ext://sys.stdout", "level": level.upper()}},
        "root": {"level": level.upper(), "handlers": ["default"]},
    }
