"""A project's tests using the nsshell_session fixture (run by tests/test_api.py in a
pytest of its own: the plugin comes from the installed entry point, not a conftest)."""

import os

NAME = os.environ["NSSHELL_EXAMPLE_NAME"]


def test_ping(nsshell_session):
    s = nsshell_session
    s.run("new net as a --no-join; new net as b --no-join")
    s.run("net veth a:v0 b:v0; net addr a v0 10.9.0.1/24; net addr b v0 10.9.0.2/24")
    s.run("net up a v0; net up b v0; join a")
    done = s.run_program(["ping", "-c1", "-W2", "10.9.0.2"])
    assert done.status == 0, done.stderr
    assert "1 received" in done.stdout


def test_persisting_is_undone_after_the_test(nsshell_session):
    s = nsshell_session
    s.new("net+uts+pid", NAME, join=False)
    s.persist(NAME)
    assert os.path.exists(f"/run/netns/{NAME}")
    assert NAME in s.persisted


def test_each_test_has_a_fresh_session(nsshell_session):
    assert nsshell_session.session.sets == {}
    assert {c["name"] for c in nsshell_session.ctx()["context"]} == {"host"}
