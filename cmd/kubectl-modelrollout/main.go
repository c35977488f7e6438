package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/client-go/tools/clientcmd"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"k8s.io/apimachinery/pkg/util/duration"
)

func main() {
	fmt.Println(cobra.Command{}, term.IsTerminal(1), clientcmd.RecommendedHomeFile, eventsv1.Event{}, fake.NewClientBuilder(), duration.HumanDuration(0))
}
