// oras-go-auth: a client of oras-go v1's docker auth package (oras.land/oras-go/pkg/auth/docker), which
// the oras CLI before 1.0 used. The tests drive it as a user drives oras: log in (the configured helper's
// `store`), look a credential up (`get`), log out (`erase`). Built in GOPATH mode from Debian's packages.
//
//	oras-go-auth login CONFIG HOST USERNAME   (the secret on stdin)
//	oras-go-auth credential CONFIG HOST       (prints the username, then the secret)
//	oras-go-auth logout CONFIG HOST
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"

	"oras.land/oras-go/pkg/auth/docker"
)

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: oras-go-auth login|credential|logout CONFIG HOST [USERNAME]")
		os.Exit(2)
	}
	verb, config, host := os.Args[1], os.Args[2], os.Args[3]
	client, err := docker.NewClient(config)
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	switch verb {
	case "login":
		if len(os.Args) < 5 {
			fail(fmt.Errorf("login needs a username"))
		}
		secret, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		err = client.Login(ctx, host, os.Args[4], strings.TrimRight(secret, "\r\n"), true)
	case "credential":
		username, secret, e := client.(*docker.Client).Credential(host)
		if e == nil {
			fmt.Println(username)
			fmt.Println(secret)
		}
		err = e
	case "logout":
		err = client.Logout(ctx, host)
	default:
		err = fmt.Errorf("unknown verb %q", verb)
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "oras-go-auth:", err)
	os.Exit(1)
}
