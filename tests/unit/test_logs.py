"""Structured logs: JSON lines off a terminal, text on one; the door decision's canonical line."""

from __future__ import annotations

import io
import json
import logging

import pytest

from ruche.logs import CHATTY, JsonFormatter, TextFormatter, configure_logging, wants_json
from ruche.server.access.taps import DecisionRecord, log_decision

TOKEN = "0123456789abcdef" * 4


@pytest.fixture
def captured():
    """A string buffer for `configure_logging(stream=...)`; root logging restored after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    chatty = {name: logging.getLogger(name).level for name in CHATTY}
    yield io.StringIO()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, was in chatty.items():
        logging.getLogger(name).setLevel(was)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def record(**overrides: object) -> DecisionRecord:
    fields: dict[str, object] = {
        "site": "lyon",
        "agent": "door-a",
        "door": "front",
        "token": TOKEN,
        "member_id": 42,
        "allowed": True,
        "reason": "schedule",
        "latency_s": 0.0031234,
    }
    fields.update(overrides)
    return DecisionRecord(**fields)  # type: ignore[arg-type]


class TestFormatChoice:
    """JSON unless stderr is a terminal; RUCHE_LOG_FORMAT forces either; a bad value is said."""

    @pytest.mark.parametrize(
        ("forced", "tty", "expected"),
        [
            (None, False, True),
            (None, True, False),
            ("", True, False),
            ("json", True, True),
            ("JSON ", True, True),
            ("text", False, False),
        ],
    )
    def test_choice(self, forced, tty, expected):
        assert wants_json(forced=forced, tty=tty) is expected

    def test_unknown_format_is_refused_with_the_choices(self):
        with pytest.raises(ValueError, match=r"RUCHE_LOG_FORMAT='xml': use json or text"):
            wants_json(forced="xml", tty=False)

    def test_environment_forces_text(self, captured, monkeypatch):
        monkeypatch.setenv("RUCHE_LOG_FORMAT", "text")
        configure_logging("INFO", stream=captured)
        logging.getLogger("ruche.test").info("hello %s", "there", extra={"site": "lyon"})
        assert captured.getvalue().rstrip().endswith("ruche.test: hello there site=lyon")

    def test_bad_environment_value_is_warned_about_and_json_used_off_a_terminal(
        self, captured, monkeypatch
    ):
        monkeypatch.setenv("RUCHE_LOG_FORMAT", "yaml")
        configure_logging("INFO", stream=captured)
        (warning,) = lines(captured)
        assert warning["level"] == "warning"
        assert "RUCHE_LOG_FORMAT='yaml': use json or text" in str(warning["msg"])

    def test_argument_wins_over_environment(self, captured, monkeypatch):
        monkeypatch.setenv("RUCHE_LOG_FORMAT", "text")
        configure_logging("INFO", json_lines=True, stream=captured)
        logging.getLogger("ruche.test").info("x")
        assert lines(captured)[0]["msg"] == "x"


class TestJsonLines:
    """One object per line: ts, level, logger, msg, then every extra field."""

    def test_fields(self, captured, monkeypatch):
        monkeypatch.delenv("RUCHE_LOG_FORMAT", raising=False)
        configure_logging("DEBUG", stream=captured)  # the buffer is no terminal
        logging.getLogger("ruche.test").warning("%d events", 3, extra={"agent": "a1", "n": 3})
        (entry,) = lines(captured)
        assert set(entry) == {"ts", "level", "logger", "msg", "agent", "n"}
        assert entry["level"] == "warning"
        assert entry["logger"] == "ruche.test"
        assert entry["msg"] == "3 events"
        assert (entry["agent"], entry["n"]) == ("a1", 3)
        assert str(entry["ts"]).endswith("+00:00")

    def test_level_filters(self, captured):
        configure_logging("WARNING", json_lines=True, stream=captured)
        logging.getLogger("ruche.test").info("quiet")
        assert captured.getvalue() == ""

    def test_exception_and_unserialisable_extra(self, captured):
        configure_logging("INFO", json_lines=True, stream=captured)
        error = RuntimeError("boom")
        logging.getLogger("ruche.test").error(
            "failed", exc_info=(RuntimeError, error, None), extra={"obj": object()}
        )
        (entry,) = lines(captured)
        assert "RuntimeError: boom" in str(entry["exc"])
        assert str(entry["obj"]).startswith("<object object")

    def test_extra_cannot_hide_the_fixed_keys(self):
        made = logging.makeLogRecord({"msg": "real", "levelname": "INFO", "name": "n",
                                      "level": "fake", "logger": "fake"})  # fmt: skip
        entry = json.loads(JsonFormatter().format(made))
        assert (entry["msg"], entry["level"], entry["logger"]) == ("real", "info", "n")

    def test_request_logs_of_http_libraries_only_at_debug(self, captured):
        configure_logging("INFO", json_lines=True, stream=captured)
        logging.getLogger("httpx").info("HTTP Request: POST /write")
        logging.getLogger("httpx").warning("retrying")
        assert [entry["msg"] for entry in lines(captured)] == ["retrying"]
        configure_logging("DEBUG", json_lines=True, stream=captured)
        logging.getLogger("httpx").info("HTTP Request: POST /write")
        assert lines(captured)[-1]["msg"] == "HTTP Request: POST /write"

    def test_uvicorn_colour_copy_left_out(self):
        made = logging.makeLogRecord(
            {"msg": "m", "levelname": "INFO", "name": "n", "color_message": "\x1b[36mm"}
        )
        assert "color_message" not in json.loads(JsonFormatter().format(made))

    def test_text_shows_extras_as_pairs(self):
        made = logging.makeLogRecord({"msg": "m", "levelname": "INFO", "name": "n", "k": "v"})
        assert TextFormatter().format(made).endswith("n: m k=v")


class TestDecisionLine:
    """Every door decision is one line with where, who (never the whole token), what, why
    and how long."""

    def test_canonical_fields(self, captured):
        configure_logging("INFO", json_lines=True, stream=captured)
        log_decision(record(allowed=False, reason="badge_revoked", member_id=None))
        (entry,) = lines(captured)
        assert entry["logger"] == "ruche.server.access.taps"
        assert entry["msg"] == "door decision: denied (badge_revoked) at lyon/front"
        expected = {
            "site": "lyon",
            "agent": "door-a",
            "door": "front",
            "badge": "01234567",
            "member_id": None,
            "result": "denied",
            "reason": "badge_revoked",
            "latency_ms": 3.123,
            "source": "online",
        }
        assert {key: entry[key] for key in expected} == expected

    def test_never_the_whole_token(self, captured):
        configure_logging("INFO", json_lines=True, stream=captured)
        log_decision(record())
        configure_logging("INFO", json_lines=False, stream=captured)
        log_decision(record())
        text = captured.getvalue()
        assert text.count("01234567") == 2
        assert TOKEN not in text
        assert TOKEN[:9] not in text

    def test_silent_above_info(self, captured):
        configure_logging("WARNING", json_lines=True, stream=captured)
        log_decision(record())
        assert captured.getvalue() == ""
