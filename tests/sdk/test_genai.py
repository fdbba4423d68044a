"""google-genai SDK through lantern."""

import pytest
from google.genai import errors

from conftest import AWS_KEY, FAKE_API_KEY
from mock_upstream import REPLY

MODEL = "gemini-2.0-flash"


def test_clean_prompt_passes(genai_client, mock):
    response = genai_client.models.generate_content(model=MODEL, contents="Name three rivers in France.")
    assert response.text == REPLY
    req = mock.only()
    assert req.host == "generativelanguage.googleapis.com"
    # google-genai 1.x calls v1beta, 3.x calls v1.
    assert req.path in (f"/v1beta/models/{MODEL}:generateContent", f"/v1/models/{MODEL}:generateContent")
    assert req.json()["contents"][0]["parts"][0]["text"] == "Name three rivers in France."
    assert req.headers.get("x-goog-api-key") == FAKE_API_KEY


def test_credentials_blocked(genai_client, mock):
    with pytest.raises(errors.ClientError) as caught:
        genai_client.models.generate_content(model=MODEL, contents=f"Is {AWS_KEY} a valid AWS access key id?")
    err = caught.value

    assert err.code == 403
    assert err.status == "PERMISSION_DENIED"
    assert "secret.aws_access_key" in err.message
    assert "secret.aws_access_key" in str(err)
    assert AWS_KEY not in str(err)
    assert mock.requests == []
