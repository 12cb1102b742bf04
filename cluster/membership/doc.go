// Package membership is couponmesh's protoactor-go ClusterProvider, backed
// by hashicorp/memberlist: seeds, node metadata, failure detection, periodic
// re-join (so a healed partition merges again), and eviction of zombie
// members (shared/notes/protoactor-guide.md, section 3).
//
// The provider reports membership by pushing the full member list to
// protoactor's MemberList on every memberlist event and every second, since
// gossip-driven blocks only take effect on the next push.
package membership
