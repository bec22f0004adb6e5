"""kube.create_service: the one call multi-node runs add (the headless Service)."""

from __future__ import annotations

import pytest

from kubetune_operator.kube import ApiError
from tests.operator.test_kube import Server, _api, server  # noqa: F401  (the fixture)


async def test_create_service_posts_and_reads_conflict(server: tuple[Server, str]) -> None:  # noqa: F811
    state, url = server
    api, _ = _api(url, ["token-1"])
    service = {"metadata": {"name": "big-1a2b3c4d"}, "spec": {"clusterIP": "None"}}
    try:
        assert await api.create_service("ml", service) is True
        state.answers.append((409, b'{"message": "already exists"}'))
        assert await api.create_service("ml", service) is False
        state.answers.append((403, b'{"message": "forbidden"}'))
        with pytest.raises(ApiError, match="creating Service ml/big-1a2b3c4d: HTTP 403"):
            await api.create_service("ml", service)
    finally:
        await api.close()
    sent = state.requests[0]
    assert (sent["method"], sent["path"], sent["body"]) == ("POST", "/api/v1/namespaces/ml/services", service)
