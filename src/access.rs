//! Who may use the native API: unsigned requests from allowed peers are
//! native calls (all of them, or only reads); unsigned requests from anyone
//! else are anonymous S3 requests. Safe by default: once any S3 key exists
//! (`--s3-key`, or made with `mkv key` while the server runs), only loopback
//! peers reach the native API, so the keys protect the data.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{Config, NativeMode};

/// The native API's exposure, from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeAccess {
    pub mode: NativeMode,
    /// `--native-allow`; `None`: everywhere while no S3 key exists, then
    /// loopback.
    pub allow: Option<Vec<IpNet>>,
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
    /// `--native` (default read-write) from `--native-allow` peers.
    pub fn from_config(config: &Config) -> NativeAccess {
        let allow = (!config.native_allow.is_empty()).then(|| config.native_allow.clone());
        NativeAccess { mode: config.native.unwrap_or(NativeMode::Rw), allow }
    }

    /// The peers allowed now; `keyed` says whether any S3 key exists (asked
    /// only without `--native-allow`).
    fn allowed_nets(&self, keyed: impl FnOnce() -> bool) -> Vec<IpNet> {
        match &self.allow {
            Some(nets) => nets.clone(),
            None if keyed() => loopback(),
            None => everywhere(),
        }
    }

    pub fn decide(&self, peer: Option<IpAddr>, method: &str, keyed: impl FnOnce() -> bool) -> Native {
        if self.mode == NativeMode::Off {
            return Native::NotNative;
        }
        let nets = self.allowed_nets(keyed);
        // An IPv4 client on an IPv6 socket shows as ::ffff:a.b.c.d.
        let allowed = peer.is_some_and(|ip| nets.iter().any(|net| net.contains(&ip.to_canonical())));
        match self.mode {
            _ if !allowed => Native::NotNative,
            NativeMode::Ro if !is_read(method) => Native::ReadOnly,
            _ => Native::Serve,
        }
    }

    /// For the start-up line: "read-write from 127.0.0.0/8, ::1/128".
    pub fn describe(&self, keyed: bool) -> String {
        let what = match self.mode {
            NativeMode::Off => return "off".into(),
            NativeMode::Ro => "read-only",
            NativeMode::Rw => "read-write",
        };
        let nets = self.allowed_nets(|| keyed);
        let from = if nets == everywhere() {
            "everywhere until an S3 key exists, then loopback only".to_string()
        } else {
            nets.iter().map(IpNet::to_string).collect::<Vec<_>>().join(", ")
        };
        format!("{what} from {from}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(args: &str) -> NativeAccess {
        let mut argv: Vec<String> = "mkv server".split(' ').map(String::from).collect();
        argv.extend(args.split_whitespace().map(String::from));
        NativeAccess::from_config(&crate::cli::parse(argv).unwrap().config)
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn defaults_follow_the_keys() {
        let default = access("");
        assert_eq!(default.describe(false), "read-write from everywhere until an S3 key exists, then loopback only");
        assert_eq!(default.decide(ip("10.1.2.3"), "PUT", || false), Native::Serve);
        assert_eq!(default.describe(true), "read-write from 127.0.0.0/8, ::1/128");
        assert_eq!(default.decide(ip("127.0.0.1"), "DELETE", || true), Native::Serve);
        assert_eq!(default.decide(ip("::1"), "PUT", || true), Native::Serve);
        assert_eq!(default.decide(ip("::ffff:127.0.0.1"), "PUT", || true), Native::Serve);
        assert_eq!(default.decide(ip("10.1.2.3"), "GET", || true), Native::NotNative);
        assert_eq!(default.decide(None, "GET", || true), Native::NotNative);
    }

    #[test]
    fn modes_and_allow_lists() {
        let ro = access("--native ro --native-allow 127.0.0.1/32,10.0.0.0/8,::1");
        assert_eq!(ro.describe(true), "read-only from 127.0.0.1/32, 10.0.0.0/8, ::1/128");
        let no_keys = || panic!("an allow list does not depend on keys");
        assert_eq!(ro.decide(ip("10.9.9.9"), "GET", no_keys), Native::Serve);
        assert_eq!(ro.decide(ip("10.9.9.9"), "HEAD", no_keys), Native::Serve);
        for m in ["PUT", "DELETE", "UNLINK", "REBALANCE", "POST"] {
            assert_eq!(ro.decide(ip("127.0.0.1"), m, no_keys), Native::ReadOnly, "{m}");
        }
        assert_eq!(ro.decide(ip("127.0.0.2"), "GET", no_keys), Native::NotNative);
        let off = access("--native off");
        assert_eq!(off.describe(false), "off");
        assert_eq!(off.decide(ip("127.0.0.1"), "GET", || false), Native::NotNative);
    }
}
