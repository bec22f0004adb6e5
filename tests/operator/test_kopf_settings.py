"""The Kopf settings the operator runs with (handlers.configure_kopf)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import kopf
import pytest

from kubetune_operator.handlers import configure_kopf


@pytest.fixture
def levels() -> Iterator[tuple[logging.Logger, logging.Logger]]:
    # Only the root's level set, as `kopf run` sets it (an earlier test may have set others).
    root, objects = logging.getLogger(), logging.getLogger("kopf.objects")
    loggers = [root, logging.getLogger("kopf"), objects]
    saved = [(logger, logger.level, logger.propagate, logger.disabled) for logger in loggers]
    for logger in loggers[1:]:
        logger.setLevel(logging.NOTSET)
        logger.propagate, logger.disabled = True, False
    try:
        yield root, objects
    finally:
        for logger, level, propagate, disabled in saved:
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled


def handler_succeeded_is_logged(body: kopf.Body) -> bool:
    """Whether Kopf's per-event line ("Handler 'pod_event' succeeded.", INFO) gets out."""
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logging.getLogger().addHandler(handler)
    try:
        kopf.LocalObjectLogger(body=body, settings=kopf.OperatorSettings()).info("Handler 'pod_event' succeeded.")
    finally:
        logging.getLogger().removeHandler(handler)
    return bool(seen)


BODY = kopf.Body({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns", "uid": "u"}})


def test_no_line_per_watch_event_at_the_default_level(levels: tuple[logging.Logger, logging.Logger]) -> None:
    root, objects = levels
    root.setLevel(logging.INFO)  # `kopf run` without --verbose (the chart's logLevel: info)
    assert handler_succeeded_is_logged(BODY)
    configure_kopf(kopf.OperatorSettings())
    assert not handler_succeeded_is_logged(BODY)
    assert objects.isEnabledFor(logging.WARNING)  # a handler's failure still shows


def test_verbose_still_shows_every_handler_call(levels: tuple[logging.Logger, logging.Logger]) -> None:
    root, _ = levels
    root.setLevel(logging.DEBUG)  # --verbose / --debug
    configure_kopf(kopf.OperatorSettings())
    assert handler_succeeded_is_logged(BODY)
