//! The facade's calls about access: SubjectAccessReviews for requesters,
//! just-in-time grants (RoleBindings/ClusterRoleBindings), and whether the
//! admission policies that record and authorize requesters are in place.

use k8s_openapi::api::admissionregistration::v1::{
    MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Resource, ResourceExt};
use kubernetes_executor_crds::{Requester, labels};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{ApiError, ApiResult, FIELD_MANAGER, KubeApi};
use crate::authz::AccessCheck;
pub use crate::grants::Grant;

/// Names of the admission objects in deploy/admission/.
pub mod admission {
    /// Records the requester on create.
    pub const REQUESTER_POLICY: &str = "kubernetes-executor-requester";
    /// Admits a create only if the requester may execute the action.
    pub const AUTHORIZE_POLICY: &str = "kubernetes-executor-authorize";
    /// Limits the bindings the operator's identity may make.
    pub const GRANTS_POLICY: &str = "kubernetes-executor-grants";
    /// The operator's identity may delete only finished executions (its
    /// history clean-up).
    pub const HISTORY_POLICY: &str = "kubernetes-executor-history";
}

/// Whether the admission policies (and their bindings) are installed and enforcing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdmissionState {
    /// What is missing or not enforcing; empty when all is in place.
    pub problems: Vec<String>,
}

impl AdmissionState {
    /// All policies present, bound and enforcing.
    pub fn enforcing(&self) -> bool {
        self.problems.is_empty()
    }
}

impl KubeApi {
    /// Asks the API server whether `who` holds `check`. `Ok(None)`: allowed;
    /// `Ok(Some(why))`: denied, with the authorizer's reason when it gives one.
    pub async fn review_access(
        &self,
        who: &Requester,
        check: &AccessCheck,
    ) -> ApiResult<Option<String>> {
        let mut attrs = json!({
            "verb": check.verb,
            "group": check.group,
            "resource": check.resource,
            "name": check.name,
        });
        if let Some(ns) = &check.namespace {
            attrs["namespace"] = json!(ns);
        }
        let mut spec =
            json!({ "user": who.username, "groups": who.groups, "resourceAttributes": attrs });
        if let Some(uid) = who.uid.as_deref().filter(|u| !u.is_empty()) {
            spec["uid"] = json!(uid);
        }
        let review: SubjectAccessReview =
            serde_json::from_value(json!({ "spec": spec })).map_err(|e| ApiError::Invalid {
                what: "subjectaccessreview".into(),
                message: e.to_string(),
            })?;
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| ApiError::classify("create subjectaccessreview", e))?;
        let status = answer.status.unwrap_or_default();
        if status.allowed && status.denied != Some(true) {
            Ok(None)
        } else {
            Ok(Some(status.reason.unwrap_or_default()))
        }
    }

    /// Creates (or keeps) a grant.
    pub async fn ensure_grant(&self, grant: &Grant) -> ApiResult<()> {
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let created = match grant {
            Grant::Namespaced(rb) => {
                let api: Api<RoleBinding> =
                    Api::namespaced(self.client.clone(), grant.namespace().unwrap_or_default());
                api.create(&pp, rb).await.map(|_| ())
            }
            Grant::Cluster(crb) => {
                let api: Api<ClusterRoleBinding> = Api::all(self.client.clone());
                api.create(&pp, crb).await.map(|_| ())
            }
        };
        match created {
            Ok(()) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(ApiError::classify(format!("create {}", grant.display()), e)),
        }
    }

    /// Deletes a grant; absent is fine.
    pub async fn delete_grant(&self, grant: &Grant) -> ApiResult<()> {
        let dp = DeleteParams::default();
        let deleted = match grant.namespace() {
            Some(ns) => Api::<RoleBinding>::namespaced(self.client.clone(), ns)
                .delete(grant.name(), &dp)
                .await
                .map(|_| ()),
            None => Api::<ClusterRoleBinding>::all(self.client.clone())
                .delete(grant.name(), &dp)
                .await
                .map(|_| ()),
        };
        match deleted {
            Ok(()) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(ApiError::classify(format!("delete {}", grant.display()), e)),
        }
    }

    /// Every grant the operator made (labelled), cluster-wide.
    pub async fn list_grants(&self) -> ApiResult<Vec<Grant>> {
        let lp = ListParams::default().labels(&format!(
            "{}={},{}",
            labels::MANAGED_BY,
            labels::MANAGER,
            labels::EXECUTION_UID
        ));
        let rbs = Api::<RoleBinding>::all(self.client.clone())
            .list(&lp)
            .await
            .map_err(|e| ApiError::classify("list rolebindings", e))?;
        let crbs = Api::<ClusterRoleBinding>::all(self.client.clone())
            .list(&lp)
            .await
            .map_err(|e| ApiError::classify("list clusterrolebindings", e))?;
        Ok(rbs
            .items
            .into_iter()
            .map(Grant::Namespaced)
            .chain(crbs.items.into_iter().map(Grant::Cluster))
            .collect())
    }

    /// Whether the requester and authorization policies (and the grants
    /// policy) are installed, bound and enforcing.
    pub async fn admission_state(&self) -> AdmissionState {
        let mut problems = Vec::new();
        async fn present<K>(api: &KubeApi, name: &str, problems: &mut Vec<String>) -> Option<K>
        where
            K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
        {
            match Api::<K>::all(api.client.clone()).get_opt(name).await {
                Ok(Some(o)) => Some(o),
                Ok(None) => {
                    problems.push(format!("{} {name} is not installed", K::kind(&())));
                    None
                }
                Err(e) => {
                    problems.push(format!("cannot read {} {name}: {e}", K::kind(&())));
                    None
                }
            }
        }
        let map: Option<MutatingAdmissionPolicy> =
            present(self, admission::REQUESTER_POLICY, &mut problems).await;
        let _: Option<MutatingAdmissionPolicyBinding> =
            present(self, admission::REQUESTER_POLICY, &mut problems).await;
        if let Some(p) = map
            && p.spec.and_then(|s| s.failure_policy).as_deref() == Some("Ignore")
        {
            problems.push(format!(
                "MutatingAdmissionPolicy {} has failurePolicy Ignore",
                admission::REQUESTER_POLICY
            ));
        }
        for name in [
            admission::AUTHORIZE_POLICY,
            admission::GRANTS_POLICY,
            admission::HISTORY_POLICY,
        ] {
            let policy: Option<ValidatingAdmissionPolicy> =
                present(self, name, &mut problems).await;
            let binding: Option<ValidatingAdmissionPolicyBinding> =
                present(self, name, &mut problems).await;
            if let Some(p) = policy
                && p.spec.and_then(|s| s.failure_policy).as_deref() == Some("Ignore")
            {
                problems.push(format!(
                    "ValidatingAdmissionPolicy {name} has failurePolicy Ignore"
                ));
            }
            if let Some(b) = binding {
                let actions = b.spec.validation_actions.clone();
                if !actions.iter().any(|a| a == "Deny") {
                    problems.push(format!(
                        "ValidatingAdmissionPolicyBinding {} does not Deny (validationActions {actions:?})",
                        b.name_any()
                    ));
                }
            }
        }
        AdmissionState { problems }
    }
}
