"""Handlers are intercepted at registration: only what can be wrapped is accepted."""

from __future__ import annotations

from typing import Any

import pytest

from trackd.rpc.interceptors import registered_handlers


def test_a_registration_without_named_methods_is_refused_at_start() -> None:
    """A generic handler alone cannot be wrapped per method: refusing it beats serving a
    service without auth, guards or metrics."""

    def generic_only(server: Any) -> None:
        server.add_generic_rpc_handlers((object(),))

    with pytest.raises(RuntimeError, match="cannot be intercepted"):
        registered_handlers(generic_only)


def test_a_generated_registration_yields_its_service_and_handlers() -> None:
    def generated(server: Any) -> None:
        handlers = {"Check": object()}
        server.add_generic_rpc_handlers((object(),))
        server.add_registered_method_handlers("grpc.health.v1.Health", handlers)

    ((service, handlers),) = registered_handlers(generated)
    assert service == "grpc.health.v1.Health" and list(handlers) == ["Check"]
