//! Bucket policies (PutBucketPolicy): the subset of AWS's grammar this
//! gateway evaluates — `Allow` statements for `"*"` or access key ids, the
//! actions of [`Action`] (object reads and writes, listing, multipart,
//! tagging), and resources in the policy's own bucket. Anything else is refused with a
//! message naming it (S3's `MalformedPolicy`), so that no part of a stored
//! policy is silently ignored.

use std::fmt;

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a policy was refused; the text is the `MalformedPolicy` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError(message.into()))
}

/// Who sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal<'a> {
    Anonymous,
    /// An access key id.
    Key(&'a str),
}

/// The actions a policy can allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    GetObject,
    ListBucket,
    PutObject,
    DeleteObject,
    GetBucketLocation,
    ListBucketMultipartUploads,
    ListMultipartUploadParts,
    AbortMultipartUpload,
    GetObjectTagging,
    PutObjectTagging,
    DeleteObjectTagging,
}

impl Action {
    const ALL: [Action; 11] = [
        Action::GetObject,
        Action::ListBucket,
        Action::PutObject,
        Action::DeleteObject,
        Action::GetBucketLocation,
        Action::ListBucketMultipartUploads,
        Action::ListMultipartUploadParts,
        Action::AbortMultipartUpload,
        Action::GetObjectTagging,
        Action::PutObjectTagging,
        Action::DeleteObjectTagging,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::GetObject => "s3:GetObject",
            Action::ListBucket => "s3:ListBucket",
            Action::PutObject => "s3:PutObject",
            Action::DeleteObject => "s3:DeleteObject",
            Action::GetBucketLocation => "s3:GetBucketLocation",
            Action::ListBucketMultipartUploads => "s3:ListBucketMultipartUploads",
            Action::ListMultipartUploadParts => "s3:ListMultipartUploadParts",
            Action::AbortMultipartUpload => "s3:AbortMultipartUpload",
            Action::GetObjectTagging => "s3:GetObjectTagging",
            Action::PutObjectTagging => "s3:PutObjectTagging",
            Action::DeleteObjectTagging => "s3:DeleteObjectTagging",
        }
    }

    /// Whether the action's resource is an object (else the bucket).
    fn on_object(self) -> bool {
        !matches!(self, Action::ListBucket | Action::GetBucketLocation | Action::ListBucketMultipartUploads)
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// A validated policy, ready to evaluate (the caller keeps the text for
/// GetBucketPolicy: AWS returns the document as it was put).
#[derive(Debug, Clone)]
pub struct Policy {
    statements: Vec<Statement>,
}

#[derive(Debug, Clone)]
struct Statement {
    principals: Principals,
    /// One [`Action::bit`] per allowed action.
    actions: u16,
    /// `arn:aws:s3:::BUCKET` is among the resources.
    bucket: bool,
    /// Key patterns of the `arn:aws:s3:::BUCKET/…` resources.
    objects: Vec<String>,
}

#[derive(Debug, Clone)]
enum Principals {
    Everyone,
    Keys(Vec<String>),
}

impl Policy {
    /// Whether some statement allows `who` to do `action`, on object `key`
    /// for object actions (None never matches them); ListBucket is on the
    /// bucket, whatever `key` says.
    pub fn allows(&self, who: Principal, action: Action, key: Option<&str>) -> bool {
        self.statements.iter().any(|s| {
            let principal = match (&s.principals, who) {
                (Principals::Everyone, _) => true,
                (Principals::Keys(ids), Principal::Key(id)) => ids.iter().any(|i| i == id),
                (Principals::Keys(_), Principal::Anonymous) => false,
            };
            let resource = match (action.on_object(), key) {
                (false, _) => s.bucket,
                (true, Some(key)) => s.objects.iter().any(|p| glob(p, key)),
                (true, None) => false,
            };
            principal && s.actions & action.bit() != 0 && resource
        })
    }
}

/// Parses and validates the policy document `text` put on `bucket`.
pub fn parse(bucket: &str, text: &str) -> Result<Policy, PolicyError> {
    let Strict(doc) = serde_json::from_str(text).map_err(|e| PolicyError(format!("This policy contains invalid Json: {e}")))?;
    let Value::Object(doc) = doc else {
        return err("Policies must be valid JSON and the first byte must be '{'");
    };
    // Under 2012-10-17 `${…}` in a resource is a policy variable; before, literal text.
    let mut variables = false;
    for (field, value) in &doc {
        match field.as_str() {
            "Version" => match value.as_str() {
                Some("2012-10-17") => variables = true,
                Some("2008-10-17") => {}
                _ => return err(format!("The policy must contain a valid version string (2012-10-17 or 2008-10-17), not {value}")),
            },
            "Id" if value.is_string() => {}
            "Id" => return err("Id must be a string"),
            "Statement" => {}
            _ => return err(format!("Unknown field {field}")),
        }
    }
    let statements = match doc.get("Statement") {
        None => return err("Missing required field Statement"),
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one) => vec![one],
    };
    if statements.is_empty() {
        return err("Could not parse the policy: Statement is empty!");
    }
    let statements = statements
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let Value::Object(s) = s else {
                return err("Statement must be an object or an array of objects");
            };
            statement(bucket, variables, s).map_err(|e| {
                let label = s.get("Sid").and_then(Value::as_str).map_or_else(|| format!("statement {}", i + 1), |sid| format!("statement {sid:?}"));
                PolicyError(format!("{} ({label})", e.0))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Policy { statements })
}

fn statement(bucket: &str, variables: bool, s: &Map<String, Value>) -> Result<Statement, PolicyError> {
    for (field, value) in s {
        match field.as_str() {
            "Sid" if value.is_string() => {}
            "Sid" => return err("Sid must be a string"),
            "Effect" | "Principal" | "Action" | "Resource" => {}
            "NotPrincipal" | "NotAction" | "NotResource" => return err(format!("{field} is not supported")),
            "Condition" => return err("Condition is not supported: conditions are not evaluated"),
            _ => return err(format!("Unknown field {field}")),
        }
    }
    let required = |field: &str| s.get(field).ok_or_else(|| PolicyError(format!("Missing required field {field}")));
    let effect = required("Effect")?;
    match effect.as_str() {
        Some("Allow") => {}
        Some("Deny") => return err("Effect Deny is not supported: only Allow statements are evaluated"),
        _ => return err(format!("Invalid effect: {effect}")),
    }
    let principals = principals(required("Principal")?)?;

    let mut resource_bucket = false;
    let mut objects = Vec::new();
    for r in strings("Resource", required("Resource")?)? {
        let invalid = |why: &str| err(format!("Policy has invalid resource: {r}: {why}"));
        if variables && r.contains("${") {
            return invalid("policy variables are not supported");
        }
        let Some(path) = r.strip_prefix("arn:aws:s3:::") else {
            return invalid(&format!("use arn:aws:s3:::{bucket} or arn:aws:s3:::{bucket}/KEY"));
        };
        match path.split_once('/') {
            None if path == bucket => resource_bucket = true,
            Some((b, key)) if b == bucket => objects.push(key.to_string()),
            _ => return invalid(&format!("only bucket {bucket} can be named")),
        }
    }

    let mut actions = 0;
    for a in strings("Action", required("Action")?)? {
        let pattern = a.to_ascii_lowercase();
        let matched: Vec<Action> = Action::ALL.into_iter().filter(|x| glob(&pattern, &x.name().to_ascii_lowercase())).collect();
        if matched.is_empty() {
            return err(format!(
                "Policy has invalid action: {a}: supported are {} and wildcards matching them",
                Action::ALL.map(Action::name).join(", ")
            ));
        }
        // AWS's check: a statement must not name an action none of its resources can take.
        if !matched.iter().any(|x| if x.on_object() { !objects.is_empty() } else { resource_bucket }) {
            return err(format!("Action does not apply to any resource(s) in statement: {a}"));
        }
        actions |= matched.iter().fold(0, |bits, x| bits | x.bit());
    }
    Ok(Statement { principals, actions, bucket: resource_bucket, objects })
}

/// `"*"`, `{"AWS": "*"}`, `{"AWS": "id"}` or `{"AWS": ["id", …]}`.
fn principals(value: &Value) -> Result<Principals, PolicyError> {
    let invalid = |why: String| err(format!("Invalid principal in policy: {why}"));
    let ids = match value {
        Value::String(s) if s == "*" => return Ok(Principals::Everyone),
        Value::Object(m) => {
            if let Some(other) = m.keys().find(|k| *k != "AWS") {
                return invalid(format!("{other} principals are not supported, only \"*\" and {{\"AWS\": access key ids}}"));
            }
            match m.get("AWS") {
                Some(aws) => strings("Principal AWS", aws)?,
                None => return invalid("empty Principal".into()),
            }
        }
        _ => return invalid(format!("{value}: use \"*\" or {{\"AWS\": access key ids}}")),
    };
    if ids.iter().any(|id| id == "*") {
        return Ok(Principals::Everyone);
    }
    // Access key ids never contain ':' (`--s3-key ID:SECRET`), so this also refuses ARNs.
    if let Some(id) = ids.iter().find(|id| id.is_empty() || id.contains([':', '*', '?']) || id.chars().any(char::is_whitespace)) {
        return invalid(format!("{id:?} is not \"*\" or an access key id (IAM ARNs and wildcards are not supported)"));
    }
    Ok(Principals::Keys(ids))
}

/// A string or a non-empty array of strings.
fn strings(field: &str, value: &Value) -> Result<Vec<String>, PolicyError> {
    let list = match value {
        Value::String(s) => return Ok(vec![s.clone()]),
        Value::Array(list) if !list.is_empty() => list,
        _ => return err(format!("{field} must be a string or a non-empty array of strings")),
    };
    list.iter()
        .map(|v| v.as_str().map(String::from).ok_or_else(|| PolicyError(format!("{field} must be a string or a non-empty array of strings"))))
        .collect()
}

/// Whether `text` matches `pattern`, where `*` is any run of characters
/// (including `/`) and `?` is one character, as in AWS's policies.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let char_len = |i: usize| text[i..].chars().next().map_or(1, char::len_utf8);
    let (mut pi, mut ti) = (0, 0);
    // After a `*`: the pattern position after it and the text position it has reached.
    let mut star = None;
    while ti < t.len() {
        if p.get(pi) == Some(&b'*') {
            pi += 1;
            star = Some((pi, ti));
        } else if p.get(pi) == Some(&b'?') {
            pi += 1;
            ti += char_len(ti);
        } else if p.get(pi) == Some(&t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            // Let the last `*` take one more character and retry.
            let st = st + char_len(st);
            (pi, ti, star) = (sp, st, Some((sp, st)));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// A JSON value, refusing objects with a repeated field (serde_json would
/// keep the last one, silently ignoring the others).
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(v.into()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(v.into()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(v.into()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut list = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            list.push(v);
        }
        Ok(Strict(Value::Array(list)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut fields = Map::new();
        while let Some(field) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if fields.insert(field.clone(), v).is_some() {
                return Err(A::Error::custom(format!("duplicate field {field}")));
            }
        }
        Ok(Strict(Value::Object(fields)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;
    use Principal::{Anonymous, Key};

    const PUBLIC_READ: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"PublicRead","Effect":"Allow","Principal":"*","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::b/*"]}]}"#;

    fn ok(text: &str) -> Policy {
        parse("b", text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn refused(text: &str) -> String {
        parse("b", text).expect_err(text).0
    }

    /// One statement with the given JSON members.
    fn stmt(members: &str) -> String {
        format!(r#"{{"Version":"2012-10-17","Statement":{{{members}}}}}"#)
    }

    #[test]
    fn public_read() {
        let p = ok(PUBLIC_READ);
        assert!(p.allows(Anonymous, GetObject, Some("k")));
        assert!(p.allows(Anonymous, GetObject, Some("dir/sub/ünï")));
        assert!(p.allows(Key("someone"), GetObject, Some("k")));
        assert!(!p.allows(Anonymous, ListBucket, None));
        assert!(!p.allows(Anonymous, PutObject, Some("k")));
        assert!(!p.allows(Anonymous, DeleteObject, Some("k")));
        assert!(!p.allows(Anonymous, GetObject, None));
    }

    #[test]
    fn aws_shapes() {
        // Statement as an object, no Version, strings for lists, {"AWS": "*"}.
        let p = ok(r#"{"Id":"x","Statement":{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#);
        assert!(p.allows(Anonymous, GetObject, Some("k")));
        ok(&stmt(r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*""#).replace("2012-10-17", "2008-10-17"));
    }

    #[test]
    fn list_bucket() {
        let p = ok(&stmt(
            r#""Effect":"Allow","Principal":"*","Action":["s3:ListBucket","s3:GetObject"],"Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"]"#,
        ));
        assert!(p.allows(Anonymous, ListBucket, None));
        assert!(p.allows(Anonymous, GetObject, Some("k")));
        assert!(!p.allows(Anonymous, PutObject, Some("k")));
    }

    #[test]
    fn prefix_resources() {
        let p =
            ok(&stmt(r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":["arn:aws:s3:::b/public/*","arn:aws:s3:::b/doc?.txt"]"#));
        assert!(p.allows(Anonymous, GetObject, Some("public/a")));
        assert!(p.allows(Anonymous, GetObject, Some("public/a/b")));
        assert!(p.allows(Anonymous, GetObject, Some("doc1.txt")));
        assert!(p.allows(Anonymous, GetObject, Some("docé.txt")));
        assert!(!p.allows(Anonymous, GetObject, Some("doc12.txt")));
        assert!(!p.allows(Anonymous, GetObject, Some("public")));
        assert!(!p.allows(Anonymous, GetObject, Some("private/public/a")));
    }

    #[test]
    fn key_principals() {
        let p = ok(&stmt(r#""Effect":"Allow","Principal":{"AWS":["GK1","GK2"]},"Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*""#));
        assert!(p.allows(Key("GK1"), PutObject, Some("k")));
        assert!(p.allows(Key("GK2"), PutObject, Some("k")));
        assert!(!p.allows(Key("GK3"), PutObject, Some("k")));
        assert!(!p.allows(Key("gk1"), PutObject, Some("k")));
        assert!(!p.allows(Anonymous, PutObject, Some("k")));
        let p = ok(&stmt(r#""Effect":"Allow","Principal":{"AWS":"GK1"},"Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*""#));
        assert!(p.allows(Key("GK1"), PutObject, Some("k")) && !p.allows(Anonymous, PutObject, Some("k")));
    }

    #[test]
    fn wildcard_actions() {
        let p = ok(&stmt(r#""Effect":"Allow","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"]"#));
        assert!(Action::ALL.iter().all(|&a| p.allows(Anonymous, a, Some("k"))));
        // s3:* with only the bucket: ListBucket applies, so AWS accepts it.
        let p = ok(&stmt(r#""Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b""#));
        assert!(p.allows(Anonymous, ListBucket, None) && !p.allows(Anonymous, GetObject, Some("k")));
        let p = ok(&stmt(r#""Effect":"Allow","Principal":"*","Action":"s3:*Object","Resource":"arn:aws:s3:::b/*""#));
        assert!(p.allows(Anonymous, PutObject, Some("k")) && p.allows(Anonymous, DeleteObject, Some("k")));
        let p = ok(&stmt(r#""Effect":"Allow","Principal":"*","Action":"s3:Get*","Resource":"arn:aws:s3:::b/*""#));
        assert!(p.allows(Anonymous, GetObject, Some("k")) && !p.allows(Anonymous, PutObject, Some("k")));
        assert!(p.allows(Anonymous, GetObjectTagging, Some("k")) && !p.allows(Anonymous, GetBucketLocation, None));
    }

    #[test]
    fn minio_client_canned_policies() {
        // `mc anonymous set download` and `… upload` write these.
        let download = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Principal":{"AWS":["*"]},"Action":["s3:GetBucketLocation","s3:ListBucket"],"Resource":["arn:aws:s3:::b"]},
            {"Effect":"Allow","Principal":{"AWS":["*"]},"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::b/*"]}]}"#;
        let p = parse("b", download).unwrap();
        assert!(p.allows(Anonymous, GetBucketLocation, None) && p.allows(Anonymous, ListBucket, None) && p.allows(Anonymous, GetObject, Some("k")));
        assert!(!p.allows(Anonymous, PutObject, Some("k")) && !p.allows(Anonymous, ListBucketMultipartUploads, None));
        let upload = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Principal":{"AWS":["*"]},"Action":["s3:GetBucketLocation","s3:ListBucketMultipartUploads"],"Resource":["arn:aws:s3:::b"]},
            {"Effect":"Allow","Principal":{"AWS":["*"]},"Action":["s3:AbortMultipartUpload","s3:DeleteObject","s3:ListMultipartUploadParts","s3:PutObject"],"Resource":["arn:aws:s3:::b/*"]}]}"#;
        let p = parse("b", upload).unwrap();
        assert!(p.allows(Anonymous, ListBucketMultipartUploads, None) && p.allows(Anonymous, AbortMultipartUpload, Some("k")));
        assert!(p.allows(Anonymous, ListMultipartUploadParts, Some("k")) && !p.allows(Anonymous, GetObject, Some("k")));
        assert!(!p.allows(Anonymous, ListBucket, None));
    }

    #[test]
    fn action_names_are_case_insensitive() {
        let p = ok(&stmt(
            r#""Effect":"Allow","Principal":"*","Action":["S3:getobject","s3:LISTBUCKET"],"Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"]"#,
        ));
        assert!(p.allows(Anonymous, GetObject, Some("k")) && p.allows(Anonymous, ListBucket, None));
    }

    #[test]
    fn statements_add_up() {
        let p = ok(r#"{"Statement":[
            {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"},
            {"Effect":"Allow","Principal":{"AWS":"GK1"},"Action":"s3:PutObject","Resource":"arn:aws:s3:::b/in/*"}]}"#);
        assert!(p.allows(Anonymous, GetObject, Some("k")));
        assert!(p.allows(Key("GK1"), PutObject, Some("in/k")));
        assert!(!p.allows(Key("GK1"), PutObject, Some("out/k")));
        assert!(!p.allows(Anonymous, PutObject, Some("in/k")));
    }

    #[test]
    fn refusals_name_the_part() {
        let allow = r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*""#;
        let cases = [
            (PUBLIC_READ.replace("Allow", "Deny"), r#"Effect Deny is not supported: only Allow statements are evaluated (statement "PublicRead")"#),
            (stmt(&allow.replace("Allow", "allow")), "Invalid effect: \"allow\" (statement 1)"),
            (stmt(&format!(r#"{allow},"Condition":{{"Bool":{{"aws:SecureTransport":"true"}}}}"#)), "Condition is not supported"),
            (stmt(&allow.replace("\"Principal\"", "\"NotPrincipal\"")), "NotPrincipal is not supported"),
            (stmt(&allow.replace("\"Action\"", "\"NotAction\"")), "NotAction is not supported"),
            (stmt(&allow.replace("\"Resource\"", "\"NotResource\"")), "NotResource is not supported"),
            (stmt(&format!(r#"{allow},"Foo":1"#)), "Unknown field Foo"),
            (PUBLIC_READ.replace("\"Version\"", "\"Versoin\""), "Unknown field Versoin"),
            (PUBLIC_READ.replace("2012-10-17", "2020-01-01"), "valid version string"),
            (stmt(&allow.replace("s3:GetObject", "s3:GetObjectRetention")), "Policy has invalid action: s3:GetObjectRetention"),
            (stmt(&allow.replace("s3:GetObject", "s3:GetObjectVersion")), "Policy has invalid action: s3:GetObjectVersion"),
            (stmt(&allow.replace("s3:GetObject", "s3:PutBucketPolicy")), "Policy has invalid action: s3:PutBucketPolicy"),
            (stmt(&allow.replace("s3:GetObject", "iam:*")), "Policy has invalid action: iam:*"),
            (stmt(&allow.replace("s3:GetObject", "GetObject")), "Policy has invalid action: GetObject"),
            (stmt(&allow.replace("b/*", "other/*")), "Policy has invalid resource: arn:aws:s3:::other/*"),
            (stmt(&allow.replace("b/*", "bb/*")), "Policy has invalid resource: arn:aws:s3:::bb/*"),
            (stmt(&allow.replace("b/*", "*")), "Policy has invalid resource: arn:aws:s3:::*"),
            (stmt(&allow.replace("b/*", "b*")), "Policy has invalid resource: arn:aws:s3:::b*"),
            (stmt(&allow.replace("arn:aws:s3:::b/*", "*")), "Policy has invalid resource: *"),
            (stmt(&allow.replace("b/*", "b/${aws:username}/*")), "policy variables are not supported"),
            (stmt(&allow.replace("b/*", "b")), "Action does not apply to any resource(s) in statement: s3:GetObject"),
            (stmt(&allow.replace("s3:GetObject", "s3:ListBucket")), "Action does not apply to any resource(s) in statement: s3:ListBucket"),
            (
                stmt(&allow.replace(r#""*""#, r#"{"AWS":"arn:aws:iam::111122223333:root"}"#)),
                "Invalid principal in policy: \"arn:aws:iam::111122223333:root\"",
            ),
            (stmt(&allow.replace(r#""*""#, r#"{"Service":"cloudfront.amazonaws.com"}"#)), "Invalid principal in policy: Service principals"),
            (stmt(&allow.replace(r#""*""#, r#""GK1""#)), "Invalid principal in policy: \"GK1\""),
            (stmt(&allow.replace(r#""*""#, r#"{"AWS":[]}"#)), "Principal AWS must be a string or a non-empty array"),
            (stmt(&allow.replace(r#""s3:GetObject""#, "[]")), "Action must be a string or a non-empty array"),
            (stmt(r#""Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*""#), "Missing required field Effect"),
            (stmt(r#""Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*""#), "Missing required field Principal"),
            (stmt(r#""Effect":"Allow","Principal":"*","Resource":"arn:aws:s3:::b/*""#), "Missing required field Action"),
            (stmt(r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject""#), "Missing required field Resource"),
            (r#"{"Version":"2012-10-17","Statement":[]}"#.into(), "Statement is empty"),
            (r#"{"Version":"2012-10-17"}"#.into(), "Missing required field Statement"),
            (r#"{"Statement":["x"]}"#.into(), "Statement must be an object"),
            (PUBLIC_READ[..40].into(), "This policy contains invalid Json"),
            ("".into(), "This policy contains invalid Json"),
            (format!("{PUBLIC_READ} x"), "This policy contains invalid Json"),
            (stmt(&format!(r#"{allow},"Effect":"Deny""#)), "invalid Json: duplicate field Effect"),
            ("[]".into(), "the first byte must be '{'"),
        ];
        for (text, message) in cases {
            let got = refused(&text);
            assert!(got.contains(message), "{text}\n  refused with {got:?}\n  expected {message:?}");
        }
    }

    #[test]
    fn policy_variables_are_literal_before_2012() {
        let p = ok(r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/${x}"}}"#);
        assert!(p.allows(Anonymous, GetObject, Some("${x}")) && !p.allows(Anonymous, GetObject, Some("y")));
    }

    #[test]
    fn globs() {
        assert!(glob("*", "") && glob("*", "a/b") && glob("", ""));
        assert!(!glob("", "a") && !glob("a", "") && !glob("?", ""));
        assert!(glob("a*b*c", "aXbYbZc") && !glob("a*b*c", "aXbYbZ"));
        assert!(glob("*.txt", "x.txt.txt") && !glob("*.txt", "x.txt.gz"));
        assert!(glob("??", "éü") && !glob("?", "éü") && glob("é*ü", "éxxü"));
        assert!(glob("a**", "a") && glob("*?", "é") && !glob("*?", ""));
    }
}
