"""The README's zero-code setup: HTTPS_PROXY + SSL_CERT_FILE and each SDK's
default client, no http_client/http_options at all."""

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from conftest import FAKE_API_KEY, SDK_TIMEOUT
from mock_upstream import REPLY

PROMPT = "hello through the environment"


def via_openai():
    with openai.OpenAI(api_key=FAKE_API_KEY, max_retries=0, timeout=SDK_TIMEOUT) as client:
        c = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}])
    return c.choices[0].message.content, "/v1/chat/completions", lambda body: body["messages"][0]["content"]


def via_anthropic():
    with anthropic.Anthropic(api_key=FAKE_API_KEY, max_retries=0, timeout=SDK_TIMEOUT) as client:
        m = client.messages.create(model="claude-test-model", max_tokens=16, messages=[{"role": "user", "content": PROMPT}])
    return m.content[0].text, "/v1/messages", lambda body: body["messages"][0]["content"]


def via_genai():
    # Only a timeout: google-genai's default is none at all.
    options = genai_types.HttpOptions(timeout=int(SDK_TIMEOUT * 1000))
    with genai.Client(api_key=FAKE_API_KEY, http_options=options) as client:
        r = client.models.generate_content(model="gemini-2.0-flash", contents=PROMPT)
    return r.text, "/v1", lambda body: body["contents"][0]["parts"][0]["text"]


@pytest.mark.parametrize("call", [via_openai, via_anthropic, via_genai], ids=["openai", "anthropic", "google-genai"])
def test_https_proxy_and_ssl_cert_file(call, lantern, mock, monkeypatch):
    for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "https_proxy", "SSL_CERT_DIR",
                "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_GEMINI_BASE_URL",
                "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", lantern.proxy_url)
    monkeypatch.setenv("SSL_CERT_FILE", str(lantern.ca_file))

    text, path, prompt_of = call()

    assert text == REPLY
    assert prompt_of(mock.only(path).json()) == PROMPT
