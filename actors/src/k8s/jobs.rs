//! The operator's Jobs and their pods.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use super::*;

impl KubeApi {
    /// Creates the Job, or returns the existing one of the same name when it
    /// belongs to the same execution (a restart after a create).
    pub async fn create_job(&self, job: &Job) -> ApiResult<Job> {
        let name = job.name_any();
        match self
            .jobs()
            .create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                },
                job,
            )
            .await
        {
            Ok(j) => Ok(j),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let uid = job
                    .labels()
                    .get(kubernetes_executor_crds::labels::EXECUTION_UID)
                    .cloned()
                    .unwrap_or_default();
                self.get_job_of(&name, &uid)
                    .await?
                    .ok_or_else(|| ApiError::Conflict {
                        what: format!("job {name}"),
                        message: "exists, but vanished or is owned by another execution".into(),
                    })
            }
            Err(e) => Err(ApiError::classify(format!("create job {name}"), e)),
        }
    }

    /// The Job `name` if it belongs to the execution with `exec_uid` (its
    /// execution-UID label); `None` if absent or someone else's.
    pub async fn get_job_of(&self, name: &str, exec_uid: &str) -> ApiResult<Option<Job>> {
        Ok(self.get_job(name).await?.filter(|j| {
            j.labels()
                .get(kubernetes_executor_crds::labels::EXECUTION_UID)
                .map(String::as_str)
                == Some(exec_uid)
        }))
    }

    /// Reads a Job of the operator's namespace.
    pub async fn get_job(&self, name: &str) -> ApiResult<Option<Job>> {
        self.jobs()
            .get_opt(name)
            .await
            .map_err(|e| ApiError::classify(format!("get job {name}"), e))
    }

    /// Deletes a Job and (in the background) its pods; absent is fine.
    pub async fn delete_job(&self, name: &str) -> ApiResult<()> {
        match self.jobs().delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(ApiError::classify(format!("delete job {name}"), e)),
        }
    }

    /// The pods of a Job, newest first; `cached` reads the API server's
    /// watch cache (resourceVersion=0) instead of etcd.
    pub async fn job_pods(&self, job: &str, cached: bool) -> ApiResult<Vec<Pod>> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = ListParams::default().labels(&format!("job-name={job}"));
        let params = if cached { params.match_any() } else { params };
        let mut list = pods
            .list(&params)
            .await
            .map_err(|e| ApiError::classify(format!("list pods of job {job}"), e))?
            .items;
        list.sort_by_key(|p| std::cmp::Reverse(p.metadata.creation_timestamp.clone()));
        Ok(list)
    }

    /// The image of container `container` of pod `pod` in the operator's
    /// namespace: the operator's own image, which its Jobs run (so any way
    /// of overriding the image — kustomize, Helm, `kubectl set image` —
    /// changes the Jobs' image too).
    pub async fn pod_image(&self, pod: &str, container: &str) -> ApiResult<Option<String>> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let p = pods
            .get(pod)
            .await
            .map_err(|e| ApiError::classify(format!("get pod {pod}"), e))?;
        Ok(p.spec.and_then(|s| {
            s.containers
                .into_iter()
                .find(|c| c.name == container)
                .and_then(|c| c.image)
        }))
    }
}
