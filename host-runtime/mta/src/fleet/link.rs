//! The Redis calls of the fleet, on one server (a reconnecting multiplexed connection) or a Redis
//! Cluster (routed by the key's hash tag): read a shared copy, compare-and-set it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{RedisResult, Script, TlsCertificates};

use super::{
    BLOB_FIELD, COMPARE_AND_SET_SCRIPT, FleetError, FleetSettings, SharedCopy, VERSION_FIELD,
};

/// One call in flight, borrowing the link.
pub(super) type Call<'a, T> = Pin<Box<dyn Future<Output = RedisResult<T>> + 'a>>;

enum Connection {
    Single(ConnectionManager),
    Cluster {
        // Boxed: a cluster client is large, and most nodes talk to one server.
        client: Box<ClusterClient>,
        connection: Option<ClusterConnection>,
    },
}

pub(super) struct Link {
    connection: Connection,
    script: Script,
}

/// `url` with its password replaced, for messages.
pub(super) fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(at)) if at > scheme.len() => {
            let credentials = &rest[..at - scheme.len() - 3];
            let user = credentials.split_once(':').map_or("", |(user, _)| user);
            format!("{scheme}://{user}:***@{}", &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl Link {
    pub(super) fn new(
        settings: &FleetSettings,
        runtime: &tokio::runtime::Runtime,
    ) -> Result<Self, FleetError> {
        let url_error = |cause| FleetError::Url {
            url: redacted(&settings.url),
            cause,
        };
        let certificates = match &settings.ca_file {
            None => None,
            Some(path) => Some(TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(path).map_err(|cause| FleetError::CaFile {
                    path: path.clone(),
                    cause,
                })?),
            }),
        };
        let connect_timeout = settings.budget.max(settings.connect_timeout);
        let connection = if settings.cluster {
            if certificates.is_some() {
                // The redis crate takes a cluster's own CA only over rustls; the host links
                // OpenSSL (native-tls), which checks a cluster against the system's CAs.
                return Err(FleetError::ClusterCaFile);
            }
            let builder = ClusterClient::builder([settings.url.as_str()])
                .connection_timeout(connect_timeout)
                .retries(0);
            Connection::Cluster {
                client: Box::new(builder.build().map_err(url_error)?),
                connection: None,
            }
        } else {
            let client = match certificates {
                None => redis::Client::open(settings.url.as_str()),
                Some(certificates) => {
                    redis::Client::build_with_tls(settings.url.as_str(), certificates)
                }
            }
            .map_err(url_error)?;
            // Our own deadline bounds each call; the manager only reconnects, quickly and
            // without a long backoff (a dead server is the breaker's to handle).
            let config = ConnectionManagerConfig::new()
                .set_response_timeout(None)
                .set_connection_timeout(Some(connect_timeout))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(Duration::from_millis(100));
            let _inside = runtime.enter();
            Connection::Single(
                ConnectionManager::new_lazy_with_config(client, config).map_err(url_error)?,
            )
        };
        Ok(Self {
            connection,
            script: Script::new(COMPARE_AND_SET_SCRIPT),
        })
    }

    pub(super) async fn read(&mut self, key: String) -> RedisResult<Option<SharedCopy>> {
        let mut read = redis::cmd("HMGET");
        read.arg(&key).arg(VERSION_FIELD).arg(BLOB_FIELD);
        let (version, blob): (Option<String>, Option<Vec<u8>>) = match &mut self.connection {
            Connection::Single(manager) => read.query_async(manager).await?,
            Connection::Cluster { client, connection } => {
                read.query_async(cluster(client, connection).await?).await?
            }
        };
        Ok(version.map(|version| SharedCopy {
            version,
            blob: blob.unwrap_or_default(),
        }))
    }

    /// Deletes the peer's shared copy; whether there was one.
    pub(super) async fn delete(&mut self, key: String) -> RedisResult<bool> {
        let mut delete = redis::cmd("DEL");
        delete.arg(&key);
        let deleted: i64 = match &mut self.connection {
            Connection::Single(manager) => delete.query_async(manager).await?,
            Connection::Cluster { client, connection } => {
                delete
                    .query_async(cluster(client, connection).await?)
                    .await?
            }
        };
        Ok(deleted > 0)
    }

    /// The written copy, or (as `Err`) the copy that won the round.
    pub(super) async fn compare_and_set(
        &mut self,
        key: String,
        expected: Option<String>,
        blob: Vec<u8>,
        ttl: Duration,
    ) -> RedisResult<Result<SharedCopy, Option<SharedCopy>>> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let mut invocation = self.script.key(&key);
        invocation
            .arg(expected.as_deref().unwrap_or(""))
            .arg(&blob)
            .arg(ttl_ms);
        let (applied, version, stored): (i64, String, Vec<u8>) = match &mut self.connection {
            Connection::Single(manager) => invocation.invoke_async(manager).await?,
            Connection::Cluster { client, connection } => {
                invocation
                    .invoke_async(cluster(client, connection).await?)
                    .await?
            }
        };
        let copy = SharedCopy {
            version,
            blob: stored,
        };
        Ok(if applied == 1 {
            Ok(copy)
        } else if copy.version.is_empty() {
            // The copy expired or was wiped since it was read.
            Err(None)
        } else {
            Err(Some(copy))
        })
    }

    /// Drops a cluster connection that failed for good, so the next call connects afresh (the
    /// single-server manager reconnects by itself).
    pub(super) fn after_error(&mut self, error: &redis::RedisError) {
        if let Connection::Cluster { connection, .. } = &mut self.connection
            && error.is_unrecoverable_error()
        {
            *connection = None;
        }
    }
}

async fn cluster<'a>(
    client: &ClusterClient,
    connection: &'a mut Option<ClusterConnection>,
) -> RedisResult<&'a mut ClusterConnection> {
    if connection.is_none() {
        *connection = Some(client.get_async_connection().await?);
    }
    Ok(connection.as_mut().expect("just connected"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_a_message() {
        assert_eq!(
            redacted("redis://tlsfb:s3cret@127.0.0.1:6379/0"),
            "redis://tlsfb:***@127.0.0.1:6379/0"
        );
        assert_eq!(redacted("rediss://:s3cret@h:1"), "rediss://:***@h:1");
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
