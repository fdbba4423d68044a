"""mitmproxy addon for lantern's load harness (benches/load/).

The comparison point for lantern's intercept path: mitmproxy terminates the
client's TLS, this addon runs a credential check over the (decoded) request
body and answers 403 itself on a match, so the upstream never sees it;
otherwise the request goes on to the upstream over a fresh TLS connection.

The check is a handful of credential regexes taken from lantern's bundled
secret rules, joined into one alternation: lighter than lantern's inspection
(no JSON extraction, no keyword prefilter over ~150 detectors, no
validators, no policy, no audit), so the comparison flatters mitmproxy.

Option `bench_upstream` (host:port) sends every forwarded request there,
keeping the Host and SNI the client asked for: the harness's `upstream.resolve`.
"""

import re

from mitmproxy import ctx, http

CREDENTIALS = re.compile(
    rb"""
      (?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}
    | -----BEGIN[ A-Z]*PRIVATE\ KEY-----
    | gh[pousr]_[A-Za-z0-9]{36}
    | github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}
    | glpat-[A-Za-z0-9_-]{20}
    | xox[abposr]-[A-Za-z0-9-]{10,}
    | [rs]k_live_[A-Za-z0-9]{24,}
    | AIza[0-9A-Za-z_-]{35}
    | sk-ant-[A-Za-z0-9_-]{20,}
    | sk-(?:proj-)?[A-Za-z0-9_-]{32,}
    | eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}
    """,
    re.VERBOSE,
)

# Must match MITM_BLOCKED in benches/load/client.rs byte for byte.
BLOCKED = (
    b'{"error":{"message":"blocked by the load-harness addon: the prompt contains a credential",'
    b'"type":"invalid_request_error","code":"blocked"}}'
)


class Bench:
    def load(self, loader):
        loader.add_option(
            "bench_upstream", str, "", "host:port every upstream connection goes to"
        )

    def _target(self):
        host, _, port = ctx.options.bench_upstream.rpartition(":")
        return (host, int(port)) if host else None

    def request(self, flow: http.HTTPFlow):
        body = flow.request.get_content(strict=False) or b""
        if CREDENTIALS.search(body):
            flow.response = http.Response.make(
                403, BLOCKED, {"content-type": "application/json"}
            )
            return
        target = self._target()
        if target:
            # Aim the request at the mock upstream but keep its Host; the
            # upstream connection is then reused by every request that follows.
            host_header = flow.request.host_header
            flow.request.host, flow.request.port = target
            flow.request.host_header = host_header

    def server_connect(self, data):
        # TLS to the mock upstream with the name the client asked for.
        if self._target() == data.server.address and data.client.sni:
            data.server.sni = data.client.sni


addons = [Bench()]
