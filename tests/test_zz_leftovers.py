"""Runs last (file order): the whole test run must leave nothing on the host."""

from conftest import leftovers, remove_store_roots


def test_nothing_left_on_host(start_state):
    remove_store_roots(start_state)
    assert leftovers(start_state) == {}, "the test run left these on the host"
