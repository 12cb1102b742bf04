// Package couponmesh holds the domain of the coupons backend: coupons, claims,
// users' feeds, the closed list of error codes, and the interfaces
// (Service, Hub, Store; Inspector and Sessions for the admin API) through
// which transport, actors, cluster and persistence meet. The wire frames
// that carry them are package protocol's.
//
// It imports only the standard library. Every other package of the module may
// import it; it imports none of them.
package couponmesh
