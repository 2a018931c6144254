//! CORS, as S3 does it: a bucket's rules (PutBucketCors) decide whether a
//! browser's preflight (`OPTIONS`, answered before any signature check) and
//! its actual requests (answered with `Access-Control-*` headers) from an
//! origin are allowed.

use super::error::S3Error;
use super::policy::glob;
use crate::index::CorsRule;

/// Methods a rule may allow.
const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];
/// AWS's limit on rules per bucket.
const MAX_RULES: usize = 100;
/// Exposed to every allowed origin besides a rule's `ExposeHeader`s: what
/// browser SDKs read from S3 answers.
const ALWAYS_EXPOSED: [&str; 3] = ["ETag", "x-amz-request-id", "x-amz-version-id"];

/// Refuse what S3 refuses in a CORS configuration.
pub fn validate(rules: &[CorsRule]) -> Result<(), S3Error> {
    if rules.len() > MAX_RULES {
        return Err(S3Error::InvalidRequest(format!("The CORS configuration must have at most {MAX_RULES} rules")));
    }
    for r in rules {
        if let Some(m) = r.allowed_methods.iter().find(|m| !METHODS.contains(&m.as_str())) {
            return Err(S3Error::InvalidRequest(format!("Found unsupported HTTP method in CORS config. Unsupported method is {m}")));
        }
        for (what, values) in [("AllowedOrigin", &r.allowed_origins), ("AllowedHeader", &r.allowed_headers)] {
            if let Some(v) = values.iter().find(|v| v.matches('*').count() > 1) {
                return Err(S3Error::InvalidRequest(format!("{what} \"{v}\" can not have more than one wildcard.")));
            }
        }
    }
    Ok(())
}

/// The first rule allowing `origin` to send `method` with `headers`
/// (request header names; matched case-insensitively).
pub fn find<'a>(rules: &'a [CorsRule], origin: &str, method: &str, headers: &[String]) -> Option<&'a CorsRule> {
    rules.iter().find(|r| {
        r.allowed_origins.iter().any(|o| glob(o, origin))
            && r.allowed_methods.iter().any(|m| m == method)
            && headers.iter().all(|h| r.allowed_headers.iter().any(|a| glob(&a.to_ascii_lowercase(), &h.to_ascii_lowercase())))
    })
}

/// `Access-Control-Request-Headers` as a list of names.
pub fn requested_headers(value: Option<&str>) -> Vec<String> {
    value.unwrap_or("").split(',').map(str::trim).filter(|h| !h.is_empty()).map(str::to_string).collect()
}

/// `*` for a rule open to every origin, else the origin itself.
fn allow_origin(rule: &CorsRule, origin: &str) -> String {
    if rule.allowed_origins.iter().any(|o| o == "*") {
        "*".into()
    } else {
        origin.to_string()
    }
}

/// Headers of an allowed preflight's answer: the actual request's, and the
/// request headers it may send.
pub fn preflight_headers(rule: &CorsRule, origin: &str, headers: &[String]) -> Vec<(&'static str, String)> {
    let mut out = response_headers(rule, origin);
    if !headers.is_empty() {
        out.push(("Access-Control-Allow-Headers", headers.join(", ")));
    }
    out
}

/// Headers added to an answer when a rule allows the origin and method.
pub fn response_headers(rule: &CorsRule, origin: &str) -> Vec<(&'static str, String)> {
    let origin = allow_origin(rule, origin);
    let mut out = vec![
        ("Access-Control-Allow-Methods", rule.allowed_methods.join(", ")),
        ("Vary", "Origin, Access-Control-Request-Headers, Access-Control-Request-Method".into()),
        exposed(rule),
    ];
    if let Some(age) = rule.max_age_seconds {
        out.push(("Access-Control-Max-Age", age.to_string()));
    }
    // Credentials only for a named origin (browsers refuse them with `*`).
    if origin != "*" {
        out.push(("Access-Control-Allow-Credentials", "true".into()));
    }
    out.insert(0, ("Access-Control-Allow-Origin", origin));
    out
}

fn exposed(rule: &CorsRule) -> (&'static str, String) {
    let mut names: Vec<&str> = ALWAYS_EXPOSED.to_vec();
    for h in &rule.expose_headers {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(h)) {
            names.push(h);
        }
    }
    ("Access-Control-Expose-Headers", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        CorsRule { allowed_origins: v(origins), allowed_methods: v(methods), allowed_headers: v(headers), ..Default::default() }
    }

    #[test]
    fn matching() {
        let rules = vec![rule(&["https://*.example.com"], &["GET", "PUT"], &["Content-*", "x-amz-*"]), rule(&["*"], &["GET"], &[])];
        let h = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(find(&rules, "https://app.example.com", "PUT", &h(&["content-type", "X-Amz-Date"])), Some(&rules[0]));
        assert_eq!(find(&rules, "https://app.example.com", "PUT", &h(&["authorization"])), None);
        assert_eq!(find(&rules, "https://other.org", "GET", &[]), Some(&rules[1]));
        assert_eq!(find(&rules, "https://other.org", "GET", &h(&["x-custom"])), None);
        assert_eq!(find(&rules, "https://other.org", "DELETE", &[]), None);
        assert_eq!(requested_headers(Some("content-type, x-amz-date,")), h(&["content-type", "x-amz-date"]));
    }

    #[test]
    fn answers() {
        let mut r = rule(&["https://a.example"], &["GET", "PUT"], &["*"]);
        r.max_age_seconds = Some(600);
        r.expose_headers = vec!["x-amz-meta-owner".into(), "etag".into()];
        let got = preflight_headers(&r, "https://a.example", &["content-type".to_string()]);
        let get = |name: &str| got.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("Access-Control-Allow-Origin"), Some("https://a.example"));
        assert_eq!(get("Access-Control-Allow-Methods"), Some("GET, PUT"));
        assert_eq!(get("Access-Control-Allow-Headers"), Some("content-type"));
        assert_eq!(get("Access-Control-Max-Age"), Some("600"));
        assert_eq!(get("Access-Control-Expose-Headers"), Some("ETag, x-amz-request-id, x-amz-version-id, x-amz-meta-owner"));
        assert_eq!(get("Access-Control-Allow-Credentials"), Some("true"));
        let open = rule(&["*"], &["GET"], &[]);
        let got = response_headers(&open, "https://z.example");
        assert_eq!(got[0], ("Access-Control-Allow-Origin", "*".to_string()));
        assert!(!got.iter().any(|(n, _)| *n == "Access-Control-Allow-Credentials"));
    }

    #[test]
    fn validation() {
        assert!(validate(&[rule(&["*"], &["GET", "HEAD", "POST", "PUT", "DELETE"], &["*"])]).is_ok());
        assert!(matches!(validate(&[rule(&["*"], &["PATCH"], &[])]), Err(S3Error::InvalidRequest(m)) if m.ends_with("PATCH")));
        assert!(validate(&[rule(&["https://*.*.example"], &["GET"], &[])]).is_err());
        assert!(validate(&vec![rule(&["*"], &["GET"], &[]); 101]).is_err());
    }
}
