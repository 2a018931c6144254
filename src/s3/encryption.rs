//! Server-side encryption and object lock in requests. mkv encrypts nothing
//! and locks nothing, so a request asking for either must never succeed as if
//! it had: a malformed or contradictory header set gets the 400 AWS gives it,
//! a well-formed encryption request 501 NotImplemented, and object lock
//! headers AWS's answer for a bucket without Object Lock (no bucket has it).

use actix_web::http::header::HeaderMap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use md5::{Digest, Md5};

use super::error::S3Error;

const SSE: &str = "x-amz-server-side-encryption";
const KMS: [&str; 3] = ["x-amz-server-side-encryption-aws-kms-key-id", "x-amz-server-side-encryption-context", "x-amz-server-side-encryption-bucket-key-enabled"];
/// SSE-C: algorithm, key, key MD5.
const CUSTOMER: [&str; 3] =
    ["x-amz-server-side-encryption-customer-algorithm", "x-amz-server-side-encryption-customer-key", "x-amz-server-side-encryption-customer-key-md5"];
/// SSE-C of a copy's source.
const SOURCE_CUSTOMER: [&str; 3] = [
    "x-amz-copy-source-server-side-encryption-customer-algorithm",
    "x-amz-copy-source-server-side-encryption-customer-key",
    "x-amz-copy-source-server-side-encryption-customer-key-md5",
];
const LOCK: [&str; 3] = ["x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date", "x-amz-object-lock-legal-hold"];

fn argument(message: &str, name: &str, value: &str) -> S3Error {
    S3Error::InvalidArgument { message: message.into(), name: name.into(), value: value.into() }
}

fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap_or(""))
}

/// The SSE-C headers `names` ([`CUSTOMER`] or [`SOURCE_CUSTOMER`]):
/// checked as AWS checks them when any is present.
fn customer_keys(headers: &HeaderMap, names: &[&str; 3]) -> Result<bool, S3Error> {
    let [alg, key, md5] = names.map(|n| get(headers, n));
    if alg.is_none() && key.is_none() && md5.is_none() {
        return Ok(false);
    }
    let alg = alg.ok_or_else(|| argument("Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm.", names[0], ""))?;
    if alg != "AES256" {
        return Err(argument("The encryption algorithm specified is not valid. The valid value is AES256.", names[0], alg));
    }
    let key = key.ok_or_else(|| argument("Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key.", names[1], ""))?;
    let md5 = md5.ok_or_else(|| argument("Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key.", names[2], ""))?;
    let key_bytes = STANDARD.decode(key).ok().filter(|k| k.len() == 32).ok_or_else(|| argument("The secret key was invalid for the specified algorithm.", names[1], ""))?;
    if STANDARD.decode(md5).ok().as_deref() != Some(Md5::digest(&key_bytes).as_slice()) {
        return Err(argument("The calculated MD5 hash of the key did not match the hash that was provided.", names[2], ""));
    }
    Ok(true)
}

/// A write (PutObject, CopyObject's target, CreateMultipartUpload,
/// UploadPart): encryption is refused, and object lock too.
pub fn check_write(headers: &HeaderMap) -> Result<(), S3Error> {
    let customer = customer_keys(headers, &CUSTOMER)?;
    let kms = KMS.iter().find_map(|n| get(headers, n).map(|_| *n));
    match get(headers, SSE) {
        Some(v @ ("AES256" | "aws:kms" | "aws:kms:dsse")) => {
            if customer {
                return Err(argument("Server Side Encryption with Customer provided key is incompatible with the encryption method specified", SSE, v));
            }
            if v == "AES256" && kms.is_some_and(|n| n != KMS[2]) {
                return Err(argument("Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms", SSE, v));
            }
        }
        Some(v) => return Err(argument("The encryption method specified is not supported", SSE, v)),
        None if kms.is_some_and(|n| n != KMS[2]) => {
            return Err(argument("Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms", kms.unwrap_or(""), ""))
        }
        None => {}
    }
    if customer || get(headers, SSE).is_some() || kms.is_some() {
        return Err(S3Error::NotImplemented("server-side encryption is not supported: values are stored as sent".into()));
    }
    if LOCK.iter().any(|n| headers.contains_key(*n)) {
        return Err(S3Error::InvalidRequest("Bucket is missing Object Lock Configuration".into()));
    }
    Ok(())
}

/// A read (GetObject, HeadObject) or, with `copy_source`, a copy's source:
/// no object is encrypted, so encryption parameters never apply.
pub fn check_read(headers: &HeaderMap, copy_source: bool) -> Result<(), S3Error> {
    if customer_keys(headers, if copy_source { &SOURCE_CUSTOMER } else { &CUSTOMER })? {
        return Err(S3Error::InvalidRequest("The encryption parameters are not applicable to this object.".into()));
    }
    if let Some(n) = std::iter::once(SSE).chain(KMS).find(|n| !copy_source && headers.contains_key(*n)) {
        return Err(argument(&format!("{n} header is not supported for this operation."), n, get(headers, n).unwrap_or("")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(kv: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in kv {
            h.insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn code(r: Result<(), S3Error>) -> &'static str {
        match r {
            Ok(()) => "ok",
            Err(S3Error::InvalidArgument { .. }) => "InvalidArgument",
            Err(S3Error::InvalidRequest(_)) => "InvalidRequest",
            Err(S3Error::NotImplemented(_)) => "NotImplemented",
            Err(_) => "other",
        }
    }

    fn sse_c(prefix: &str) -> Vec<(String, String)> {
        let key = [7u8; 32];
        [("algorithm", "AES256".to_string()), ("key", STANDARD.encode(key)), ("key-md5", STANDARD.encode(Md5::digest(key)))]
            .into_iter()
            .map(|(n, v)| (format!("{prefix}server-side-encryption-customer-{n}"), v))
            .collect()
    }

    fn map(kv: &[(String, String)]) -> HeaderMap {
        headers(&kv.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>())
    }

    #[test]
    fn writes() {
        assert_eq!(code(check_write(&headers(&[("content-type", "a/b")]))), "ok");
        for ok in ["AES256", "aws:kms", "aws:kms:dsse"] {
            assert_eq!(code(check_write(&headers(&[(SSE, ok)]))), "NotImplemented", "{ok}");
        }
        assert_eq!(code(check_write(&headers(&[(SSE, "aws:kms"), (KMS[0], "k")]))), "NotImplemented");
        assert_eq!(code(check_write(&headers(&[(SSE, "AES256"), (KMS[2], "true")]))), "NotImplemented");
        assert_eq!(code(check_write(&headers(&[(SSE, "aes:kms")]))), "InvalidArgument");
        assert_eq!(code(check_write(&headers(&[(KMS[0], "k")]))), "InvalidArgument");
        assert_eq!(code(check_write(&headers(&[(SSE, "AES256"), (KMS[0], "k")]))), "InvalidArgument");
        let c = sse_c("x-amz-");
        assert_eq!(code(check_write(&map(&c))), "NotImplemented");
        let mut with_sse = c.clone();
        with_sse.push((SSE.into(), "AES256".into()));
        assert_eq!(code(check_write(&map(&with_sse))), "InvalidArgument");
        for missing in 0..3 {
            let mut partial = c.clone();
            partial.remove(missing);
            assert_eq!(code(check_write(&map(&partial))), "InvalidArgument", "without {missing}");
        }
        let mut wrong_md5 = c.clone();
        wrong_md5[2].1 = STANDARD.encode([0u8; 16]);
        assert_eq!(code(check_write(&map(&wrong_md5))), "InvalidArgument");
        assert_eq!(code(check_write(&headers(&[(LOCK[0], "GOVERNANCE")]))), "InvalidRequest");
    }

    #[test]
    fn reads() {
        assert_eq!(code(check_read(&headers(&[("range", "bytes=0-1")]), false)), "ok");
        assert_eq!(code(check_read(&map(&sse_c("x-amz-")), false)), "InvalidRequest");
        assert_eq!(code(check_read(&headers(&[(SSE, "aws:kms")]), false)), "InvalidArgument");
        assert_eq!(code(check_read(&headers(&[(KMS[0], "k")]), false)), "InvalidArgument");
        assert_eq!(code(check_read(&map(&sse_c("x-amz-copy-source-")), true)), "InvalidRequest");
        // A copy's target may ask for encryption (check_write refuses it), not its source.
        assert_eq!(code(check_read(&headers(&[(SSE, "AES256")]), true)), "ok");
    }
}
