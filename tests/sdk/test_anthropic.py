"""anthropic SDK through lantern: block with the coaching text, redact emails."""

import anthropic
import pytest

from conftest import AWS_KEY, EMAIL, FAKE_API_KEY
from mock_upstream import REPLY

MODEL = "claude-test-model"  # any name: the mock answers, and the SDK warns on no deprecation


def ask(client, prompt):
    return client.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": prompt}])


def test_clean_prompt_passes(anthropic_client, mock):
    message = ask(anthropic_client, "Write a haiku about proxies.")
    assert message.content[0].text == REPLY
    req = mock.only("/v1/messages")
    assert req.host == "api.anthropic.com"
    assert req.json()["messages"][0]["content"] == "Write a haiku about proxies."
    # anthropic 1.x sends x-api-key, 2.x an Authorization bearer: either way it arrives.
    assert FAKE_API_KEY in (req.headers.get("x-api-key"), req.headers.get("authorization", "").removeprefix("Bearer "))


def test_credentials_blocked_with_coaching_text(anthropic_client, mock):
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        ask(anthropic_client, f"Here is my AWS key {AWS_KEY}, can you check its permissions?")
    err = caught.value

    assert err.status_code == 403
    assert err.body["type"] == "error", err.body
    assert err.body["error"]["type"] == "permission_error"
    text = err.body["error"]["message"]
    assert "lantern" in text and "secret.aws_access_key" in text, text
    assert text in str(err)
    assert AWS_KEY not in str(err) and AWS_KEY not in err.response.text
    assert err.response.headers["x-lantern-decision"] == "block"
    assert err.response.headers.get("x-lantern-incident")
    assert mock.requests == []


def test_email_is_redacted_before_forwarding(anthropic_client, mock, lantern):
    prompt = f"Draft a polite reply to {EMAIL} about the invoice."
    mark = lantern.audit_mark()
    message = ask(anthropic_client, prompt)

    assert message.content[0].text == REPLY
    req = mock.only("/v1/messages")
    assert EMAIL not in req.text
    sent = req.json()["messages"][0]["content"]  # still valid JSON with a correct length
    assert sent == "Draft a polite reply to [REDACTED:pii.email] about the invoice.", sent
    assert int(req.headers["content-length"]) == len(req.body)

    event = lantern.audit_next(mark)
    assert event["decision"] == "redact", event
    assert EMAIL not in (lantern.data_dir / "audit.jsonl").read_text()
