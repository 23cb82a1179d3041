//! Turning S3's answers into [`StoreError`]s that say what the operator must fix.
//!
//! The SDK has already retried what is worth retrying by the time an error gets here, so
//! the job is naming: a missing bucket, rejected credentials and a wrong region each get
//! their own message, and "not found" stays [`StoreError::NotFound`] because callers
//! give it meaning.

use aws_sdk_s3::config::http::HttpResponse as Response;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use super::options::S3Location;
use crate::store::{ObjectKey, StoreError};

/// What was being done when an error happened.
pub(super) struct Ctx<'a> {
    pub op: &'static str,
    pub location: &'a S3Location,
    /// The object, when the request was about one.
    pub key: Option<&'a ObjectKey>,
}

impl Ctx<'_> {
    fn target(&self) -> String {
        match self.key {
            Some(key) => format!("{}/{key}", self.location),
            None => self.location.to_string(),
        }
    }
}

/// Classifies an SDK error.
pub(super) fn classify<E>(err: SdkError<E, Response>, ctx: &Ctx<'_>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let Some(status) = err.raw_response().map(|r| r.status().as_u16()) else {
        // No answer from the store: credentials, connection, timeout.
        let retryable = match &err {
            SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
            SdkError::DispatchFailure(d) => !d.is_user(),
            _ => false,
        };
        let detail = causes(&err);
        if mentions_credentials(&detail) {
            return denied(
                ctx,
                "no usable AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                 AWS_PROFILE, or run with an instance or IRSA role)",
            );
        }
        return StoreError::Remote {
            op: ctx.op,
            target: ctx.target(),
            detail,
            retryable,
        };
    };
    let actual_region = err
        .raw_response()
        .and_then(|r| r.headers().get("x-amz-bucket-region"))
        .map(str::to_string);
    let code = err.code().unwrap_or_default().to_string();
    let bucket = &ctx.location.bucket;
    match (status, code.as_str()) {
        (_, "NoSuchBucket") => bad_location(ctx, format!("bucket {bucket:?} does not exist")),
        (404, _) => match ctx.key {
            Some(key) => StoreError::NotFound { key: key.clone() },
            None => bad_location(ctx, format!("bucket {bucket:?} does not exist")),
        },
        (_, "InvalidAccessKeyId") => denied(ctx, "the access key id is not known to the store"),
        (_, "SignatureDoesNotMatch") => denied(
            ctx,
            "request signature rejected: the secret access key does not match the access key \
             id (or the request was altered on the way)",
        ),
        (_, "ExpiredToken" | "InvalidToken" | "TokenRefreshRequired") => {
            denied(ctx, "the session token is expired or invalid")
        }
        (_, "AuthorizationHeaderMalformed" | "PermanentRedirect" | "IllegalLocationConstraintException")
        | (301, _) => bad_location(
            ctx,
            match actual_region {
                Some(region) => format!(
                    "bucket {bucket:?} is in region {region}; set AWS_REGION={region} or region in [s3]"
                ),
                None => format!("bucket {bucket:?} is in another region than the one configured ({code})"),
            },
        ),
        (403, _) => denied(
            ctx,
            &format!(
                "{} denied by the store ({}): check the bucket policy and the credentials' permissions",
                ctx.op,
                if code.is_empty() { "403" } else { &code }
            ),
        ),
        (status, _) => StoreError::Remote {
            op: ctx.op,
            target: ctx.target(),
            detail: format!("HTTP {status} {code}: {}", err.message().unwrap_or("")),
            retryable: status >= 500 || status == 429 || code == "SlowDown",
        },
    }
}

/// The error and its causes, `: `-joined, each said once (the SDK's own rendering appends
/// a debug dump of the whole error, which no operator needs).
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Whether an error with no HTTP response came from credential resolution.
fn mentions_credentials(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("no credentials") || text.contains("credential provider")
}

fn denied(ctx: &Ctx<'_>, reason: &str) -> StoreError {
    StoreError::Denied {
        location: ctx.location.to_string(),
        reason: reason.to_string(),
    }
}

fn bad_location(ctx: &Ctx<'_>, reason: String) -> StoreError {
    StoreError::BadLocation {
        location: ctx.location.to_string(),
        reason,
    }
}

/// An error while reading a response body, after the SDK's retries have ended.
pub(super) fn body_error(ctx: &Ctx<'_>, err: impl std::fmt::Display) -> StoreError {
    StoreError::Remote {
        op: ctx.op,
        target: ctx.target(),
        detail: format!("response body cut short: {err}"),
        retryable: true,
    }
}
