"""Migration tests run against the same real stacks as the proxy tests."""

from tests.proxy.conftest import make_proxy, make_stack  # noqa: F401 (fixtures)
