//! Where a request or tunnel goes: host and port, parsed from CONNECT
//! authorities and absolute-form URIs.

use std::fmt;

use http::Uri;

use super::forward::Scheme;

/// An upstream host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Lowercase host name or IP literal, without brackets.
    pub host: String,
    pub port: u16,
}

impl Target {
    /// Parses `host:port` (IPv6 as `[::1]:443`). The port is required.
    pub fn parse_authority(s: &str) -> Option<Target> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, port) = rest.split_once("]:")?;
            host.parse::<std::net::Ipv6Addr>().ok()?;
            (host, port)
        } else {
            s.rsplit_once(':')?
        };
        let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
        {
            return None;
        }
        Some(Target {
            host: host.trim_end_matches('.').to_ascii_lowercase(),
            port,
        })
    }

    /// The scheme and target of an absolute-form request URI.
    pub fn from_absolute_uri(uri: &Uri) -> Option<(Scheme, Target)> {
        let scheme = match uri.scheme_str()? {
            s if s.eq_ignore_ascii_case("http") => Scheme::Http,
            s if s.eq_ignore_ascii_case("https") => Scheme::Https,
            _ => return None,
        };
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(scheme.default_port());
        let target = Target::parse_authority(&if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        })?;
        Some((scheme, target))
    }
}

impl fmt::Display for Target {
    /// `host:port`, bracketing IPv6 literals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_authorities() {
        let t = Target::parse_authority("API.OpenAI.com.:443").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("api.openai.com", 443));
        let t = Target::parse_authority("[::1]:8443").unwrap();
        assert_eq!(t.to_string(), "[::1]:8443");
        for bad in [
            "api.openai.com",
            ":443",
            "host:0",
            "host:99999",
            "ho st:443",
            "[zz]:1",
            "a/b:443",
            "",
        ] {
            assert!(Target::parse_authority(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn parses_absolute_uris() {
        let uri: Uri = "http://example.test/path?q=1".parse().unwrap();
        let (scheme, t) = Target::from_absolute_uri(&uri).unwrap();
        assert_eq!(scheme, Scheme::Http);
        assert_eq!(t.to_string(), "example.test:80");
        let uri: Uri = "/origin-form".parse().unwrap();
        assert!(Target::from_absolute_uri(&uri).is_none());
        let uri: Uri = "ftp://x.test/".parse().unwrap();
        assert!(Target::from_absolute_uri(&uri).is_none());
    }
}
