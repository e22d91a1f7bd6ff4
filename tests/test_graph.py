"""`net graph`: the topology of a three-namespace lab with a bridge, drawn for the
terminal, as Graphviz (checked by graphviz's own `dot`) and as SVG."""

from __future__ import annotations


import os
import re
import shutil
import subprocess

import pytest

from conftest import json_docs, run_nsshell

LAB = ["new net as ga --no-join", "new net as gb --no-join", "new net as gc --no-join",
       "net veth ga:eth0 gb:pa", "net veth gc:eth0 gb:pc",
       "net bridge gb br0 pa pc --up",
       "net addr ga eth0 10.83.0.1/24", "net addr gc eth0 10.83.0.3/24",
       "net up ga eth0 lo", "net up gc eth0"]
NAMESPACES = ("ga", "gb", "gc")
LINKS = ("ga:eth0", "gb:pa", "gb:pc", "gb:br0", "gc:eth0")


def lab(*more: str, json_: bool = False):
    args = (["--json"] if json_ else []) + ["-c", "; ".join(LAB + list(more))]
    d = run_nsshell(*args)
    if "unknown command" in d.err and "net" in d.err:
        pytest.skip("the net plugin is not installed")
    assert d.rc == 0, d.err
    return d


def test_graph_dot_is_valid_graphviz_naming_every_namespace_and_link():
    if not shutil.which("dot"):
        pytest.skip("graphviz is not installed (scripts/setup.sh installs it)")
    d = lab("net graph ga gb gc --dot")
    text = d.out[d.out.index("graph netgraph {"):]
    for ns in NAMESPACES:
        assert re.search(rf'label="{ns}\\nnet:\[\d+\]"', text), text
    for link in LINKS:
        assert f'"{link}"' in text, (link, text)
    assert '"ga:eth0" -- "gb:pa" [label="veth"]' in text, text
    assert re.search(r'"gb:p?c" -- "gc:eth0" \[label="veth"\]|"gc:eth0" -- "gb:pc"', text), text
    assert '"gb:pa" -- "gb:br0" [style=dashed' in text and '"gb:pc" -- "gb:br0"' in text
    assert "10.83.0.1/24" in text and "10.83.0.3/24" in text
    p = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "<svg" in p.stdout


def test_graph_in_the_terminal_draws_boxes_veths_and_bridge_ports():
    d = lab("net graph")   # default: every network namespace the session named
    out = d.out
    for ns in NAMESPACES:
        assert re.search(rf"^\+- {ns} net:\[\d+\] -+\+$", out, re.M), out
    # every box is closed at its own width
    for line in out.splitlines():
        if line.startswith("|"):
            assert line.endswith("|")
    assert re.search(r"^\| eth0 +veth +\S+ +10\.83\.0\.1/24", out, re.M), out
    assert re.search(r"^\| pa +veth .* master br0", out, re.M), out
    assert re.search(r"^\| br0 +bridge ", out, re.M), out
    assert re.search(r"^  ga:eth0 <-> gb:pa  \(", out, re.M), out
    assert re.search(r"^  (gb:pc <-> gc:eth0|gc:eth0 <-> gb:pc)  \(", out, re.M), out
    assert re.search(r"^  gb:br0 \[pa pc\]$", out, re.M), out


def test_graph_json_has_namespaces_and_edges():
    d = lab("net graph", json_=True)
    g = json_docs(d.out)[-1]
    assert sorted(n["name"] for n in g["namespaces"]) == list(NAMESPACES)
    veths = {frozenset(map(tuple, (e["a"], e["b"]))) for e in g["edges"] if e["kind"] == "veth"}
    assert frozenset({("ga", "eth0"), ("gb", "pa")}) in veths
    assert frozenset({("gc", "eth0"), ("gb", "pc")}) in veths
    ports = {(tuple(e["a"]), tuple(e["b"])) for e in g["edges"] if e["kind"] == "port"}
    assert ports == {(("gb", "pa"), ("gb", "br0")), (("gb", "pc"), ("gb", "br0"))}


def test_a_peer_outside_the_drawing_is_named_by_its_netnsid_or_host():
    d = lab("net graph ga", json_=True)
    g = json_docs(d.out)[-1]
    (edge,) = [e for e in g["edges"] if e["kind"] == "veth"]
    assert edge["a"] == ["ga", "eth0"] and edge["b"][0].startswith("netnsid "), edge


def test_graph_svg_written_through_dot(tmp_path):
    if not shutil.which("dot"):
        pytest.skip("graphviz is not installed")
    out = tmp_path / "lab.svg"
    lab(f"net graph --svg {out}")
    assert out.read_text().lstrip().startswith(("<?xml", "<svg", "<!--"))
    assert "ga" in out.read_text() and "br0" in out.read_text()


def test_graph_svg_without_dot_says_so_in_one_line(tmp_path):
    # a PATH without graphviz's dot (but with what nsshell itself needs)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    out = tmp_path / "x.svg"
    env = {"PATH": str(bindir)}
    d = run_nsshell("-c", "new net as gz --no-join; net graph gz --svg " + str(out), env=env)
    if "unknown command" in d.err:
        pytest.skip("the net plugin is not installed")
    assert d.rc != 0 and d.err.count("\n") == 1, d.err
    assert "dot" in d.err and "not installed" in d.err and "hint:" in d.err, d.err
    assert not out.exists()


def test_graph_svg_refuses_a_symlink(tmp_path):
    if not shutil.which("dot"):
        pytest.skip("graphviz is not installed")
    target = tmp_path / "victim"
    target.write_text("keep")
    link = tmp_path / "l.svg"
    os.symlink(target, link)
    d = run_nsshell("-c", f"new net as gy --no-join; net graph gy --svg {link}")
    assert d.rc != 0 and d.err.count("\n") == 1 and "symbolic link" in d.err, d.err
    assert target.read_text() == "keep"


def test_graph_with_no_named_network_namespace_is_one_line():
    d = run_nsshell("-c", "net graph")
    if "unknown command" in d.err:
        pytest.skip("the net plugin is not installed")
    assert d.rc != 0 and d.err.count("\n") == 1 and "hint:" in d.err, d.err



def test_graph_rootless_in_a_user_namespace_of_ones_own(rootless):
    d = rootless("-c", "new user as lab; map root; new net as ra --no-join; "
                       "new net as rb --no-join; net veth ra:e0 rb:e1 --up; net graph")
    if "unknown command" in d.err:
        pytest.skip("the net plugin is not installed")
    assert d.rc == 0, d.err
    assert re.search(r"^  ra:e0 <-> rb:e1  \(", d.out, re.M), d.out


def test_graph_svg_replaces_only_an_svg_or_an_empty_file(tmp_path):
    if not shutil.which("dot"):
        pytest.skip("graphviz is not installed")
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me\n")
    d = run_nsshell("-c", f"new net as gx --no-join; net graph gx --svg {precious}")
    assert d.rc != 0 and d.err.count("\n") == 1 and "not an SVG" in d.err, d.err
    assert precious.read_text() == "keep me\n"
    d = run_nsshell("-c", "new net as gx --no-join; net graph gx --svg /dev/null")
    assert d.rc != 0 and "not a regular file" in d.err, d.err
    pic = tmp_path / "pic.svg"
    for _ in range(2):                    # made, then replaced
        d = run_nsshell("-c", f"new net as gx --no-join; net graph gx --svg {pic}")
        assert d.rc == 0, d.err
        assert pic.read_text().count("<svg") == 1
