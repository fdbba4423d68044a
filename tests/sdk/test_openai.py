"""openai SDK through lantern: clean prompts pass verbatim, credentials are
blocked before they leave, file uploads (multipart) pass and are inspected."""

import openai
import pytest

from conftest import AWS_KEY, FAKE_API_KEY
from mock_upstream import REPLY

MODEL = "gpt-4o-mini"


def chat(client, prompt):
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}])


def test_clean_prompt_reaches_upstream_verbatim(openai_client, mock, lantern):
    prompt = "Summarise the plot of Hamlet in one sentence, please."
    mark = lantern.audit_mark()
    completion = chat(openai_client, prompt)

    assert completion.choices[0].message.content == REPLY
    req = mock.only("/v1/chat/completions")
    assert req.host == "api.openai.com"
    assert req.json()["messages"] == [{"role": "user", "content": prompt}]
    assert req.json()["model"] == MODEL
    assert req.headers.get("authorization") == f"Bearer {FAKE_API_KEY}"

    event = lantern.audit_next(mark)
    assert event["app"] == "openai-api", event
    assert event["path"] == "/v1/chat/completions"
    assert event["decision"] in ("log", "allow"), event
    assert event["findings"] == []


def test_aws_key_is_blocked_and_never_sent(openai_client, mock, lantern):
    prompt = f"Why does boto3 reject my key {AWS_KEY}? It worked yesterday."
    mark = lantern.audit_mark()
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(openai_client, prompt)
    err = caught.value

    assert err.status_code == 403
    assert "secret.aws_access_key" in err.message
    assert AWS_KEY not in str(err)
    assert AWS_KEY not in err.response.text
    assert err.body["code"] == "lantern_block", err.body
    assert err.response.headers["x-lantern-decision"] == "block"
    incident = err.response.headers["x-lantern-incident"]
    assert incident and incident in err.message
    assert mock.requests == [], "a blocked request reached the upstream"

    event = lantern.audit_next(mark)
    assert event["decision"] == "block" and event["app"] == "openai-api", event
    assert event["id"] == incident, (event, incident)
    assert [f["detector"] for f in event["findings"]] == ["secret.aws_access_key"], event
    assert AWS_KEY not in (lantern.data_dir / "audit.jsonl").read_text()
    assert AWS_KEY not in lantern.log()


def test_file_upload_passes_with_its_bytes(openai_client, mock):
    content = b"Meeting notes\n- ship the proxy\n- write the SDK tests\n" + bytes(range(256)) * 4
    uploaded = openai_client.files.create(file=("notes.txt", content, "text/plain"), purpose="assistants")

    assert uploaded.id == "file-mock123"
    assert uploaded.filename == "notes.txt"
    req = mock.only("/v1/files")
    assert req.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert content in req.body, "the uploaded bytes did not arrive intact"
    assert b'name="purpose"' in req.body and b"assistants" in req.body


def test_file_upload_with_credentials_is_blocked(openai_client, mock):
    content = f"aws_access_key_id = {AWS_KEY}\nregion = eu-west-1\n".encode()
    with pytest.raises(openai.PermissionDeniedError) as caught:
        openai_client.files.create(file=("config.ini", content, "text/plain"), purpose="assistants")
    assert "secret.aws_access_key" in caught.value.message
    assert AWS_KEY not in caught.value.response.text
    assert mock.requests == []

