//! The S3 API as a [`Store`]: aws-sdk-s3 on a small tokio runtime of its
//! own, so the validator stays synchronous and fetches from many threads.

use std::collections::BTreeMap;

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;

use super::store::{GetError, ListError, Object, Store};

pub struct S3Store {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot start the S3 client: {0}")]
pub struct S3SetupError(String);

impl S3Store {
    /// Credentials and region from the usual AWS chain (environment, profile,
    /// web identity, instance metadata). `endpoint` selects an S3-compatible
    /// store and path-style addressing.
    pub fn new(endpoint: Option<&str>, region: Option<&str>) -> Result<S3Store, S3SetupError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| S3SetupError(e.to_string()))?;
        // rustls with ring: no C toolchain beyond what ring needs, and the
        // same crypto crate trailship verifies signatures with.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
        if let Some(r) = region {
            loader = loader.region(aws_config::Region::new(r.to_owned()));
        }
        let conf = rt.block_on(loader.load());
        let mut b = aws_sdk_s3::config::Builder::from(&conf);
        if conf.region().is_none() {
            b = b.region(aws_config::Region::new("us-east-1"));
        }
        if let Some(e) = endpoint {
            b = b.endpoint_url(e).force_path_style(true);
        }
        Ok(S3Store { rt, client: aws_sdk_s3::Client::from_conf(b.build()) })
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

fn describe<E: std::fmt::Debug>(e: &SdkError<E>) -> String {
    match e {
        SdkError::ServiceError(s) => format!("HTTP {}: {:?}", s.raw().status().as_u16(), s.err()),
        other => format!("{other:?}"),
    }
}

impl Store for S3Store {
    fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, ListError> {
        self.rt.block_on(async {
            let mut keys = Vec::new();
            let mut pages = self.client.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page =
                    page.map_err(|e| ListError { location: format!("s3://{bucket}/{prefix}"), reason: describe(&e) })?;
                keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
            }
            keys.sort();
            Ok(keys)
        })
    }

    fn get(&self, bucket: &str, key: &str) -> Result<Object, GetError> {
        self.rt.block_on(async {
            let out = match self.client.get_object().bucket(bucket).key(key).send().await {
                Ok(o) => o,
                Err(e) => {
                    let status = match &e {
                        SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
                        _ => None,
                    };
                    let missing =
                        matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_))) || status == Some(404);
                    return Err(if missing {
                        GetError::NotFound
                    } else if status == Some(403) {
                        GetError::Unreadable(
                            "access denied (403); without s3:ListBucket a deleted object also answers 403".into(),
                        )
                    } else {
                        GetError::Unreadable(describe(&e))
                    });
                }
            };
            // Body and metadata from the same response: a HEAD then a GET
            // could straddle an overwrite.
            let metadata: BTreeMap<String, String> =
                out.metadata().into_iter().flatten().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
            let bytes =
                out.body.collect().await.map_err(|e| GetError::Unreadable(e.to_string()))?.into_bytes().to_vec();
            Ok(Object { bytes, metadata, metadata_supported: true })
        })
    }
}
