//! The one Lease protocol, shared by leader election and target locks:
//! claim (create, or renew our own, or take over one the caller's rule
//! says is free — compare-and-swap on resourceVersion) and release. The
//! rules for *when* a Lease held by someone else may be taken over are the
//! callers' (expiry by observed time for the leader, `src/leader.rs`; a
//! gone or finished holder execution for a target lock,
//! `execution::start`); this module only does the requests.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams};

use super::{ApiError, ApiResult, FIELD_MANAGER, KubeApi};

/// Which request a claim starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Create first (the Lease is usually absent: target locks).
    CreateFirst,
    /// Read first (the Lease usually exists: the leader renewing).
    ReadFirst,
}

/// What a claim came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// It was ours already; renewed (its new resourceVersion).
    Renewed(Option<String>),
    /// It is ours now, created or taken over (its resourceVersion).
    Taken(Option<String>),
    /// Someone else holds it (as read).
    Busy(Box<Lease>),
}

/// How to give a Lease up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// Delete it (target locks: a free lock is an absent Lease).
    Delete,
    /// Keep it, without a holder and expiring at once (the leader Lease:
    /// a standby takes it on its next try).
    Vacate,
}

fn holder(l: &Lease) -> Option<&str> {
    l.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
}

impl KubeApi {
    /// Claims `desired` (a Lease of the operator namespace whose
    /// `holderIdentity` is the claimant) — see [`Claim`]. `may_take` is
    /// asked only about a Lease someone else holds.
    pub async fn claim_lease(
        &self,
        desired: &Lease,
        probe: Probe,
        may_take: impl AsyncFnOnce(&Lease) -> ApiResult<bool>,
    ) -> ApiResult<Claim> {
        let api = self.leases();
        let name = desired.name_any();
        let identity = holder(desired).unwrap_or_default().to_string();
        let create = async || match api
            .create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                },
                desired,
            )
            .await
        {
            Ok(l) => Ok(Some(l.metadata.resource_version)),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
            Err(e) => Err(ApiError::classify(format!("create lease {name}"), e)),
        };
        let read = async || {
            api.get_opt(&name)
                .await
                .map_err(|e| ApiError::classify(format!("get lease {name}"), e))
        };
        let existing = match probe {
            Probe::CreateFirst => {
                if let Some(version) = create().await? {
                    return Ok(Claim::Taken(version));
                }
                read().await?.ok_or_else(|| ApiError::Conflict {
                    what: format!("lease {name}"),
                    message: "vanished".into(),
                })?
            }
            Probe::ReadFirst => match read().await? {
                Some(l) => l,
                None => match create().await? {
                    Some(version) => return Ok(Claim::Taken(version)),
                    None => return Ok(Claim::Busy(Box::default())),
                },
            },
        };
        let mine = holder(&existing) == Some(identity.as_str());
        if !mine && !may_take(&existing).await? {
            return Ok(Claim::Busy(Box::new(existing)));
        }
        let mut next = desired.clone();
        next.metadata.resource_version = existing.metadata.resource_version.clone();
        let old = existing.spec.clone().unwrap_or_default();
        let spec = next.spec.get_or_insert_with(Default::default);
        if mine {
            spec.acquire_time = old.acquire_time.or(spec.acquire_time.take());
            spec.lease_transitions = old.lease_transitions;
        } else {
            spec.lease_transitions = Some(old.lease_transitions.unwrap_or(0) + 1);
        }
        match api.replace(&name, &PostParams::default(), &next).await {
            Ok(l) if mine => Ok(Claim::Renewed(l.metadata.resource_version)),
            Ok(l) => Ok(Claim::Taken(l.metadata.resource_version)),
            // Someone else wrote it first.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Claim::Busy(Box::new(existing))),
            Err(e) => Err(ApiError::classify(format!("claim lease {name}"), e)),
        }
    }

    /// Gives up Lease `name` if `identity` holds it (absent, or held by
    /// someone else: nothing to do). With `known`, the resourceVersion the
    /// claim returned, a Lease to delete goes in one conditional DELETE;
    /// read first only if it changed since (someone took it over).
    pub async fn release_lease(
        &self,
        name: &str,
        identity: &str,
        how: Release,
        known: Option<&str>,
    ) -> ApiResult<()> {
        let api = self.leases();
        if let (Release::Delete, Some(version)) = (how, known) {
            let dp = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    resource_version: Some(version.to_string()),
                    uid: None,
                }),
                ..Default::default()
            };
            match api.delete(name, &dp).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                // Changed since this claim: read it (below).
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(ApiError::classify(format!("release lease {name}"), e)),
            }
        }
        let Some(mut existing) = api
            .get_opt(name)
            .await
            .map_err(|e| ApiError::classify(format!("get lease {name}"), e))?
            .filter(|l| holder(l) == Some(identity))
        else {
            return Ok(());
        };
        let done = match how {
            Release::Delete => {
                let dp = DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        resource_version: existing.metadata.resource_version.clone(),
                        uid: None,
                    }),
                    ..Default::default()
                };
                api.delete(name, &dp).await.map(|_| ())
            }
            Release::Vacate => {
                if let Some(spec) = existing.spec.as_mut() {
                    spec.holder_identity = None;
                    spec.lease_duration_seconds = Some(1);
                    spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
                }
                api.replace(name, &PostParams::default(), &existing)
                    .await
                    .map(|_| ())
            }
        };
        match done {
            Ok(()) => Ok(()),
            // Gone, or changed since we read it: no longer ours to release.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(ApiError::classify(format!("release lease {name}"), e)),
        }
    }
}
