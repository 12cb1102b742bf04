// Package couponmesh holds the domain of the coupons backend: coupons, claims,
// users' feeds, the closed list of error codes, the push frames, and the
// interfaces (Service, Hub, Store; Inspector and Sessions for the admin API)
// through which transport, actors, cluster and persistence meet.
//
// It imports only the standard library. Every other package of the module may
// import it; it imports none of them.
package couponmesh
