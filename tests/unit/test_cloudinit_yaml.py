"""YAML as coreos-cloudinit's Go library types it, with lines."""

from __future__ import annotations

import math

import pytest

from provisioner.guest.cloudinit.yamlnodes import Kind, Node, YamlSyntaxError, parse, resolve_plain


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("~", Kind.NULL, None),
        ("null", Kind.NULL, None),
        ("yes", Kind.BOOL, True),
        ("Y", Kind.BOOL, True),
        ("on", Kind.BOOL, True),
        ("off", Kind.BOOL, False),
        ("n", Kind.BOOL, False),
        ("FALSE", Kind.BOOL, False),
        ("0", Kind.INT, 0),
        ("42", Kind.INT, 42),
        ("-7", Kind.INT, -7),
        ("+7", Kind.INT, 7),
        ("0744", Kind.INT, 0o744),
        ("0x1F", Kind.INT, 31),
        ("1_000", Kind.INT, 1000),
        ("0b101", Kind.INT, 5),
        ("08", Kind.FLOAT, 8.0),
        ("0.5", Kind.FLOAT, 0.5),
        (".5", Kind.FLOAT, 0.5),
        ("1e3", Kind.FLOAT, 1000.0),
        ("-.inf", Kind.FLOAT, -math.inf),
        ("12:30", Kind.STRING, "12:30"),
        ("1.2.3", Kind.STRING, "1.2.3"),
        ("2001-12-14", Kind.STRING, "2001-12-14"),
        ("http://x", Kind.STRING, "http://x"),
        ("Yess", Kind.STRING, "Yess"),
    ],
)
def test_plain_scalars_are_typed_like_go_yaml(text: str, kind: Kind, value: object) -> None:
    assert resolve_plain(text) == (kind, value)


def entry(node: Node | None, key: str) -> tuple[int, Node]:
    assert node is not None
    found = next(item for item in node.entries if item.key == key)
    return found.line, found.value


@pytest.mark.unit
def test_parse_keeps_lines_text_and_quoting() -> None:
    root = parse(
        "#cloud-config\na: 0644\nb: '0644'\nc: !!str 5\nd: off\nlist:\n  - x\n  -\n    y: 1\n"
    )
    assert root is not None
    assert root.kind is Kind.MAP
    line, a = entry(root, "a")
    assert (line, a.kind, a.value, a.text) == (2, Kind.INT, 0o644, "0644")
    assert entry(root, "b")[1].kind is Kind.STRING
    assert entry(root, "c")[1].kind is Kind.STRING
    assert (entry(root, "d")[1].kind, entry(root, "d")[1].text) == (Kind.BOOL, "off")
    line, items = entry(root, "list")
    assert line == 6
    assert [item.line for item in items.items] == [7, 9]


@pytest.mark.unit
def test_binary_scalars_decode_to_bytes() -> None:
    _, node = entry(parse("a: !!binary aGVs\n  bG8K\n"), "a")
    assert (node.kind, node.value) == (Kind.STRING, b"hello\n")


@pytest.mark.unit
def test_literal_blocks_know_the_line_of_their_first_content_line() -> None:
    _, literal = entry(parse("#cloud-config\nk: |\n  one\n  two\n"), "k")
    _, folded = entry(parse("#cloud-config\nk: >\n  one\n"), "k")
    assert (literal.line, literal.body_line, literal.text) == (2, 3, "one\ntwo\n")
    assert folded.body_line == 0


@pytest.mark.unit
def test_empty_documents_and_only_the_first_document() -> None:
    assert parse("") is None
    assert parse("# only a comment\n") is None
    root = parse("a: 1\n---\nb: [unclosed\n")
    assert root is not None
    assert [item.key for item in root.entries] == ["a"]


@pytest.mark.unit
def test_syntax_errors_carry_the_reported_line() -> None:
    with pytest.raises(YamlSyntaxError) as caught:
        parse("#hello\na:\na")
    assert (caught.value.line, caught.value.message) == (3, "could not find expected ':'")
    with pytest.raises(YamlSyntaxError) as control:
        parse("a: \x01")
    assert control.value.line == 1
    assert "control characters are not allowed" in control.value.message
