//! Who may use the native API: unsigned requests from allowed peers are
//! native calls (all of them, or only reads); unsigned requests from anyone
//! else are anonymous S3 requests. Safe by default: with S3 keys configured,
//! only loopback peers reach the native API, so the keys protect the data.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{Config, NativeMode};

/// The native API's exposure, from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeAccess {
    pub mode: NativeMode,
    pub allow: Vec<IpNet>,
}

/// What to do with an unsigned request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Native {
    /// Serve it as a native call.
    Serve,
    /// A native peer, but the native API is read-only: refuse.
    ReadOnly,
    /// Not a native call: an anonymous S3 request.
    NotNative,
}

/// Methods a read-only native API serves: reads and listings.
fn is_read(method: &str) -> bool {
    matches!(method, "GET" | "HEAD")
}

fn loopback() -> Vec<IpNet> {
    vec!["127.0.0.0/8".parse().expect("a valid net"), "::1/128".parse().expect("a valid net")]
}

fn everywhere() -> Vec<IpNet> {
    vec!["0.0.0.0/0".parse().expect("a valid net"), "::/0".parse().expect("a valid net")]
}

impl NativeAccess {
    /// `--native` (default read-write) from `--native-allow` peers; without
    /// that flag, everywhere when there are no S3 keys (the original's
    /// behaviour), else loopback only.
    pub fn from_config(config: &Config) -> NativeAccess {
        let allow = match (&config.native_allow[..], config.s3_keys.is_empty()) {
            ([], true) => everywhere(),
            ([], false) => loopback(),
            (given, _) => given.to_vec(),
        };
        NativeAccess { mode: config.native.unwrap_or(NativeMode::Rw), allow }
    }

    pub fn decide(&self, peer: Option<IpAddr>, method: &str) -> Native {
        let allowed = peer.is_some_and(|ip| {
            // An IPv4 client on an IPv6 socket shows as ::ffff:a.b.c.d.
            let ip = ip.to_canonical();
            self.allow.iter().any(|net| net.contains(&ip))
        });
        match self.mode {
            _ if !allowed => Native::NotNative,
            NativeMode::Off => Native::NotNative,
            NativeMode::Ro if !is_read(method) => Native::ReadOnly,
            NativeMode::Ro | NativeMode::Rw => Native::Serve,
        }
    }

    /// For the start-up line: "read-write from 127.0.0.0/8, ::1/128".
    pub fn describe(&self) -> String {
        let what = match self.mode {
            NativeMode::Off => return "off".into(),
            NativeMode::Ro => "read-only",
            NativeMode::Rw => "read-write",
        };
        let from = if self.allow == everywhere() {
            "everywhere".to_string()
        } else {
            self.allow.iter().map(IpNet::to_string).collect::<Vec<_>>().join(", ")
        };
        format!("{what} from {from}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(args: &str, env_keys: bool) -> NativeAccess {
        let mut argv: Vec<String> = "mkv server".split(' ').map(String::from).collect();
        argv.extend(args.split_whitespace().map(String::from));
        if env_keys {
            argv.extend(["--s3-key".into(), "a:b".into()]);
        }
        NativeAccess::from_config(&crate::config::parse(argv).unwrap().config)
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn defaults_follow_the_keys() {
        let open = access("", false);
        assert_eq!(open.describe(), "read-write from everywhere");
        assert_eq!(open.decide(ip("10.1.2.3"), "PUT"), Native::Serve);
        let keyed = access("", true);
        assert_eq!(keyed.describe(), "read-write from 127.0.0.0/8, ::1/128");
        assert_eq!(keyed.decide(ip("127.0.0.1"), "DELETE"), Native::Serve);
        assert_eq!(keyed.decide(ip("::1"), "PUT"), Native::Serve);
        assert_eq!(keyed.decide(ip("::ffff:127.0.0.1"), "PUT"), Native::Serve);
        assert_eq!(keyed.decide(ip("10.1.2.3"), "GET"), Native::NotNative);
        assert_eq!(keyed.decide(None, "GET"), Native::NotNative);
    }

    #[test]
    fn modes_and_allow_lists() {
        let ro = access("--native ro --native-allow 127.0.0.1/32,10.0.0.0/8,::1", true);
        assert_eq!(ro.describe(), "read-only from 127.0.0.1/32, 10.0.0.0/8, ::1/128");
        assert_eq!(ro.decide(ip("10.9.9.9"), "GET"), Native::Serve);
        assert_eq!(ro.decide(ip("10.9.9.9"), "HEAD"), Native::Serve);
        for m in ["PUT", "DELETE", "UNLINK", "REBALANCE", "POST"] {
            assert_eq!(ro.decide(ip("127.0.0.1"), m), Native::ReadOnly, "{m}");
        }
        assert_eq!(ro.decide(ip("127.0.0.2"), "GET"), Native::NotNative);
        let off = access("--native off", false);
        assert_eq!(off.describe(), "off");
        assert_eq!(off.decide(ip("127.0.0.1"), "GET"), Native::NotNative);
    }
}
