// Package devdb runs an embedded FerretDB (SQLite under a directory) inside
// the process, for development and tests: the node starts it when no MongoDB
// URI is configured, and test packages start one in TestMain. Clients reach it
// over TCP through the official MongoDB driver, so the code path is the same
// as in production.
//
// It imports the standard library, github.com/FerretDB/FerretDB/ferretdb and
// the SQLite driver FerretDB uses (to index lookups by _id, see idindex.go);
// nothing in the module imports it except cmd/ and tests.
//
// Concurrency: Start may be called concurrently (several databases in one
// process, each on its own port and directory). A DB's methods may be called
// from any goroutine; Close is idempotent.
package devdb
