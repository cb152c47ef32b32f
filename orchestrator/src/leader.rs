//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several
//! orchestrator replicas exactly one runs migrations.
//!
//! The rules follow client-go's leader election: a lease is taken over only
//! when its record has not changed for a whole lease duration as seen by the
//! local clock (never by comparing clocks across machines); every write is
//! guarded by the resourceVersion read; a leader that cannot renew within
//! the renew deadline stops leading (the process exits, so it cannot act on
//! a stale belief). Job names are deterministic as well, so even a leader
//! that is slow to notice its loss cannot start a step twice.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::{debug, info, warn};

/// How the lease is held.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease (the orchestrator's own).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub duration: Duration,
    /// How often the leader renews, and others try to acquire.
    pub retry_period: Duration,
    /// How long the leader keeps trying to renew before giving up.
    pub renew_deadline: Duration,
}

impl LeaseConfig {
    /// The usual timings (15 s lease, 10 s renew deadline, 2 s retry).
    pub fn new(namespace: &str, name: &str, identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
            renew_deadline: Duration::from_secs(10),
        }
    }
}

/// Why leading stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The leader could not renew within the deadline.
    #[error(
        "lost the lease {namespace}/{name}: could not renew it for {seconds} s (last error: {last}); \
         exiting so that another replica takes over"
    )]
    Lost {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// The renew deadline.
        seconds: u64,
        /// The last error or `another holder took it`.
        last: String,
    },
}

/// The lease as last observed, and when this process observed it change.
struct Observed {
    record: Option<(String, Option<String>)>,
    since: Instant,
}

/// Tries to acquire until it succeeds; returns the held lease.
pub async fn acquire(client: Client, config: LeaseConfig) -> Leadership {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut observed = Observed {
        record: None,
        since: Instant::now(),
    };
    let mut announced = String::new();
    loop {
        match try_acquire_or_renew(&api, &config, &mut observed).await {
            Ok(Attempt::Held) => {
                info!(lease = %config.name, identity = %config.identity, "acquired the lease; leading");
                return Leadership {
                    api,
                    config,
                    observed,
                };
            }
            Ok(Attempt::HeldBy(holder)) => {
                if holder != announced {
                    info!(lease = %config.name, holder = %holder, "another replica leads; waiting");
                    announced = holder;
                }
            }
            Err(err) => {
                warn!(lease = %config.name, error = %crate::kube_text::kube_error(&err), "cannot read or write the lease")
            }
        }
        tokio::time::sleep(config.retry_period).await;
    }
}

/// A held lease.
pub struct Leadership {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Observed,
}

enum Attempt {
    Held,
    HeldBy(String),
}

impl Leadership {
    /// Renews the lease until it cannot; returns why leading stopped.
    pub async fn keep(&mut self) -> LeaseError {
        let mut last_renewal = Instant::now();
        let mut last_error = String::from("none");
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match try_acquire_or_renew(&self.api, &self.config, &mut self.observed).await {
                Ok(Attempt::Held) => {
                    debug!(lease = %self.config.name, "renewed the lease");
                    last_renewal = Instant::now();
                }
                Ok(Attempt::HeldBy(holder)) => {
                    last_error = format!("{holder} holds it now");
                    return self.lost(last_error);
                }
                Err(err) => {
                    last_error = crate::kube_text::kube_error(&err);
                    warn!(lease = %self.config.name, error = %last_error, "cannot renew the lease");
                }
            }
            if last_renewal.elapsed() > self.config.renew_deadline {
                return self.lost(last_error);
            }
        }
    }

    fn lost(&self, last: String) -> LeaseError {
        LeaseError::Lost {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            seconds: self.config.renew_deadline.as_secs(),
            last,
        }
    }

    /// Gives the lease up so that another replica takes over at once.
    pub async fn release(self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.config.name, "released the lease"),
            Err(err) => {
                warn!(lease = %self.config.name, error = %crate::kube_text::kube_error(&err), "cannot release the lease")
            }
        }
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaseConfig,
    observed: &mut Observed,
) -> Result<Attempt, kube::Error> {
    let duration_seconds = i32::try_from(config.duration.as_secs()).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(duration_seconds),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Held),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::HeldBy(
                "a replica that created it first".to_owned(),
            )),
            Err(err) => Err(err),
        };
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let record = (holder.clone(), lease.metadata.resource_version.clone());
    if observed.record.as_ref() != Some(&record) {
        observed.record = Some(record);
        observed.since = Instant::now();
    }
    let mine = holder == config.identity;
    let valid_for = Duration::from_secs(
        u64::try_from(spec.lease_duration_seconds.unwrap_or(duration_seconds)).unwrap_or(0),
    );
    let expired = holder.is_empty() || observed.since.elapsed() > valid_for;
    if !mine && !expired {
        return Ok(Attempt::HeldBy(holder));
    }
    if !mine {
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        spec.holder_identity = Some(config.identity.clone());
    }
    spec.lease_duration_seconds = Some(duration_seconds);
    spec.renew_time = Some(now());
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(written) => {
            observed.record = Some((
                config.identity.clone(),
                written.metadata.resource_version.clone(),
            ));
            observed.since = Instant::now();
            Ok(Attempt::Held)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::HeldBy(if mine {
            "another replica (it changed the lease while this one renewed)".to_owned()
        } else {
            holder
        })),
        Err(err) => Err(err),
    }
}
