// Command etcd is etcd's own server, built from go.etcd.io/etcd/server/v3 at
// the version k8s.io/kubernetes pins. etcd's root module cannot be
// installed with go install because of its replace directives, so this
// module carries the three lines of main that its server needs.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
