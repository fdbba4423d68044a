//! Request checks on the parsed request: a `Host` that disagrees with
//! where the request goes. (Framing and line endings are checked on the
//! raw bytes, in [`super::strict`].)
//!
//! Refused here:
//! - no `Host` in an HTTP/1.1 request, or more than one (RFC 9112 §3.2);
//! - a `Host` or `:authority` naming another host than the one lantern
//!   forwards to: an absolute-form URI whose `Host` differs, or a request
//!   inside an intercepted tunnel for a host other than the `CONNECT`
//!   target (domain fronting; 421 tells the client to use a new connection).

use http::header;
use http::request::Parts;
use http::{StatusCode, Version};

use super::forward::Scheme;
use super::Target;

/// Why a request was refused, and the status the client gets.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: String,
}

impl Refusal {
    fn bad_request(reason: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            reason: reason.into(),
        }
    }
}

/// Checks a request bound for `target`. `tunnelled` is true inside an
/// intercepted `CONNECT`, where the tunnel fixed the destination.
pub fn check(
    parts: &Parts,
    scheme: Scheme,
    target: &Target,
    tunnelled: bool,
) -> Result<(), Refusal> {
    let hosts = parts.headers.get_all(header::HOST).iter().count();
    if hosts > 1 {
        return Err(Refusal::bad_request("more than one Host header"));
    }
    if hosts == 0 && parts.version == Version::HTTP_11 {
        return Err(Refusal::bad_request(
            "an HTTP/1.1 request needs a Host header",
        ));
    }
    // Userinfo (`user@`) is not part of where a request goes.
    let uri_authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().rsplit_once('@').map_or(a.as_str(), |(_, at)| at));
    let named = uri_authority.into_iter().chain(
        parts
            .headers
            .get(header::HOST)
            .map(|h| h.to_str().unwrap_or("\u{fffd}")),
    );
    for authority in named {
        if !names(authority, scheme, target) {
            let printable: String = authority.chars().take(256).collect();
            return Err(if tunnelled {
                Refusal {
                    status: StatusCode::MISDIRECTED_REQUEST,
                    reason: format!(
                        "this connection is for {target}, not {printable:?}; open a new connection"
                    ),
                }
            } else {
                Refusal::bad_request(format!(
                    "the Host header {printable:?} does not match the request target {target}"
                ))
            });
        }
    }
    Ok(())
}

/// True when `authority` (`host[:port]`, IPv6 bracketed) is `target`.
fn names(authority: &str, scheme: Scheme, target: &Target) -> bool {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, port)) => match port.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return false,
            },
            None => return false,
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        None | Some("") => scheme.default_port(),
        Some(p) => match p.parse() {
            Ok(p) => p,
            Err(_) => return false,
        },
    };
    port == target.port
        && host
            .trim_end_matches('.')
            .eq_ignore_ascii_case(&target.host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(version: Version, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().version(version).uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn target(s: &str) -> Target {
        Target::parse_authority(s).unwrap()
    }

    #[test]
    fn host_forms_that_name_the_target() {
        let t = target("api.openai.com:443");
        for ok in [
            "api.openai.com",
            "API.OpenAI.com",
            "api.openai.com:443",
            "api.openai.com.",
            "api.openai.com:",
        ] {
            assert!(names(ok, Scheme::Https, &t), "{ok}");
        }
        for bad in [
            "api.openai.com:80",
            "chatgpt.com",
            "api.openai.com:x",
            "api.openai.com.evil.test",
            "",
        ] {
            assert!(!names(bad, Scheme::Https, &t), "{bad}");
        }
        let v6 = target("[::1]:8080");
        assert!(names("[::1]:8080", Scheme::Http, &v6));
        assert!(!names("[::1]", Scheme::Http, &v6));
        assert!(!names("[::1]x", Scheme::Http, &v6));
        assert!(names("[::1]", Scheme::Http, &target("[::1]:80")));
    }

    #[test]
    fn host_rules_by_version_and_route() {
        let t = target("api.openai.com:443");
        let none = parts(Version::HTTP_11, "/v1/models", &[]);
        assert!(check(&none, Scheme::Https, &t, true).is_err());
        let h2 = parts(Version::HTTP_2, "https://api.openai.com/v1/models", &[]);
        assert_eq!(check(&h2, Scheme::Https, &t, true), Ok(()));
        let fronted = parts(Version::HTTP_2, "https://chatgpt.com/", &[]);
        assert_eq!(
            check(&fronted, Scheme::Https, &t, true).unwrap_err().status,
            StatusCode::MISDIRECTED_REQUEST
        );
        let fronted_h1 = parts(Version::HTTP_11, "/", &[("host", "chatgpt.com")]);
        assert!(check(&fronted_h1, Scheme::Https, &t, true).is_err());
        let userinfo = parts(
            Version::HTTP_11,
            "https://user:pw@api.openai.com/v1/models",
            &[("host", "api.openai.com")],
        );
        assert_eq!(check(&userinfo, Scheme::Https, &t, true), Ok(()));
        let old = parts(Version::HTTP_10, "/", &[]);
        assert_eq!(check(&old, Scheme::Https, &t, true), Ok(()));
    }
}
