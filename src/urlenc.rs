//! Percent-decoding of paths and query strings (byte-exact, lenient like Go's
//! `url` package for the native API).

/// Decode `%XX` escapes; anything else, including a stray `%`, stays as is.
pub fn percent_decode(input: &[u8]) -> Vec<u8> {
    percent_encoding::percent_decode(input).collect()
}

/// `name=value` pairs of a query string, `+` read as a space, both sides
/// percent-decoded. A bare `name` has an empty value.
pub fn query_pairs(query: &str) -> Vec<(String, Vec<u8>)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| percent_decode(s.replace('+', " ").as_bytes());
            (String::from_utf8_lossy(&dec(k)).into_owned(), dec(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes() {
        assert_eq!(percent_decode(b"/a%20b/%E2%9C%93+%"), "/a b/✓+%".as_bytes());
        let q = query_pairs("list&limit=10&start=%2Fa+b");
        assert_eq!(q[0], ("list".to_string(), vec![]));
        assert_eq!(q[1], ("limit".to_string(), b"10".to_vec()));
        assert_eq!(q[2], ("start".to_string(), b"/a b".to_vec()));
    }
}
