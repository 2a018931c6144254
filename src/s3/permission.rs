//! Who may do what (Garage's model): `--s3-key` keys are admins (every
//! bucket, every operation); keys made by `mkv key` act on a bucket as its
//! grants say (read, write, owner; a key that creates a bucket gets all
//! three); anonymous requests are denied unless the bucket's policy allows.

use super::policy::{self, Action};
use super::router::Op;
use crate::index::BucketInfo;

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A key from the configuration.
    Admin(String),
    /// A key from the index.
    Key(String),
    Anonymous,
}

impl Principal {
    /// The access key id ("" for anonymous).
    pub fn id(&self) -> &str {
        match self {
            Principal::Admin(id) | Principal::Key(id) => id,
            Principal::Anonymous => "",
        }
    }
}

/// What an operation needs on its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// GET, HEAD, listings, copy from.
    Read,
    /// Writes and deletes of objects, multipart uploads.
    Write,
    /// Bucket configuration and DeleteBucket.
    Owner,
}

/// The bucket permission `op` needs, `None` for the operations that are not
/// on one bucket (ListBuckets filters by Read; CreateBucket checks owners).
pub fn needs(op: &Op) -> Option<Need> {
    use Op::*;
    match op {
        // PostObject authorizes itself: its signer is in the form.
        ListBuckets | CreateBucket | PostObject => None,
        HeadBucket | GetBucketLocation | GetBucketVersioning | GetBucketDefault(_) | ListObjects | ListObjectsV2
        | ListObjectVersions | ListMultipartUploads | GetObject | HeadObject | GetObjectAcl | GetObjectAttributes | GetObjectTagging
        | ListParts => Some(Need::Read),
        PutObject | CopyObject | DeleteObject | DeleteObjects | CreateMultipartUpload | UploadPart | UploadPartCopy
        | CompleteMultipartUpload | AbortMultipartUpload | PutObjectTagging | DeleteObjectTagging | PutObjectAcl => Some(Need::Write),
        DeleteBucket | GetBucketPolicy | PutBucketPolicy | DeleteBucketPolicy | GetBucketCors | PutBucketCors | DeleteBucketCors
        | GetBucketTagging | PutBucketTagging | DeleteBucketTagging | PutBucketVersioning | PutBucketAcl => Some(Need::Owner),
        // Answered 501 whoever asks.
        NotImplemented(_) => None,
    }
}

/// The bucket-policy action an operation is, if a policy can allow it
/// (DeleteObjects and the other bucket reads need grants).
pub fn policy_action(op: &Op) -> Option<Action> {
    use Op::*;
    match op {
        // AWS also wants s3:GetObjectAttributes; reading the object covers it.
        GetObject | HeadObject | GetObjectAttributes => Some(Action::GetObject),
        ListObjects | ListObjectsV2 | ListObjectVersions => Some(Action::ListBucket),
        PutObject | CopyObject | CreateMultipartUpload | UploadPart | UploadPartCopy | CompleteMultipartUpload => Some(Action::PutObject),
        DeleteObject => Some(Action::DeleteObject),
        GetBucketLocation => Some(Action::GetBucketLocation),
        ListMultipartUploads => Some(Action::ListBucketMultipartUploads),
        ListParts => Some(Action::ListMultipartUploadParts),
        AbortMultipartUpload => Some(Action::AbortMultipartUpload),
        GetObjectTagging => Some(Action::GetObjectTagging),
        PutObjectTagging => Some(Action::PutObjectTagging),
        DeleteObjectTagging => Some(Action::DeleteObjectTagging),
        _ => None,
    }
}

/// Whether `who` may do what `need` says on bucket `name`: by its grants,
/// or by the bucket's policy for `action` on the object key given.
pub fn allowed(who: &Principal, name: &str, bucket: &BucketInfo, need: Need, action: Option<(Action, Option<&str>)>) -> bool {
    if granted(who, bucket, need) {
        return true;
    }
    let (Some((action, key)), Some(text)) = (action, &bucket.policy) else { return false };
    let principal = match who {
        Principal::Key(id) => policy::Principal::Key(id),
        _ => policy::Principal::Anonymous,
    };
    // Stored only after it parsed, so it parses.
    policy::parse(name, text).is_ok_and(|p| p.allows(principal, action, key))
}

/// Whether the bucket's grants let `who` do what `need` says.
pub fn granted(who: &Principal, bucket: &BucketInfo, need: Need) -> bool {
    match who {
        Principal::Admin(_) => true,
        Principal::Anonymous => false,
        Principal::Key(id) => bucket.grants.get(id).is_some_and(|g| match need {
            Need::Read => g.read,
            Need::Write => g.write,
            Need::Owner => g.owner,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Grant;

    #[test]
    fn grants_by_need() {
        let mut b = BucketInfo::default();
        b.grants.insert("reader".into(), Grant { read: true, ..Default::default() });
        b.grants.insert("owner".into(), Grant { read: true, write: true, owner: true });
        let (reader, owner, other) = (Principal::Key("reader".into()), Principal::Key("owner".into()), Principal::Key("x".into()));
        assert!(granted(&reader, &b, Need::Read) && !granted(&reader, &b, Need::Write) && !granted(&reader, &b, Need::Owner));
        assert!([Need::Read, Need::Write, Need::Owner].iter().all(|n| granted(&owner, &b, *n)));
        assert!(!granted(&other, &b, Need::Read));
        assert!(granted(&Principal::Admin("a".into()), &b, Need::Owner));
        assert!(!granted(&Principal::Anonymous, &b, Need::Read));
    }

    #[test]
    fn policies_open_what_grants_do_not() {
        let text = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::pub/*"}]}"#;
        let b = BucketInfo { policy: Some(text.into()), ..Default::default() };
        let get = Some((Action::GetObject, Some("k")));
        assert!(allowed(&Principal::Anonymous, "pub", &b, Need::Read, get));
        assert!(allowed(&Principal::Key("x".into()), "pub", &b, Need::Read, get));
        assert!(!allowed(&Principal::Anonymous, "pub", &b, Need::Read, Some((Action::ListBucket, None))));
        assert!(!allowed(&Principal::Anonymous, "pub", &b, Need::Write, Some((Action::PutObject, Some("k")))));
        assert!(!allowed(&Principal::Anonymous, "pub", &b, Need::Read, None));
        assert!(!allowed(&Principal::Anonymous, "pub", &BucketInfo::default(), Need::Read, get));
        assert_eq!(policy_action(&Op::HeadObject), Some(Action::GetObject));
        assert_eq!(policy_action(&Op::DeleteObjects), None);
    }

    #[test]
    fn operations_need() {
        assert_eq!(needs(&Op::GetObject), Some(Need::Read));
        assert_eq!(needs(&Op::ListObjectsV2), Some(Need::Read));
        assert_eq!(needs(&Op::UploadPartCopy), Some(Need::Write));
        assert_eq!(needs(&Op::DeleteObjects), Some(Need::Write));
        assert_eq!(needs(&Op::DeleteBucket), Some(Need::Owner));
        assert_eq!(needs(&Op::CreateBucket), None);
    }
}
