package controllers

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	rolloutsv1 "github.com/modelrollout/modelrollout/api/v1alpha1"
)

// kstatus (sigs.k8s.io/cli-utils) is what `kubectl wait`-style tools, Flux
// and cli-utils appliers use to tell whether a resource is done. It reads
// the Reconciling and Stalled conditions and observedGeneration, so the
// conditions the controller writes must map every phase to the right
// status: InProgress while the rollout moves or holds, Current when it is
// settled, Failed when it needs a person.
var _ = Describe("kstatus", func() {
	var (
		ns string
		op *operator
	)
	BeforeEach(func() {
		ns = newNamespace()
		op = startOperator()
	})
	AfterEach(func() {
		op.stop()
	})

	want := map[string]status.Status{
		"Waiting: the canary has no ready endpoints":          status.InProgressStatus,
		"Progressing: a timed step":                           status.InProgressStatus,
		"Paused: a step without pause waits for a promote":    status.InProgressStatus,
		"Paused: spec.paused":                                 status.InProgressStatus,
		"Succeeded":                                           status.CurrentStatus,
		"Idle: no canary":                                     status.CurrentStatus,
		"RolledBack: aborted":                                 status.FailedStatus,
		"Stalled: the progress deadline passed while waiting": status.FailedStatus,
	}
	for _, s := range liveScenarios() {
		It("computes "+want[s.name].String()+" when "+s.name, func() {
			Expect(want).To(HaveKey(s.name))
			live := s.reach(ns)
			res, err := status.Compute(live)
			Expect(err).NotTo(HaveOccurred())
			Expect(res.Status).To(Equal(want[s.name]), "kstatus message: %s", res.Message)
			if res.Status == status.FailedStatus {
				stalled := meta.FindStatusCondition(getRollout(ns, "gpt4").Status.Conditions, rolloutsv1.ConditionStalled)
				Expect(stalled).NotTo(BeNil())
				Expect(res.Message).To(Equal(stalled.Message), "kstatus reports the Stalled condition's message")
			}

			// A spec the controller has not observed yet is InProgress,
			// whatever the phase.
			lag := live.DeepCopy()
			lag.SetGeneration(lag.GetGeneration() + 1)
			res, err = status.Compute(lag)
			Expect(err).NotTo(HaveOccurred())
			Expect(res.Status).To(Equal(status.InProgressStatus))
		})
	}

	It("follows a rollout from InProgress to Current", func() {
		createRoute(ns, "header-routing.yaml")
		createBackend(ns, "vllm-gpt4-v2", true)
		Expect(k8sClient.Create(suiteCtx, newRollout(ns, step(10, ""), step(100, "1s")))).To(Succeed())
		computed := func() status.Status {
			res, err := status.Compute(liveRollout(ns, "gpt4"))
			Expect(err).NotTo(HaveOccurred())
			return res.Status
		}
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhasePaused))
		Expect(computed()).To(Equal(status.InProgressStatus))
		annotate(ns, "gpt4", map[string]string{rolloutsv1.AnnotationPromote: "p1"})
		Eventually(phaseOf(ns, "gpt4")).Should(Equal(rolloutsv1.PhaseSucceeded))
		Eventually(computed).Should(Equal(status.CurrentStatus))
	})
})
