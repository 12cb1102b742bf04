// Package membership holds protoactor-go ClusterProviders. Static is the
// single-member provider of a node that runs alone; the memberlist-backed
// provider of a multi-node cluster lives beside it.
//
// Providers report membership by pushing the full member list to
// protoactor's MemberList, and re-publish it periodically, since gossip-driven
// blocks only take effect on the next push (shared/notes/protoactor-guide.md).
package membership

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
)

// Static is a ClusterProvider whose only member is the local node.
type Static struct {
	mu   sync.Mutex
	stop chan struct{}
}

var _ cluster.ClusterProvider = (*Static)(nil)

// NewStatic returns a single-member provider.
func NewStatic() *Static { return &Static{} }

// StartMember publishes the local member and re-publishes it every second.
func (s *Static) StartMember(c *cluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return err
	}
	self := &cluster.Member{Id: c.ActorSystem.ID, Host: host, Port: int32(port), Kinds: c.GetClusterKinds()}
	publish := func() { c.MemberList.UpdateClusterTopology([]*cluster.Member{self}) }
	publish()
	s.mu.Lock()
	s.stop = make(chan struct{})
	stop := s.stop
	s.mu.Unlock()
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				publish()
			}
		}
	}()
	return nil
}

// StartClient is not supported: every couponmesh node is a member.
func (s *Static) StartClient(*cluster.Cluster) error { return nil }

// Shutdown stops re-publishing.
func (s *Static) Shutdown(bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop != nil {
		close(s.stop)
		s.stop = nil
	}
	return nil
}
