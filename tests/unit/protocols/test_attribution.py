"""End users and tags as every codec decodes them, and the AH-Tags header's rules. Pure."""

from __future__ import annotations

import pytest

from gateway.core import MAX_TAGS, GatewayError, merge_tags, parse_tags_header
from gateway.protocols import anthropic_messages
from gateway.protocols.gemini import decode as gemini
from gateway.protocols.openai_chat import decode as chat
from gateway.protocols.openai_responses import decode as responses

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
RESPONSES = {"model": "m", "input": "hi"}
MESSAGES = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


@pytest.mark.parametrize("decode,body", [(chat.decode_request, CHAT), (responses.decode_request, RESPONSES)])
def test_openai_user_and_safety_identifier_name_the_end_user_and_safety_identifier_wins(decode, body):
    assert decode(body).end_user == ""
    assert decode({**body, "user": "u-1"}).end_user == "u-1"
    assert decode({**body, "safety_identifier": "hash-9"}).end_user == "hash-9"
    assert decode({**body, "user": "u-1", "safety_identifier": "hash-9"}).end_user == "hash-9"


@pytest.mark.parametrize("decode,body", [(chat.decode_request, CHAT), (responses.decode_request, RESPONSES)])
@pytest.mark.parametrize("field,value", [("user", 42), ("user", "x" * 257), ("safety_identifier", "x" * 65),
                                         ("safety_identifier", ["a"])])
def test_a_bad_openai_end_user_is_a_400_naming_the_field(decode, body, field, value):
    with pytest.raises(GatewayError) as error:
        decode({**body, field: value})
    assert error.value.status == 400 and error.value.param == field


def test_the_chat_codec_still_forwards_no_user_field_upstream():
    ireq = chat.decode_request({**CHAT, "user": "u-1"})
    assert "user" not in ireq.params and "metadata" not in ireq.params


def test_anthropic_metadata_user_id_is_the_end_user_and_metadata_still_passes_through():
    ireq = anthropic_messages.decode_request({**MESSAGES, "metadata": {"user_id": "cust-7"}})
    assert ireq.end_user == "cust-7" and ireq.params["metadata"] == {"user_id": "cust-7"}
    assert anthropic_messages.decode_request(MESSAGES).end_user == ""
    assert anthropic_messages.decode_request({**MESSAGES, "metadata": {}}).end_user == ""
    with pytest.raises(GatewayError) as error:
        anthropic_messages.decode_request({**MESSAGES, "metadata": {"user_id": "x" * 300}})
    assert error.value.param == "metadata.user_id"


def test_gemini_labels_become_key_value_tags():
    ireq = gemini.decode_request({**GEMINI, "labels": {"team": "search", "env": "prod", "adhoc": ""}}, model="m")
    assert ireq.tags == ("team:search", "env:prod", "adhoc")
    assert ireq.end_user == "" and "labels" not in ireq.params
    assert gemini.decode_request(GEMINI, model="m").tags == ()


@pytest.mark.parametrize("labels", [{"Team": "x"}, {"1team": "x"}, {"team": "Search!"}, {"team": 3}, ["team"],
                                    {f"k{i}": "v" for i in range(MAX_TAGS + 1)}, {"k" * 64: ""}])
def test_bad_gemini_labels_are_a_400(labels):
    with pytest.raises(GatewayError) as error:
        gemini.decode_request({**GEMINI, "labels": labels}, model="m")
    assert error.value.status == 400 and error.value.param.startswith("labels")


def test_the_tags_header_is_a_bounded_comma_separated_list_deduplicated_in_order():
    assert parse_tags_header(None) == ()
    assert parse_tags_header("team:search, env=prod,feature/a,team:search") == ("team:search", "env=prod", "feature/a")
    assert parse_tags_header(",".join(f"t{i}" for i in range(MAX_TAGS))) == tuple(f"t{i}" for i in range(MAX_TAGS))


@pytest.mark.parametrize("value", ["", "a,,b", "has space", "semi;colon", "é", "x" * 129,
                                   ",".join(f"t{i}" for i in range(MAX_TAGS + 1)), "<script>"])
def test_a_bad_tags_header_is_a_400_that_says_the_rules(value):
    with pytest.raises(GatewayError) as error:
        parse_tags_header(value)
    assert error.value.status == 400 and error.value.param == "AH-Tags"
    assert f"at most {MAX_TAGS} tags" in error.value.message


def test_header_tags_and_labels_together_are_bounded():
    assert merge_tags(("a", "b"), ("b", "c")) == ("a", "b", "c")
    with pytest.raises(GatewayError):
        merge_tags(tuple(f"h{i}" for i in range(10)), tuple(f"l{i}" for i in range(10)))
