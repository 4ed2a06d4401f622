"""The providers' one SSE reader (gateway.providers.sse) against the spec's reading of an event stream,
with every line ending and chunks cut anywhere."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.providers.sse import SSEDecoder


def decode(*chunks: bytes) -> list[bytes]:
    decoder = SSEDecoder()
    return [data for chunk in chunks for data in decoder.feed(chunk)]


def spec_reading(stream: bytes) -> list[bytes]:
    """The spec's algorithm, line by line over the whole stream, as the reference."""
    if stream.startswith(b"\xef\xbb\xbf"):
        stream = stream[3:]
    *lines, _unfinished = re.split(rb"\r\n|\r|\n", stream)
    events, data = [], None
    for line in lines:
        if not line:
            if data is not None:
                events.append(b"\n".join(data))
            data = None
            continue
        if line.startswith(b":"):
            continue
        name, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data = [*(data or ()), value]
    return events


def test_one_data_line_per_event_with_or_without_the_space():
    assert decode(b'data: {"a":1}\n\ndata:{"b":2}\n\n') == [b'{"a":1}', b'{"b":2}']


def test_every_line_ending_ends_lines_and_a_blank_line_ends_the_event():
    for end in (b"\n", b"\r\n", b"\r"):
        stream = b"event: ping" + end + b"data: x" + end + end + b"data: y" + end + end
        assert decode(stream) == [b"x", b"y"], end


def test_data_lines_join_with_a_newline_and_other_fields_and_comments_are_read_past():
    stream = b": keep-alive\n\nid: 7\nevent: e\ndata: one\nretry: 10\ndata:two\ndata\ndatum: no\n\n"
    assert decode(stream) == [b"one\ntwo\n"]


def test_an_event_without_data_is_not_dispatched_and_an_unfinished_one_waits():
    decoder = SSEDecoder()
    assert decoder.feed(b"event: x\n\n: c\n\ndata: a") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\n") == [b"a"]


def test_a_crlf_split_between_its_cr_and_lf_ends_one_line_not_two():
    assert decode(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == [b"a\nb"]
    assert decode(b"data: a\r", b"\r") == [b"a"]
    assert decode(b"data: a\r", b"", b"\n", b"\r\n") == [b"a"]


def test_a_leading_byte_order_mark_is_skipped_even_split():
    assert decode(b"\xef", b"\xbb", b"\xbfdata: a\n\n") == [b"a"]
    assert decode(b"\xef\xbb\xbfdata: a\n\n\xef\xbb\xbfdata: b\n\n") == [b"a"]  # only the first is a mark


_values = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=12)
_line = st.one_of(
    st.tuples(st.just("data"), _values),
    st.tuples(st.sampled_from(["event", "id", "retry", "dat", "datax"]), _values),
    st.tuples(st.just(":"), _values),  # a comment
    st.tuples(st.just("data-bare"), st.just("")),  # `data` with no colon
)
_events = st.lists(st.lists(_line, max_size=4), max_size=8)


@st.composite
def _streams(draw):
    ends = st.sampled_from([b"\n", b"\r\n", b"\r"])
    out = b"\xef\xbb\xbf" if draw(st.booleans()) else b""
    for event in draw(_events):
        for name, value in event:
            if name == ":":
                line = b":" + value.encode()
            elif name == "data-bare":
                line = b"data"
            else:
                line = name.encode() + (b": " if draw(st.booleans()) else b":") + value.encode()
            out += line + draw(ends)
        out += draw(ends)
    if draw(st.booleans()):
        out += b"data: unfinished"
    cuts = sorted(draw(st.lists(st.integers(0, len(out)), max_size=12)))
    return out, [out[a:b] for a, b in zip([0, *cuts], [*cuts, len(out)])]


@settings(max_examples=500, deadline=None)
@given(_streams())
def test_any_stream_cut_anywhere_reads_as_the_spec_reads_it_whole(case):
    stream, chunks = case
    assert decode(*chunks) == spec_reading(stream) == decode(stream)
