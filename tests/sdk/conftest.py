"""Fixtures: a mock upstream for the three AI APIs, the real lantern binary in
front of it, and the official SDK clients configured as a user would."""

from __future__ import annotations

import ssl

import anthropic
import openai
import pytest
import trustme
from google import genai
from google.genai import types as genai_types

from lantern_proc import Lantern, lantern_bin
from mock_upstream import HOSTS, MockUpstream

# Test values lantern's bundled detectors recognise.
AWS_KEY = "AKIAQ3EGRZBXL7MNPT4K"
EMAIL = "jane.doe@acme-corp.com"
FAKE_API_KEY = "test-key-not-a-secret"
SDK_TIMEOUT = 20.0  # seconds, per request

POLICY = """\
default: log
rules:
  - name: no credentials
    when: {detectors: ["secret.*"]}
    action: block
  - name: mask emails for anthropic
    when: {apps: {ids: [anthropic-api]}, detectors: [pii.email]}
    action: redact
  - name: coach personal data
    when: {detectors: ["pii.*"]}
    action: coach
"""


def pytest_sessionstart(session):
    # Fail the whole run at once, clearly, if the binary is missing.
    try:
        lantern_bin()
    except RuntimeError as e:
        pytest.exit(str(e), returncode=2)


@pytest.fixture(scope="session")
def upstream_ca(tmp_path_factory):
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("upstream-ca") / "upstream-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


@pytest.fixture(scope="session")
def mock(upstream_ca):
    server = MockUpstream(upstream_ca[0]).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_mock(mock):
    mock.clear()
    yield


@pytest.fixture(scope="session")
def start_lantern(tmp_path_factory, upstream_ca, mock):
    """Factory: a lantern with the given policy, stopped at session end."""
    started: list[Lantern] = []

    def start(policy: str = POLICY) -> Lantern:
        workdir = tmp_path_factory.mktemp("lantern")
        lantern = Lantern(workdir, policy, upstream_ca[1], mock.port, HOSTS)
        started.append(lantern)
        return lantern.start()

    yield start
    errors = []
    for lantern in started:
        try:
            lantern.stop()
        except RuntimeError as e:  # pragma: no cover - reported below
            errors.append(str(e))
    assert not errors, "\n".join(errors)


@pytest.fixture(scope="session")
def lantern(start_lantern):
    return start_lantern()


def lantern_trust(lantern: Lantern) -> ssl.SSLContext:
    """Trust lantern's CA (httpx 0.28 deprecates `verify=<path str>`)."""
    return ssl.create_default_context(cafile=str(lantern.ca_file))


def make_openai(lantern: Lantern) -> openai.OpenAI:
    # DefaultHttpxClient is the SDK's own httpx client class with its defaults;
    # a plain httpx.Client works for openai too.
    return openai.OpenAI(
        api_key=FAKE_API_KEY,
        http_client=openai.DefaultHttpxClient(proxy=lantern.proxy_url, verify=lantern_trust(lantern)),
        max_retries=0,
        timeout=SDK_TIMEOUT,
    )


def make_anthropic(lantern: Lantern) -> anthropic.Anthropic:
    # anthropic >= 2 is built on httpx2 and rejects an httpx.Client: use its
    # DefaultHttpxClient (or an httpx2.Client).
    return anthropic.Anthropic(
        api_key=FAKE_API_KEY,
        http_client=anthropic.DefaultHttpxClient(proxy=lantern.proxy_url, verify=lantern_trust(lantern)),
        max_retries=0,
        timeout=SDK_TIMEOUT,
    )


def make_genai(lantern: Lantern) -> genai.Client:
    return genai.Client(
        api_key=FAKE_API_KEY,
        http_options=genai_types.HttpOptions(
            timeout=int(SDK_TIMEOUT * 1000),  # milliseconds
            client_args={"proxy": lantern.proxy_url, "verify": lantern_trust(lantern)},
        ),
    )


@pytest.fixture
def openai_client(lantern):
    client = make_openai(lantern)
    yield client
    client.close()


@pytest.fixture
def anthropic_client(lantern):
    client = make_anthropic(lantern)
    yield client
    client.close()


@pytest.fixture
def genai_client(lantern):
    client = make_genai(lantern)
    yield client
    client.close()
