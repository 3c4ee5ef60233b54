//! The two CloudTrail API calls validation needs: `ListPublicKeys` (the
//! keys digests are signed with, per region) and `DescribeTrails` (where a
//! trail delivers, when `--s3-bucket` is not given).

use aws_sdk_cloudtrail::primitives::DateTime;

use super::keys::KeySet;
use super::s3::{S3SetupError, sdk_config};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("CloudTrail {call} in {region} failed: {detail}")]
    Call { call: &'static str, region: String, detail: String },
    #[error("DescribeTrails does not know trail {0}")]
    NoSuchTrail(String),
}

/// Where a trail delivers, as DescribeTrails tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailLocation {
    pub bucket: String,
    pub prefix: Option<String>,
    pub organization_trail: bool,
}

pub struct CloudTrailApi {
    rt: tokio::runtime::Runtime,
    conf: aws_config::SdkConfig,
    endpoint: Option<String>,
}

impl CloudTrailApi {
    pub fn new(endpoint: Option<&str>) -> Result<CloudTrailApi, S3SetupError> {
        let (rt, conf) = sdk_config(None)?;
        Ok(CloudTrailApi { rt, conf, endpoint: endpoint.map(str::to_owned) })
    }

    fn client(&self, region: &str) -> aws_sdk_cloudtrail::Client {
        let mut b = aws_sdk_cloudtrail::config::Builder::from(&self.conf)
            .region(aws_sdk_cloudtrail::config::Region::new(region.to_owned()));
        if let Some(e) = &self.endpoint {
            b = b.endpoint_url(e);
        }
        aws_sdk_cloudtrail::Client::from_conf(b.build())
    }

    /// Every key valid at some point of `[start_ms, end_ms]` in `region`,
    /// all pages, added to `into`.
    pub fn list_public_keys(
        &self,
        region: &str,
        start_ms: i64,
        end_ms: i64,
        into: &mut KeySet,
    ) -> Result<usize, ApiError> {
        let err = |detail: String| ApiError::Call { call: "ListPublicKeys", region: region.into(), detail };
        let client = self.client(region);
        self.rt.block_on(async {
            let mut token: Option<String> = None;
            let mut n = 0;
            loop {
                let out = client
                    .list_public_keys()
                    .start_time(DateTime::from_millis(start_ms))
                    .end_time(DateTime::from_millis(end_ms))
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(|e| err(format!("{}", aws_sdk_cloudtrail::error::DisplayErrorContext(&e))))?;
                for k in out.public_key_list() {
                    let (Some(value), Some(fp)) = (k.value(), k.fingerprint()) else { continue };
                    let t = |d: Option<&DateTime>| d.and_then(|d| d.to_millis().ok());
                    into.insert_der(fp, value.as_ref(), t(k.validity_start_time()), t(k.validity_end_time()));
                    n += 1;
                }
                match out.next_token() {
                    Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                    _ => return Ok(n),
                }
            }
        })
    }

    /// The trail's bucket and prefix, asked of its home region.
    pub fn describe_trail(&self, home_region: &str, arn: &str) -> Result<TrailLocation, ApiError> {
        let client = self.client(home_region);
        let out = self
            .rt
            .block_on(client.describe_trails().trail_name_list(arn).include_shadow_trails(true).send())
            .map_err(|e| ApiError::Call {
                call: "DescribeTrails",
                region: home_region.into(),
                detail: format!("{}", aws_sdk_cloudtrail::error::DisplayErrorContext(&e)),
            })?;
        let t = out
            .trail_list()
            .iter()
            .find(|t| t.trail_arn() == Some(arn))
            .or_else(|| out.trail_list().first())
            .ok_or_else(|| ApiError::NoSuchTrail(arn.into()))?;
        Ok(TrailLocation {
            bucket: t.s3_bucket_name().ok_or_else(|| ApiError::NoSuchTrail(arn.into()))?.to_owned(),
            prefix: t.s3_key_prefix().filter(|p| !p.is_empty()).map(str::to_owned),
            organization_trail: t.is_organization_trail().unwrap_or(false),
        })
    }
}
