"""Coach: the SDK error carries an acknowledgement link; a justification posted
there lets the same request through, for that app only."""

import re

import httpx
import openai
import pytest
from google.genai import errors

from conftest import EMAIL, make_genai, make_openai
from mock_upstream import REPLY

ACK_LINK = re.compile(r"https?://[^\s\"'<>]+/ack/[A-Za-z0-9_\-.~%=]+")


@pytest.fixture
def coach_lantern(start_lantern):
    # Grants live in lantern's memory: a fresh instance keeps this test independent.
    lantern = start_lantern()
    yield lantern
    lantern.stop()


def chat(client, prompt):
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}])


def test_coach_ack_then_retry_passes(coach_lantern, mock):
    lantern = coach_lantern
    prompt = f"Please write a welcome email to our new colleague {EMAIL}."
    client = make_openai(lantern)
    gemini = make_genai(lantern)
    try:
        with pytest.raises(openai.PermissionDeniedError) as caught:
            chat(client, prompt)
        err = caught.value
        assert err.response.headers["x-lantern-decision"] == "coach"
        assert err.body["code"] == "lantern_coach", err.body
        assert "pii.email" in err.message
        assert EMAIL not in err.response.text
        assert mock.requests == []

        found = ACK_LINK.search(err.message)
        assert found, f"no acknowledgement link in: {err.message}"
        link = found.group(0).rstrip(".,;)")
        assert link.startswith(f"{lantern.admin_url}/ack/"), (link, lantern.admin_url)

        # A forged token is refused and grants nothing. (Own connection: see
        # test_refused_ack_post_keeps_connection_usable.)
        forged = httpx.post(link[:-4] + "AAAA", data={"justification": "let me"}, trust_env=False, timeout=10)
        assert forged.status_code == 403, forged

        with httpx.Client(trust_env=False, timeout=10, follow_redirects=False) as web:
            page = web.get(link)
            assert page.status_code == 200
            assert "<form" in page.text.lower() and "justification" in page.text
            assert EMAIL not in page.text

            # Still coached: only a submitted justification grants.
            with pytest.raises(openai.PermissionDeniedError):
                chat(client, prompt)

            done = web.post(link, data={"justification": "onboarding mail for a new hire, approved by HR"})
            assert 200 <= done.status_code < 400, (done.status_code, done.text[:500])

        mark = lantern.audit_mark()
        completion = chat(client, prompt)
        assert completion.choices[0].message.content == REPLY
        assert mock.only("/v1/chat/completions").json()["messages"][0]["content"] == prompt
        retry = lantern.audit_next(mark)
        assert retry["decision"] == "log" and retry["app"] == "openai-api", retry

        # The grant is for this user x app x family: Gemini is still coached.
        mock.clear()
        with pytest.raises(errors.ClientError) as gem:
            gemini.models.generate_content(model="gemini-2.0-flash", contents=prompt)
        assert gem.value.code == 403 and "pii.email" in gem.value.message
        assert "/ack/" in gem.value.message
        assert mock.requests == []
    finally:
        client.close()
        gemini.close()


# Regression: a refused /ack POST used to be answered before its body was
# read, which could drop the keep-alive connection under the client.
def test_refused_ack_post_keeps_connection_usable(lantern):
    with httpx.Client(trust_env=False, timeout=10) as web:
        for _ in range(30):
            refused = web.post(f"{lantern.admin_url}/ack/not-a-token", data={"justification": "x" * 64})
            assert refused.status_code == 403
            if refused.headers.get("connection", "").lower() == "close":
                continue  # the server said so: fine
            assert web.get(f"{lantern.admin_url}/healthz").status_code == 200
