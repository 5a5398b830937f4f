# Postcondition: the target's pods request at most 80% of the CPU that
# schedulable nodes can allocate (a capacity proxy: no metrics API needed).
package kubernetes_executor.conditions.resource_usage_acceptable

capacity := sum([n.allocatable_cpu_millis | some n in input.cluster.nodes; not n.unschedulable])

requested := sum([p.cpu_request_millis | some p in input.cluster.pods])

inconclusive contains "no schedulable node reports allocatable CPU" if {
	capacity == 0
}

deny contains msg if {
	capacity > 0
	requested * 10 > capacity * 8
	msg := sprintf("pods request %dm CPU, more than 80%% of the %dm schedulable nodes allocate", [requested, capacity])
}
