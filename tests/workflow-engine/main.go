// Command workflow-engine is a test-only stand-in for Kubernaut's
// WorkflowExecution controller, written as such a client would be: with
// controller-runtime and the typed Go API in crds/go. It owns the
// WorkflowExecution test CRD (crd.yaml) in one namespace and runs each
// workflow's steps as KubernetesExecutions, one at a time:
//
//   - step N is created (owned by the workflow, with workflowExecutionRef and
//     stepNumber) only after step N-1 reached a terminal phase with the
//     Succeeded condition True;
//   - a step that ends otherwise stops the workflow: status.phase Failed,
//     failedStep, and the step's reason and message as failureReason and
//     failureMessage;
//   - each finished step's phase, reason and rollbackInfo are recorded in the
//     workflow's status.
//
// tests/workflow.rs builds and runs it against the local control plane as a
// ServiceAccount holding only the shipped workflow-engine roles.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	kexec "github.com/kubernaut/kubernetes-executor/crds/go/api/v1alpha1"
	kexecac "github.com/kubernaut/kubernetes-executor/crds/go/api/v1alpha1/applyconfiguration/api/v1alpha1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
)

// WorkflowGroupVersion is the test CRD's group and version.
var WorkflowGroupVersion = schema.GroupVersion{Group: "workflowexecution.kubernaut.ai", Version: "v1alpha1"}

// WorkflowExecution is a sequence of steps, each one KubernetesExecution.
type WorkflowExecution struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              WorkflowSpec   `json:"spec"`
	Status            WorkflowStatus `json:"status,omitempty"`
}

// WorkflowSpec lists the steps.
type WorkflowSpec struct {
	Steps []Step `json:"steps"`
}

// Step is one action on one target.
type Step struct {
	Action     string            `json:"action"`
	Target     StepTarget        `json:"target"`
	Parameters map[string]string `json:"parameters,omitempty"`
	// Timeout is a Go duration; empty sends metav1.Duration 0s (the
	// action's default), as a Go client with an unset duration does.
	Timeout string `json:"timeout,omitempty"`
}

// StepTarget names the object a step acts on.
type StepTarget struct {
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
}

// WorkflowStatus is what the engine observed.
type WorkflowStatus struct {
	Phase          string       `json:"phase,omitempty"`
	CurrentStep    int32        `json:"currentStep,omitempty"`
	FailedStep     int32        `json:"failedStep,omitempty"`
	FailureReason  string       `json:"failureReason,omitempty"`
	FailureMessage string       `json:"failureMessage,omitempty"`
	Steps          []StepStatus `json:"steps,omitempty"`
}

// StepStatus records one finished (or running) step.
type StepStatus struct {
	Number       int32                  `json:"number"`
	Execution    string                 `json:"execution"`
	Phase        kexec.Phase            `json:"phase,omitempty"`
	Reason       string                 `json:"reason,omitempty"`
	Succeeded    bool                   `json:"succeeded"`
	RollbackInfo *kexec.RollbackInfo    `json:"rollbackInfo,omitempty"`
	Result       *kexec.ExecutionResult `json:"result,omitempty"`
}

// WorkflowExecutionList is a list of workflows.
type WorkflowExecutionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WorkflowExecution `json:"items"`
}

func deepCopy[T any](in *T) *T {
	out := new(T)
	raw, err := json.Marshal(in)
	if err != nil {
		panic(err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		panic(err)
	}
	return out
}

// DeepCopyObject implements runtime.Object.
func (w *WorkflowExecution) DeepCopyObject() runtime.Object { return deepCopy(w) }

// DeepCopyObject implements runtime.Object.
func (l *WorkflowExecutionList) DeepCopyObject() runtime.Object { return deepCopy(l) }

// Engine reconciles WorkflowExecutions.
type Engine struct {
	client.Client
	Scheme *runtime.Scheme
	// Apply creates steps by server-side apply with the Go API's apply
	// configurations instead of a typed Create.
	Apply bool
}

func stepName(wf *WorkflowExecution, n int) string { return fmt.Sprintf("%s-step-%d", wf.Name, n) }

func ptr[T any](v T) *T { return &v }

// Reconcile advances one workflow by at most one step.
func (e *Engine) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	wf := &WorkflowExecution{}
	if err := e.Get(ctx, req.NamespacedName, wf); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if wf.DeletionTimestamp != nil || wf.Status.Phase == "Completed" || wf.Status.Phase == "Failed" {
		return ctrl.Result{}, nil
	}
	status := WorkflowStatus{Phase: "Running"}
	for i, step := range wf.Spec.Steps {
		n := i + 1
		status.CurrentStep = int32(n)
		exec := &kexec.KubernetesExecution{}
		err := e.Get(ctx, types.NamespacedName{Namespace: wf.Namespace, Name: stepName(wf, n)}, exec)
		if apierrors.IsNotFound(err) {
			exec, err = e.newStep(wf, n, step)
			if err != nil {
				return e.fail(ctx, wf, status, n, "InvalidStep", err.Error())
			}
			if e.Apply {
				err = e.Client.Apply(ctx, applyConfiguration(exec), client.FieldOwner("workflow-engine"))
			} else {
				err = e.Create(ctx, exec)
			}
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return ctrl.Result{}, err
			}
			log.Info("created step", "step", n, "execution", exec.Name, "action", step.Action)
			return ctrl.Result{}, e.setStatus(ctx, wf, status)
		}
		if err != nil {
			return ctrl.Result{}, err
		}
		rec := StepStatus{Number: int32(n), Execution: exec.Name}
		if exec.Status == nil || exec.Status.Phase == nil || !exec.Status.Phase.IsTerminal() {
			// Not finished: the watch on owned executions brings us back.
			status.Steps = append(status.Steps, rec)
			return ctrl.Result{}, e.setStatus(ctx, wf, status)
		}
		rec.Phase = *exec.Status.Phase
		if exec.Status.Reason != nil {
			rec.Reason = *exec.Status.Reason
		}
		rec.Succeeded = meta.IsStatusConditionTrue(exec.Status.Conditions, kexec.ConditionSucceeded)
		rec.RollbackInfo = exec.Status.RollbackInfo
		rec.Result = exec.Status.Result
		status.Steps = append(status.Steps, rec)
		if !rec.Succeeded {
			msg := ""
			if exec.Status.Message != nil {
				msg = *exec.Status.Message
			}
			log.Info("step failed; workflow stops", "step", n, "reason", rec.Reason)
			return e.fail(ctx, wf, status, n, rec.Reason, msg)
		}
	}
	status.Phase = "Completed"
	log.Info("workflow completed", "steps", len(wf.Spec.Steps))
	return ctrl.Result{}, e.setStatus(ctx, wf, status)
}

func (e *Engine) newStep(wf *WorkflowExecution, n int, step Step) (*kexec.KubernetesExecution, error) {
	timeout := metav1.Duration{}
	if step.Timeout != "" {
		d, err := time.ParseDuration(step.Timeout)
		if err != nil {
			return nil, fmt.Errorf("step %d: timeout %q: %w", n, step.Timeout, err)
		}
		timeout.Duration = d
	}
	params := map[string]kexec.ParameterValue{}
	for k, v := range step.Parameters {
		params[k] = kexec.ParameterValue(v)
	}
	target := kexec.TargetResource{Kind: step.Target.Kind, Name: step.Target.Name}
	if step.Target.Namespace != "" {
		target.Namespace = ptr(step.Target.Namespace)
	}
	exec := &kexec.KubernetesExecution{
		ObjectMeta: metav1.ObjectMeta{Name: stepName(wf, n), Namespace: wf.Namespace},
		Spec: kexec.KubernetesExecutionSpec{
			Action:         step.Action,
			Parameters:     params,
			TargetResource: target,
			Timeout:        &timeout,
			WorkflowExecutionRef: &corev1.ObjectReference{
				APIVersion: WorkflowGroupVersion.String(),
				Kind:       "WorkflowExecution",
				Namespace:  wf.Namespace,
				Name:       wf.Name,
				UID:        wf.UID,
			},
			StepNumber: ptr(int32(n)),
		},
	}
	// Controller owner with blockOwnerDeletion: deleting the workflow
	// deletes its steps (the garbage collector), foreground or background.
	if err := controllerutil.SetControllerReference(wf, exec, e.Scheme); err != nil {
		return nil, err
	}
	return exec, nil
}

// applyConfiguration is the same step as an apply configuration.
func applyConfiguration(exec *kexec.KubernetesExecution) *kexecac.KubernetesExecutionApplyConfiguration {
	s := exec.Spec
	target := kexecac.TargetResource().WithKind(s.TargetResource.Kind).WithName(s.TargetResource.Name)
	if s.TargetResource.Namespace != nil {
		target = target.WithNamespace(*s.TargetResource.Namespace)
	}
	spec := kexecac.KubernetesExecutionSpec().
		WithAction(s.Action).
		WithParameters(s.Parameters).
		WithTargetResource(target).
		WithTimeout(*s.Timeout).
		WithWorkflowExecutionRef(*s.WorkflowExecutionRef).
		WithStepNumber(*s.StepNumber)
	ac := kexecac.KubernetesExecution(exec.Name, exec.Namespace).
		WithAPIVersion(kexec.GroupVersion.String()).
		WithKind(kexec.Kind).
		WithSpec(spec)
	for _, o := range exec.OwnerReferences {
		ac = ac.WithOwnerReferences(metav1ac.OwnerReference().
			WithAPIVersion(o.APIVersion).WithKind(o.Kind).WithName(o.Name).WithUID(o.UID).
			WithController(*o.Controller).WithBlockOwnerDeletion(*o.BlockOwnerDeletion))
	}
	return ac
}

func (e *Engine) fail(ctx context.Context, wf *WorkflowExecution, status WorkflowStatus, n int, reason, msg string) (ctrl.Result, error) {
	status.Phase = "Failed"
	status.FailedStep = int32(n)
	status.FailureReason = reason
	status.FailureMessage = msg
	return ctrl.Result{}, e.setStatus(ctx, wf, status)
}

func (e *Engine) setStatus(ctx context.Context, wf *WorkflowExecution, status WorkflowStatus) error {
	cur, _ := json.Marshal(wf.Status)
	next, _ := json.Marshal(status)
	if string(cur) == string(next) {
		return nil
	}
	wf.Status = status
	return e.Status().Update(ctx, wf)
}

func main() {
	namespace := flag.String("namespace", "", "namespace whose WorkflowExecutions this engine runs")
	apply := flag.Bool("apply", false, "create steps by server-side apply (apply configurations) instead of Create")
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseDevMode(true)))
	if *namespace == "" {
		fmt.Fprintln(os.Stderr, "--namespace is required")
		os.Exit(2)
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		kexec.AddToScheme,
		func(s *runtime.Scheme) error {
			s.AddKnownTypes(WorkflowGroupVersion, &WorkflowExecution{}, &WorkflowExecutionList{})
			metav1.AddToGroupVersion(s, WorkflowGroupVersion)
			return nil
		},
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	// One namespace, so the engine needs RoleBindings only (least privilege).
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{*namespace: {}}},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		os.Exit(1)
	}
	engine := &Engine{Client: mgr.GetClient(), Scheme: scheme, Apply: *apply}
	if err := ctrl.NewControllerManagedBy(mgr).
		For(&WorkflowExecution{}).
		Owns(&kexec.KubernetesExecution{}).
		Complete(engine); err != nil {
		fmt.Fprintln(os.Stderr, "controller:", err)
		os.Exit(1)
	}
	fmt.Println("workflow-engine: running in namespace", *namespace)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		fmt.Fprintln(os.Stderr, "manager stopped:", err)
		os.Exit(1)
	}
}
