// Package cluster groups what makes nodes a cluster: membership (the
// protoactor ClusterProvider implementations) and node (the lifecycle of one
// member: start, stop). The actor kinds are passed in; nothing here knows
// coupons or users.
package cluster
